"use strict";
// Runs the C kernel checks (scalar vs SIMD matmul at edge sizes, rope layouts, top-k) built beside the addon.
const { test } = require("node:test");
const assert = require("node:assert");
const path = require("node:path");
const fs = require("node:fs");
const { spawnSync } = require("node:child_process");
const { testProgram } = require("./helpers/test-programs.js");

const kernelTests = testProgram("kernel_tests");

test("kernel_tests: SIMD kernels agree with the scalar references", kernelTests.options, () => {
  const exe = kernelTests.file;
  assert.ok(fs.existsSync(exe), `${exe} is missing: build it with npm run build:tests`);
  // The matmul checks cover every kernel set themselves; argmax and attention follow the selected set, so the
  // program runs on the scalar kernels too.
  for (const kernels of [undefined, "scalar"]) {
    const run = spawnSync(exe, [], { encoding: "utf8", env: { ...process.env, LLAMA_NAPI_KERNELS: kernels } });
    assert.strictEqual(run.status, 0, `kernel_tests (${kernels ?? "best"}) failed:\n${run.stdout}${run.stderr}`);
    assert.match(run.stdout, /all checks passed/);
  }
});

test("the forward tests pass on the portable scalar kernels too (LLAMA_NAPI_KERNELS=scalar)", () => {
  const run = spawnSync(process.execPath, ["--test", path.join(__dirname, "native-forward.test.js")], {
    encoding: "utf8",
    env: { ...process.env, LLAMA_NAPI_KERNELS: "scalar" },
  });
  assert.strictEqual(run.status, 0, `forward tests failed on scalar kernels:\n${run.stdout}${run.stderr}`);
});

test("the forward tests pass on the AVX2 kernels too (LLAMA_NAPI_KERNELS=avx2)", { skip: process.env.LLAMA_NAPI_KERNELS !== undefined }, () => {
  const run = spawnSync(process.execPath, ["--test", path.join(__dirname, "native-forward.test.js"), path.join(__dirname, "native-quant.test.js")], {
    encoding: "utf8",
    env: { ...process.env, LLAMA_NAPI_KERNELS: "avx2" },
  });
  assert.strictEqual(run.status, 0, `forward tests failed on AVX2 kernels:\n${run.stdout}${run.stderr}`);
});

// The VNNI sets multiply the repacked weights with vpdpbusd (native/engine/repack.c): the quantized forward
// comparisons on each one the CPU has (a set it lacks falls back to another, which cpuFeatures reports).
for (const kernels of ["avx2-vnni", "avx512-vnni"]) {
  const probe = spawnSync(process.execPath, ["-e", `console.log(require("node-gyp-build")(${JSON.stringify(path.join(__dirname, ".."))}).cpuFeatures())`], {
    encoding: "utf8",
    env: { ...process.env, LLAMA_NAPI_KERNELS: kernels },
  });
  const available = probe.status === 0 && probe.stdout.trim() === kernels;
  test(`the quantized forward comparisons pass on the ${kernels} kernels (LLAMA_NAPI_KERNELS=${kernels})`, { skip: !available && `this CPU lacks ${kernels}` }, () => {
    const run = spawnSync(process.execPath, ["--test", "--test-name-pattern=^(forward with|repacked)", path.join(__dirname, "native-quant.test.js")], {
      encoding: "utf8",
      env: { ...process.env, LLAMA_NAPI_KERNELS: kernels },
    });
    assert.strictEqual(run.status, 0, `quantized forward tests failed on ${kernels}:\n${run.stdout}${run.stderr}`);
  });
}
