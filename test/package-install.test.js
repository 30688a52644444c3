"use strict";
// What a user gets from npm: the packed tarball installed into a fresh project outside this repository (so none of
// its node_modules can be borrowed), once with a prebuilt binary inside (no compiler used) and once forced to build
// from source with cmake-js; each install then generates text. Dependencies come from the npm registry.
// The prebuild and the source build are CPU-only (LLAMA_NAPI_CUDA=0) to keep the run short; a stand-in for the
// CUDA prebuild (a file that is no shared library) checks that prebuilds/*/cuda/ is packed and that the installed
// package, told a GPU is present, survives it.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL } = require("./helpers/models.js");

const ROOT = path.resolve(__dirname, "..");
const MODEL = DEFAULT_MODEL;
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";
const CPU_ONLY = { ...process.env, LLAMA_NAPI_CUDA: "0" };
let work;
let tarball;

function sh(cmd, args, options) {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20, ...options });
}

/** Greedy text from the installed package, run from inside the project: the text, the files used, the warnings. */
function generate(project, env = process.env) {
  const script = `
    const path = require("node:path");
    const { loadModel } = require("llama-napi");
    const { loadedBinary } = require(path.join(path.dirname(require.resolve("llama-napi")), "native", "binding.js"));
    (async () => {
      const model = await loadModel(${JSON.stringify(MODEL)});
      const r = await model.complete("Once upon a time", { temperature: 0, maxTokens: 16 });
      console.log(JSON.stringify({ text: r.text, binary: require.resolve("llama-napi"), native: loadedBinary().path }));
      await model.dispose();
    })();`;
  const child = spawnSync(process.execPath, ["-e", script], { cwd: project, env, encoding: "utf8" });
  assert.equal(child.status, 0, child.stderr);
  return { ...JSON.parse(child.stdout), stderr: child.stderr };
}

function freshProject(name) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true }));
  return dir;
}

before(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-package-"));
  const packed = JSON.parse(sh(NPM, ["pack", "--json", "--pack-destination", work], { cwd: ROOT }));
  tarball = path.join(work, packed[0].filename);
});
after(() => fs.rmSync(work, { recursive: true, force: true }));

test("the tarball holds the compiled TypeScript, the native sources and the install script, and nothing built", () => {
  const files = sh("tar", ["-tzf", tarball]).split("\n");
  for (const f of ["package/dist/cjs/index.js", "package/dist/esm/index.mjs", "package/native/engine/forward.c", "package/CMakeLists.txt", "package/scripts/install.js"]) {
    assert.ok(files.includes(f), `${f} is packed`);
  }
  assert.ok(!files.some((f) => f.startsWith("package/build/") || f.startsWith("package/node_modules/")));
});

test("installed with a prebuilt binary: no compilation, and it generates", () => {
  // Build the prebuild the way `npm run prebuild` does, in an unpacked copy of the tarball.
  const unpacked = path.join(work, "unpacked");
  fs.mkdirSync(unpacked);
  sh("tar", ["-xzf", tarball, "-C", unpacked]);
  const pkg = path.join(unpacked, "package");
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(pkg, "node_modules"), "dir");
  sh(NPM, ["run", "prebuild"], { cwd: pkg, env: CPU_ONLY });
  const platformDir = path.join(pkg, "prebuilds", `${process.platform}-${process.arch}`);
  assert.deepEqual(fs.readdirSync(platformDir), ["llama-napi.napi.glibc.node"], "the prebuildify layout node-gyp-build reads");
  fs.mkdirSync(path.join(platformDir, "cuda"));
  fs.writeFileSync(path.join(platformDir, "cuda", "llama-napi.napi.glibc.node"), "not a shared library\n");
  fs.unlinkSync(path.join(pkg, "node_modules"));
  const withPrebuild = JSON.parse(sh(NPM, ["pack", "--json", "--ignore-scripts", "--pack-destination", work], { cwd: pkg }));
  const packed = withPrebuild[0].files.map((f) => f.path);
  assert.ok(packed.includes(`prebuilds/${process.platform}-${process.arch}/cuda/llama-napi.napi.glibc.node`), "the CUDA prebuild is packed");

  const project = freshProject("uses-prebuild");
  const log = sh(NPM, ["install", "--no-audit", "--no-fund", "--foreground-scripts", path.join(work, withPrebuild[0].filename)], { cwd: project });
  assert.match(log, /using the prebuilt binary/);
  assert.ok(!fs.existsSync(path.join(project, "node_modules", "llama-napi", "build")), "nothing was compiled");
  const out = generate(project, CPU_ONLY);
  assert.ok(out.binary.startsWith(project));
  assert.ok(out.text.length > 20, out.text);
  const cpuPrebuild = path.join(project, "node_modules", "llama-napi", "prebuilds", `${process.platform}-${process.arch}`, "llama-napi.napi.glibc.node");
  assert.equal(out.native, cpuPrebuild);
  assert.equal(out.stderr, "");
  // Told a GPU is present, the package checks the CUDA prebuild, which fails: a warning, and the CPU prebuild.
  const withGpu = generate(project, { ...process.env, LLAMA_NAPI_CUDA: "1" });
  assert.match(withGpu.stderr, /\[LLAMA_NAPI_CUDA_FALLBACK\] Warning: the CUDA binary .*cuda\/llama-napi\.napi\.glibc\.node cannot be used/);
  assert.equal(withGpu.native, cpuPrebuild);
  assert.equal(withGpu.text, out.text);
});

test("installed from source (LLAMA_NAPI_BUILD_FROM_SOURCE=1): cmake-js compiles it, and it generates the same text", () => {
  const project = freshProject("builds-from-source");
  sh(NPM, ["install", "--no-audit", "--no-fund", "--foreground-scripts", tarball], {
    cwd: project,
    env: { ...CPU_ONLY, LLAMA_NAPI_BUILD_FROM_SOURCE: "1" },
  });
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
