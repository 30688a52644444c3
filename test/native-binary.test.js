"use strict";
// Which addon binary lib/native/binding.ts loads. The CUDA binary (prebuilds/<platform>-<arch>/cuda/, or
// LLAMA_NAPI_CUDA_BINARY) is tried only when a GPU seems present (LLAMA_NAPI_CUDA=1 stands in for one here), and
// only after it passed a check in a child process: a corrupt file, or one whose load kills the process, costs one
// warning and the CPU binary is used. Without a GPU the CUDA binary is never touched. Each case runs in a fresh
// process, since the choice is made once per process.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL } = require("./helpers/models.js");

const ROOT = path.resolve(__dirname, "..");
const DIST = path.join(ROOT, "dist", "cjs");
const MODEL = DEFAULT_MODEL;
const WARNING_CODE = "LLAMA_NAPI_CUDA_FALLBACK";
const work = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-binary-"));
process.on("exit", () => fs.rmSync(work, { recursive: true, force: true }));

/** Loads the model in a child with these variables, generates, and reports the binary used and device "cuda"'s error. */
function loadIn(env) {
  const script = `
    const { loadModel } = require(${JSON.stringify(DIST)});
    const { loadedBinary } = require(${JSON.stringify(path.join(DIST, "native", "binding.js"))});
    (async () => {
      const model = await loadModel(${JSON.stringify(MODEL)}, { threads: 1 });
      const { text } = await model.complete("Once upon a time", { temperature: 0, maxTokens: 8 });
      await model.dispose();
      const cudaError = await loadModel(${JSON.stringify(MODEL)}, { device: "cuda" }).then((m) => m.dispose(), (e) => e.message);
      console.log(JSON.stringify({ binary: loadedBinary(), text, cudaError }));
    })();`;
  const base = { ...process.env };
  delete base.LLAMA_NAPI_CUDA;
  delete base.LLAMA_NAPI_CUDA_BINARY;
  const child = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env: { ...base, ...env } });
  assert.equal(child.status, 0, child.stderr);
  return { ...JSON.parse(child.stdout), warnings: child.stderr.split(WARNING_CODE).length - 1, stderr: child.stderr };
}

const gpuPresent = fs.existsSync("/dev/nvidiactl") || fs.existsSync("/proc/driver/nvidia");
const reference = loadIn({ LLAMA_NAPI_CUDA: "0" });

function corruptBinary() {
  const file = path.join(work, "corrupt.node");
  fs.writeFileSync(file, Buffer.from("this is not a shared library\n".repeat(100)));
  return file;
}

test("a corrupt CUDA binary: one warning saying why, the CPU binary, and generation works", () => {
  const corrupt = corruptBinary();
  const r = loadIn({ LLAMA_NAPI_CUDA: "1", LLAMA_NAPI_CUDA_BINARY: corrupt });
  assert.equal(r.warnings, 1, r.stderr);
  assert.match(r.stderr, /the CUDA binary .*corrupt\.node cannot be used \(loading it failed: .*\); running on the CPU/);
  assert.equal(r.binary.kind, "cpu");
  assert.equal(r.binary.path, reference.binary.path);
  assert.equal(r.text, reference.text);
  // device "cuda" says what happened to the CUDA binary, not merely that the CPU binary lacks CUDA.
  assert.match(r.cudaError, /CUDA is not available: the CUDA binary .*corrupt\.node cannot be used/);
});

test("a CUDA binary whose load kills the process (a crash in its initializer): the checking child dies, this one goes on", (t) => {
  const source = path.join(work, "crash.c");
  const binary = path.join(work, "crash.node");
  fs.writeFileSync(source, "#include <signal.h>\n__attribute__((constructor)) static void crash(void) { raise(SIGSEGV); }\n");
  const cc = spawnSync("cc", ["-shared", "-fPIC", "-o", binary, source], { encoding: "utf8" });
  if (cc.status !== 0) return t.skip(`no C compiler to build the crashing library: ${cc.stderr || cc.error?.message}`);
  const r = loadIn({ LLAMA_NAPI_CUDA: "1", LLAMA_NAPI_CUDA_BINARY: binary });
  assert.equal(r.warnings, 1, r.stderr);
  assert.match(r.stderr, /crash\.node cannot be used \(loading it killed the checking process with SIGSEGV\)/);
  assert.equal(r.binary.kind, "cpu");
  assert.equal(r.text, reference.text);
});

test("a CUDA binary that loads but sees no GPU (no driver): the CPU binary, with a warning giving CUDA's reason", { skip: gpuPresent && "this machine has a GPU" }, () => {
  // This checkout's own build: with the CUDA backend when nvcc was found, else without; neither sees a GPU here.
  const r = loadIn({ LLAMA_NAPI_CUDA: "1", LLAMA_NAPI_CUDA_BINARY: path.join(ROOT, "build", "Release", "llama_napi.node") });
  assert.equal(r.warnings, 1, r.stderr);
  assert.match(r.stderr, /cannot be used \(it sees no usable GPU: /);
  assert.equal(r.text, reference.text);
});

test("no GPU, or LLAMA_NAPI_CUDA=0: the CPU binary, the CUDA binary never checked, no warning", { skip: gpuPresent && "this machine has a GPU" }, () => {
  const corrupt = corruptBinary();
  for (const env of [{ LLAMA_NAPI_CUDA_BINARY: corrupt }, { LLAMA_NAPI_CUDA: "0", LLAMA_NAPI_CUDA_BINARY: corrupt }]) {
    const r = loadIn(env);
    assert.equal(r.warnings, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.equal(r.binary.kind, "cpu");
    assert.equal(r.binary.cudaFailure, undefined);
    assert.equal(r.text, reference.text);
  }
});
