"use strict";
// What a user gets from `npm pack`: the tarball (its prepack step compiles the CPU prebuild into it) installed into
// fresh projects outside this repository (so none of its node_modules can be borrowed). Installed with a PATH that
// holds node and npm but no cmake, compiler or make, it must use the prebuilt binary and generate from the model the
// package carries; with no prebuilt binary either, the install must fail with llama-napi's own message and the fix.
// A build from source (LLAMA_NAPI_BUILD_FROM_SOURCE=1, compilers present) must generate the same text. Dependencies
// come from the npm registry. Everything is CPU-only (LLAMA_NAPI_CUDA=0) to keep the run short; a stand-in for the
// CUDA prebuild (a file that is no shared library) checks that prebuilds/*/cuda/ is packed and that the installed
// package, told a GPU is present, survives it. One `npm pack` serves the whole file.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const ROOT = path.resolve(__dirname, "..");
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";
const CPU_ONLY = { ...process.env, LLAMA_NAPI_CUDA: "0" };
const PLATFORM = `${process.platform}-${process.arch}`;
const CPU_PREBUILD = `prebuilds/${PLATFORM}/llama-napi.napi.glibc.node`;
/** What a source build would use; none of it may be reachable in the "no compiler" installs. */
const BUILD_TOOLS = ["cmake", "cc", "gcc", "c++", "g++", "clang", "clang++", "make", "ninja", "nvcc"];
let work;
let tarball;
/** An environment whose PATH is a folder holding links to node, npm and sh (which runs npm's scripts) only. */
let noCompiler;

function sh(cmd, args, options) {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20, ...options });
}

/** Greedy text from the installed package's own model, run from inside the project: the text, the files used, the warnings. */
function generate(project, env = process.env) {
  const script = `
    const path = require("node:path");
    const { loadModel, DEFAULT_MODEL_PATH } = require("llama-napi");
    const { loadedBinary } = require(path.join(path.dirname(require.resolve("llama-napi")), "native", "binding.js"));
    (async () => {
      const model = await loadModel(DEFAULT_MODEL_PATH);
      const r = await model.complete("Once upon a time", { temperature: 0, maxTokens: 16 });
      console.log(JSON.stringify({ text: r.text, model: DEFAULT_MODEL_PATH, binary: require.resolve("llama-napi"), native: loadedBinary().path }));
      await model.dispose();
    })();`;
  const child = spawnSync(process.execPath, ["-e", script], { cwd: project, env, encoding: "utf8" });
  assert.equal(child.status, 0, child.stderr);
  return { ...JSON.parse(child.stdout), stderr: child.stderr };
}

/** npm install of a tarball into the project; the child's result (status, and stdout and stderr as text). */
function npmInstall(project, file, env) {
  return spawnSync(NPM, ["install", "--no-audit", "--no-fund", "--foreground-scripts", file], { cwd: project, env, encoding: "utf8", maxBuffer: 64 << 20 });
}

/** The tarball unpacked into a folder of its own, changed by edit(packageDir), and packed again without scripts. */
function repack(name, edit) {
  const unpacked = path.join(work, name);
  fs.mkdirSync(unpacked);
  sh("tar", ["-xzf", tarball, "-C", unpacked]);
  const pkg = path.join(unpacked, "package");
  edit(pkg);
  const packed = JSON.parse(sh(NPM, ["pack", "--json", "--ignore-scripts", "--pack-destination", unpacked], { cwd: pkg }));
  return { file: path.join(unpacked, packed[0].filename), files: packed[0].files.map((f) => f.path) };
}

function freshProject(name) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true }));
  return dir;
}

before(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-package-"));
  // Not --json: the prepack step's build output shares stdout with it. The tarball's name is npm's rule.
  sh(NPM, ["pack", "--pack-destination", work], { cwd: ROOT, env: CPU_ONLY });
  const { name, version } = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
  tarball = path.join(work, `${name}-${version}.tgz`);
  const tools = path.join(work, "tools");
  fs.mkdirSync(tools);
  for (const program of ["node", "npm", "sh"]) fs.symlinkSync(sh("sh", ["-c", `command -v ${program}`]).trim(), path.join(tools, program));
  noCompiler = { ...CPU_ONLY, PATH: tools };
});
after(() => fs.rmSync(work, { recursive: true, force: true }));

test("the tarball holds the compiled TypeScript, the native sources, the install script, the CPU prebuild and the model, and nothing built", () => {
  const files = sh("tar", ["-tzf", tarball]).split("\n");
  for (const f of ["dist/cjs/index.js", "dist/esm/index.mjs", "native/engine/forward.c", "CMakeLists.txt", "scripts/install.js", CPU_PREBUILD, "models/stories260K.gguf"]) {
    assert.ok(files.includes(`package/${f}`), `${f} is packed`);
  }
  assert.ok(!files.some((f) => f.startsWith("package/build/") || f.startsWith("package/node_modules/")));
});

test("installed with no compiler on PATH: the prebuilt binary, no compilation, and it generates", () => {
  for (const tool of BUILD_TOOLS) {
    assert.equal(spawnSync(tool, ["--version"], { env: noCompiler }).error?.code, "ENOENT", `${tool} is out of reach`);
  }
  const project = freshProject("no-compiler");
  const install = npmInstall(project, tarball, noCompiler);
  assert.equal(install.status, 0, install.stdout + install.stderr);
  assert.match(install.stdout, /using the prebuilt binary/);
  assert.doesNotMatch(install.stdout + install.stderr, /EBADENGINE/, "every dependency supports this Node");
  const installed = path.join(project, "node_modules", "llama-napi");
  assert.ok(!fs.existsSync(path.join(installed, "build")), "nothing was compiled");
  const out = generate(project, CPU_ONLY);
  assert.ok(out.binary.startsWith(project));
  assert.equal(out.model, path.join(installed, "models", "stories260K.gguf"));
  assert.ok(out.text.length > 20, out.text);
  assert.equal(out.native, path.join(installed, CPU_PREBUILD));
  assert.equal(out.stderr, "");

  // A CUDA prebuild is packed from prebuilds/*/cuda/; told a GPU is present, the package checks it, and this
  // stand-in fails the check: a warning, and the CPU prebuild.
  const cudaPrebuild = `prebuilds/${PLATFORM}/cuda/llama-napi.napi.glibc.node`;
  const withCuda = repack("with-cuda", (pkg) => {
    fs.mkdirSync(path.dirname(path.join(pkg, cudaPrebuild)));
    fs.writeFileSync(path.join(pkg, cudaPrebuild), "not a shared library\n");
  });
  assert.ok(withCuda.files.includes(cudaPrebuild), "the CUDA prebuild is packed");
  fs.mkdirSync(path.dirname(path.join(installed, cudaPrebuild)));
  fs.writeFileSync(path.join(installed, cudaPrebuild), "not a shared library\n");
  const withGpu = generate(project, { ...process.env, LLAMA_NAPI_CUDA: "1" });
  assert.match(withGpu.stderr, /\[LLAMA_NAPI_CUDA_FALLBACK\] Warning: the CUDA binary .*cuda\/llama-napi\.napi\.glibc\.node cannot be used/);
  assert.equal(withGpu.native, out.native);
  assert.equal(withGpu.text, out.text);
});

test("no prebuilt binary for this machine and no compiler: the install fails at once with llama-napi's own message and the fix", () => {
  const withoutPrebuild = repack("without-prebuild", (pkg) => fs.rmSync(path.join(pkg, "prebuilds"), { recursive: true }));
  const install = npmInstall(freshProject("no-prebuild-no-compiler"), withoutPrebuild.file, noCompiler);
  const output = install.stdout + install.stderr;
  assert.notEqual(install.status, 0, output);
  assert.match(output, new RegExp(`llama-napi: cannot install: this package has no prebuilt binary for ${PLATFORM}, so the addon must be built from source, and that needs cmake \\(3\\.18 or newer\\), a C compiler`));
  assert.match(output, /Debian\/Ubuntu: sudo apt-get install cmake g\+\+ make/);
  assert.doesNotMatch(output, /OMG|toolset is not available/, "cmake-js was never started");
});

test("installed from source (LLAMA_NAPI_BUILD_FROM_SOURCE=1): cmake-js compiles it, and it generates the same text", () => {
  const project = freshProject("builds-from-source");
  const install = npmInstall(project, tarball, { ...CPU_ONLY, LLAMA_NAPI_BUILD_FROM_SOURCE: "1" });
  assert.equal(install.status, 0, install.stdout + install.stderr);
  assert.ok(fs.existsSync(path.join(project, "node_modules", "llama-napi", "build", "Release", "llama_napi.node")));
  const fromSource = generate(project);
  const reference = generate(freshProjectLinkedToRepo());
  assert.equal(fromSource.text, reference.text);
});

/** A project that uses this checkout's own build, for the reference text. */
function freshProjectLinkedToRepo() {
  const dir = freshProject("uses-checkout");
  fs.mkdirSync(path.join(dir, "node_modules"));
  fs.symlinkSync(ROOT, path.join(dir, "node_modules", "llama-napi"), "dir");
  return dir;
}
