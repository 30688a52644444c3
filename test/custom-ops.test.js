"use strict";
// Custom op libraries (native/include/llama_napi_ops.h): built at test time with build-op from the example
// (examples/custom-rope) and test sources (test/fixtures/custom-ops), loaded into models in place of the built-in
// RoPE, RMSNorm and SwiGLU; and every way a library or its options can be wrong.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const binding = require("node-gyp-build")(path.join(__dirname, ".."));
const { loadModel, buildOp, CustomOpError, CustomOpDeviceError, DeviceError, InvalidArgumentError, OpBuildError } = require("../dist/cjs/index.js");
const { toTypedError } = require("../dist/cjs/native/engine.js");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { readReference, maxAbsDiff } = require("./helpers/reference.js");
const { CONFIG, writeModel, referenceForward, randomTokens } = require("./helpers/forward-reference.js");
const { writeTinyModel, randomValues } = require("./helpers/tiny-model.js");

const ROOT = path.resolve(__dirname, "..");
const EXAMPLE = path.join(ROOT, "examples", "custom-rope");
const FIXTURES = path.join(__dirname, "fixtures", "custom-ops");
const CLI = path.join(ROOT, "dist", "cjs", "cli", "main.js");
const cli = (...args) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });

const hasCompiler = (command) => !spawnSync(command, ["--version"], { stdio: "ignore" }).error;
const NEEDS_CC = { skip: hasCompiler("cc") ? false : "no C compiler (cc) on PATH to build the op libraries with" };
// The GPU checks run where a CUDA device is (bench/cuda/run.sh on a lent GPU), with nvcc for rope_cuda.cu.
const cuda = binding.cudaInfo();
const NEEDS_GPU = {
  skip: NEEDS_CC.skip || NEEDS_REFERENCE_MODELS.skip || (cuda.devices === 0 ? `no CUDA device here (${cuda.reason})` : !hasCompiler("nvcc") && "no nvcc on PATH"),
};

/** The libraries, built once into a temp dir: the example's rope (through the CLI) and ntk_rope, and the fixtures. */
const lib = {};
let dir;
before(async () => {
  if (NEEDS_CC.skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-ops-"));
  lib.rope = path.join(dir, "rope.so");
  const built = cli("build-op", path.join(EXAMPLE, "rope.c"), "-o", lib.rope);
  assert.equal(built.status, 0, built.stderr);
  assert.equal(built.stdout.trim(), lib.rope);
  lib.ntk = await buildOp(path.join(EXAMPLE, "ntk_rope.c"), { output: path.join(dir, "ntk_rope.so") });
  for (const name of ["norm_swiglu", "no_abi_version", "other_abi_version"]) {
    lib[name] = await buildOp(path.join(FIXTURES, `${name}.c`), { output: path.join(dir, `${name}.so`) });
  }
  // norm_swiglu.c with every norm's output doubled and SwiGLU's halved.
  const scaledSource = path.join(dir, "scaled_norm_swiglu.c");
  fs.writeFileSync(scaledSource, `#define NORM_SCALE 2.0f\n#define SWIGLU_SCALE 0.5f\n#include ${JSON.stringify(path.join(FIXTURES, "norm_swiglu.c"))}\n`);
  lib.scaled = await buildOp(scaledSource);
});
after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

/** A tiny random GGUF model (loadModel), for what needs a model but not its numbers. */
let tinyModel;
const tiny = () => (tinyModel ??= writeTinyModel({ fill: (name, rows, cols) => randomValues(rows * cols, name.length) }));

/** Last-position logits of `ids` and a 16-token greedy continuation. */
async function run(model, ids) {
  const logits = await model.evaluate(ids);
  const { tokens } = await model.complete({ tokens: ids }, { maxTokens: 16, temperature: 0 });
  return { logits, tokens };
}

/** Loads `dir` as it is and with `options`' custom ops, and compares them on the model's reference prompts. */
async function compareWithBuiltin(dirName, options, tolerance, device = "cpu") {
  const file = modelPath("trained", dirName);
  const { ref } = readReference(["trained", dirName].join(path.sep));
  const common = { threads: 2, kvCacheType: "f32", contextSize: 128, device };
  const builtin = await loadModel(file, common);
  const custom = await loadModel(file, { ...common, ...options });
  try {
    assert.deepEqual(custom.info.customOps, { library: path.resolve(options.customOps), ops: options.enableCustomOps });
    assert.equal(builtin.info.customOps, undefined);
    for (const c of ref.cases.slice(0, 3)) {
      const a = await run(builtin, c.ids);
      const b = await run(custom, c.ids);
      const diff = maxAbsDiff(a.logits, b.logits);
      assert.ok(diff <= tolerance, `${dirName} "${c.prompt}": max |custom - built-in| = ${diff}`);
      assert.deepEqual(b.tokens, a.tokens, `${dirName} "${c.prompt}": greedy tokens`);
    }
  } finally {
    await builtin.dispose();
    await custom.dispose();
  }
}

const BOTH = { skip: NEEDS_CC.skip || NEEDS_REFERENCE_MODELS.skip };

for (const dirName of ["sotu-l2-23m", "sotu-l3-26m"]) {
  test(`the example rope.c gives the built-in RoPE's logits (within 1e-6) and greedy tokens: ${dirName}`, BOTH, async () => {
    await compareWithBuiltin(dirName, { customOps: lib.rope, enableCustomOps: ["rope"] }, 1e-6);
  });
}

// bf16 norm weights (converted to float32 for the library) on the trained model; f32 ones (passed as they are) on
// the random model below. The library's SwiGLU takes libm's expf where the built-in one has its own exp: the logits
// agree to float rounding, not bit for bit.
test("custom RMSNorm and SwiGLU give the built-in logits and greedy tokens", BOTH, async () => {
  await compareWithBuiltin("sotu-l2-23m", { customOps: lib.norm_swiglu, enableCustomOps: ["rmsnorm"] }, 1e-6);
  await compareWithBuiltin("sotu-l2-23m", { customOps: lib.norm_swiglu, enableCustomOps: ["rmsnorm", "swiglu"] }, 1e-4);
  // The library's RMSNorm does run on these bf16 weights: its scaled build moves the logits.
  const file = modelPath("trained", "sotu-l2-23m");
  const builtin = await loadModel(file, { threads: 2, contextSize: 32 });
  const scaled = await loadModel(file, { threads: 2, contextSize: 32, customOps: lib.scaled, enableCustomOps: ["rmsnorm"] });
  try {
    const ids = builtin.tokenize("The state of the union", { addBos: true });
    assert.ok(maxAbsDiff(await builtin.evaluate(ids), await scaled.evaluate(ids)) > 1e-1);
  } finally {
    await builtin.dispose();
    await scaled.dispose();
  }
});

/** The engine's logits of every position of `tokens` on a raw addon model. */
async function engineLogits(spec, tokens) {
  const model = new binding.Model(spec);
  try {
    const context = model.createContext(16);
    const { logits } = await context.decode(tokens, 0, { logits: "all" });
    context.close();
    return logits;
  } finally {
    model.close();
  }
}

function maxDiffAll(logits, reference) {
  const V = CONFIG.vocabSize;
  return Math.max(...reference.map((row, t) => maxAbsDiff(logits.subarray(t * V, (t + 1) * V), row)));
}

// The cheapest honest check of a kernel that changes the math: on tiny random models, the float64 JS forward pass
// (helpers/forward-reference.js, which checks the built-in engine) computed with the NTK-scaled frequencies
// that ntk_rope.c's comment derives, freqs[i] * alpha^(-2i / (d - 2)), against the engine running ntk_rope.so. The
// logits must match that prediction as closely as the built-in matches the plain one, and be far from the plain one.
test("ntk_rope.c moves the logits as NTK-aware scaling predicts (both rope layouts)", NEEDS_CC, async () => {
  const alpha = Number(/#define NTK_ALPHA ([\d.]+)/.exec(fs.readFileSync(path.join(EXAMPLE, "ntk_rope.c"), "utf8"))[1]);
  assert.ok(alpha > 1);
  for (const [index, ropeInterleaved] of [true, false].entries()) {
    const { spec, weights, dir: modelDir } = writeModel({ types: { matrix: "f32", norm: "f32", embedding: "f32" }, ropeInterleaved, seed: 500 + index });
    try {
      const tokens = randomTokens(600 + index, 12);
      const d = CONFIG.headDim;
      const ntkFreqs = spec.config.ropeFreqs.map((f, i) => Math.fround(f * Math.pow(alpha, (-2 * i) / (d - 2))));
      const predicted = referenceForward({ ...spec, config: { ...spec.config, ropeFreqs: ntkFreqs } }, weights, tokens);
      const plain = referenceForward(spec, weights, tokens);
      const logits = await engineLogits({ ...spec, customOps: { path: lib.ntk, ops: ["rope"] } }, tokens);
      const fromPrediction = maxDiffAll(logits, predicted);
      const fromPlain = maxDiffAll(logits, plain);
      assert.ok(fromPrediction < 1e-4, `interleaved ${ropeInterleaved}: max |engine - NTK prediction| = ${fromPrediction}`);
      assert.ok(fromPlain > 1e-2, `interleaved ${ropeInterleaved}: the NTK kernel moved the logits by only ${fromPlain}`);
      // The same model with the example's standard rope stays on the plain prediction.
      const standard = await engineLogits({ ...spec, customOps: { path: lib.rope, ops: ["rope"] } }, tokens);
      assert.ok(maxDiffAll(standard, plain) < 1e-4);
    } finally {
      fs.rmSync(modelDir, { recursive: true, force: true });
    }
  }
});

// With f32 norm weights (passed to the library as they are). The scaled build doubles every norm's output and halves
// SwiGLU's: the reference predicts it with the norm weights doubled and ffn_down halved (both ops are linear in those).
test("custom RMSNorm and SwiGLU with f32 norm weights run in the pass: the float64 reference predicts their logits", NEEDS_CC, async () => {
  const { spec, weights, dir: modelDir } = writeModel({ types: { matrix: "f32", norm: "f32", embedding: "f32" }, ropeInterleaved: true, seed: 700 });
  try {
    const tokens = randomTokens(701, 9);
    const ops = { customOps: { path: lib.norm_swiglu, ops: ["rmsnorm", "swiglu"] } };
    const plain = referenceForward(spec, weights, tokens);
    const diff = maxDiffAll(await engineLogits({ ...spec, ...ops }, tokens), plain);
    assert.ok(diff < 1e-4, `max |engine - reference| = ${diff}`);

    const double = (v) => v.map((x) => 2 * x);
    const scaledWeights = {
      ...weights,
      outputNorm: double(weights.outputNorm),
      layers: weights.layers.map((l) => ({ ...l, attnNorm: double(l.attnNorm), ffnNorm: double(l.ffnNorm), down: l.down.map((x) => x / 2) })),
    };
    const logits = await engineLogits({ ...spec, customOps: { path: lib.scaled, ops: ["rmsnorm", "swiglu"] } }, tokens);
    const fromPrediction = maxDiffAll(logits, referenceForward(spec, scaledWeights, tokens));
    assert.ok(fromPrediction < 1e-4, `scaled ops: max |engine - prediction| = ${fromPrediction}`);
    assert.ok(maxDiffAll(logits, plain) > 1e-2);
  } finally {
    fs.rmSync(modelDir, { recursive: true, force: true });
  }
});

/** loadModel's rejection of the tiny model with these options: the error, checked to be of `type`. */
async function loadError(options, type) {
  const err = await loadModel(tiny(), { threads: 1, ...options }).then(
    async (model) => {
      await model.dispose();
      assert.fail(`loaded with ${JSON.stringify(options)}`);
    },
    (e) => e,
  );
  assert.ok(err instanceof type, `${err.name}: ${err.message}`);
  return err;
}

test("a library that cannot serve is a CustomOpError naming the file and the symbol", NEEDS_CC, async () => {
  const missing = path.join(dir, "missing.so");
  let err = await loadError({ customOps: missing, enableCustomOps: ["rope"] }, CustomOpError);
  assert.equal(err.library, missing);
  assert.equal(err.symbol, undefined);
  assert.match(err.message, /missing\.so cannot be read: No such file/);

  const text = path.join(dir, "not-a-library.so");
  fs.writeFileSync(text, "this is not an ELF file\n");
  err = await loadError({ customOps: text, enableCustomOps: ["rope"] }, CustomOpError);
  assert.equal(err.library, text);
  assert.equal(err.symbol, undefined);
  assert.match(err.message, /not-a-library\.so is not a loadable shared library/);

  err = await loadError({ customOps: dir, enableCustomOps: ["rope"] }, CustomOpError);
  assert.match(err.message, /is not a regular file/);

  err = await loadError({ customOps: lib.no_abi_version, enableCustomOps: ["swiglu"] }, CustomOpError);
  assert.equal(err.library, lib.no_abi_version);
  assert.equal(err.symbol, "llama_napi_ops_abi_version");

  err = await loadError({ customOps: lib.other_abi_version, enableCustomOps: ["swiglu"] }, CustomOpError);
  assert.equal(err.symbol, "llama_napi_ops_abi_version");
  assert.match(err.message, /built for ops ABI version 2, but this engine has version 1/);

  err = await loadError({ customOps: lib.rope, enableCustomOps: ["rope", "rmsnorm"] }, CustomOpError);
  assert.equal(err.library, lib.rope);
  assert.equal(err.symbol, "llama_napi_rmsnorm");
  assert.match(err.message, /does not export llama_napi_rmsnorm, which op "rmsnorm" needs/);

  // A relative path is the file beside the working directory, never a search of the system's library directories.
  const relative = path.relative(process.cwd(), lib.rope);
  const model = await loadModel(tiny(), { threads: 1, customOps: relative, enableCustomOps: ["rope"] });
  assert.deepEqual(model.info.customOps, { library: lib.rope, ops: ["rope"] });
  await model.dispose();
});

test("wrong op options are InvalidArgumentErrors naming enableCustomOps", NEEDS_CC, async () => {
  let err = await loadError({ customOps: lib.rope, enableCustomOps: ["gelu"] }, InvalidArgumentError);
  assert.equal(err.option, "enableCustomOps");
  assert.match(err.message, /unknown custom op "gelu" \(known: rope, rmsnorm, swiglu\)/);
  err = await loadError({ customOps: lib.rope, enableCustomOps: ["rope", "rope"] }, InvalidArgumentError);
  assert.match(err.message, /"rope" is enabled twice/);
  err = await loadError({ customOps: lib.rope, enableCustomOps: [] }, InvalidArgumentError);
  assert.equal(err.option, "enableCustomOps");
  assert.match(err.message, /no op is enabled/);
  err = await loadError({ customOps: lib.rope }, InvalidArgumentError);
  assert.equal(err.option, "enableCustomOps");
  err = await loadError({ enableCustomOps: ["rope"] }, InvalidArgumentError);
  assert.equal(err.option, "enableCustomOps");
  assert.match(err.message, /needs customOps/);
  err = await loadError({ customOps: "", enableCustomOps: ["rope"] }, InvalidArgumentError);
  assert.equal(err.option, "customOps");
  // The raw binding takes the path as it is: a bare file name, which dlopen would search for, is refused.
  const { spec, dir: modelDir } = writeModel({ types: { matrix: "f32", norm: "f32", embedding: "f32" }, ropeInterleaved: true, seed: 800 });
  try {
    assert.throws(() => new binding.Model({ ...spec, customOps: { path: "rope.so", ops: ["rope"] } }),
      (e) => e.code === "INVALID_ARGUMENT" && e.option === "customOps" && /must be given as a path/.test(e.message));
  } finally {
    fs.rmSync(modelDir, { recursive: true, force: true });
  }
});

test("CLI: the custom op flags load the library on each model command", NEEDS_CC, () => {
  for (const command of ["run", "chat", "serve", "bench", "perplexity", "info"]) {
    const help = cli(command, "--help").stdout;
    for (const flag of ["--custom-ops-path FILE", "--enable-custom-rope-kernel", "--enable-custom-op NAME"]) {
      assert.ok(help.includes(flag), `${command} --help lists ${flag}`);
    }
  }
  const info = cli("info", tiny(), "--json", "--custom-ops-path", lib.norm_swiglu, "--enable-custom-op", "rmsnorm", "--enable-custom-op", "swiglu");
  assert.equal(info.status, 0, info.stderr);
  assert.deepEqual(JSON.parse(info.stdout).customOps, { library: lib.norm_swiglu, ops: ["rmsnorm", "swiglu"] });

  const run = cli("run", "-m", tiny(), "-p", "Once", "-n", "3", "--json", "--custom-ops-path", lib.rope, "--enable-custom-rope-kernel");
  assert.equal(run.status, 0, run.stderr);
  assert.equal(JSON.parse(run.stdout).tokens.length, 3);

  const lacking = cli("run", "-m", tiny(), "-p", "Once", "--custom-ops-path", lib.rope, "--enable-custom-rope-kernel", "--enable-custom-op", "swiglu");
  assert.equal(lacking.status, 1);
  assert.match(lacking.stderr, /CustomOpError: .*does not export llama_napi_swiglu/);

  const noPath = cli("run", "-m", tiny(), "--enable-custom-rope-kernel");
  assert.equal(noPath.status, 2);
  assert.match(noPath.stderr, /need --custom-ops-path FILE/);
  const noOps = cli("run", "-m", tiny(), "--custom-ops-path", lib.rope);
  assert.equal(noOps.status, 2);
  assert.match(noOps.stderr, /--custom-ops-path needs the ops to take from it/);
});

test("build-op: a failing compiler, a missing one, and sources it does not take are typed errors", NEEDS_CC, async () => {
  const broken = path.join(dir, "broken.c");
  fs.writeFileSync(broken, '#include "llama_napi_ops.h"\nvoid llama_napi_swiglu(float *out) { }\n');
  const err = await buildOp(broken).then(() => assert.fail("built"), (e) => e);
  assert.ok(err instanceof OpBuildError, String(err));
  assert.equal(err.source, broken);
  assert.equal(err.compiler, "cc");
  assert.match(err.stderr, /conflicting types for .llama_napi_swiglu./);
  assert.ok(err.message.includes(err.stderr.trimEnd()));

  const viaCli = cli("build-op", broken);
  assert.equal(viaCli.status, 1);
  assert.match(viaCli.stderr, /OpBuildError: cc failed to build .*broken\.c/);

  // Without nvcc on PATH (the CLI run with an empty one), a .cu source is an OpBuildError saying so.
  const cudaSource = path.join(dir, "op.cu");
  fs.writeFileSync(cudaSource, "");
  const noNvcc = spawnSync(process.execPath, [CLI, "build-op", cudaSource], { encoding: "utf8", env: { ...process.env, PATH: dir } });
  assert.equal(noNvcc.status, 1);
  assert.match(noNvcc.stderr, /OpBuildError: cannot build .*op\.cu: nvcc \(the CUDA compiler.*\) is not on PATH/);
  await assert.rejects(buildOp(path.join(dir, "op.cpp")), (e) => e instanceof InvalidArgumentError && /\.c or \.cu source/.test(e.message));
  await assert.rejects(buildOp(path.join(dir, "absent.c")), (e) => e instanceof InvalidArgumentError && /no such source file/.test(e.message));
});

test("the addon's DEVICE_ERROR naming a library symbol becomes a CustomOpDeviceError carrying the library and symbol", () => {
  const native = Object.assign(new Error("custom op \"rope\" is enabled for a model on the GPU, but /x/rope.so does not export the CUDA launcher llama_napi_rope_cuda"), {
    code: "DEVICE_ERROR",
    library: "/x/rope.so",
    symbol: "llama_napi_rope_cuda",
  });
  const typed = toTypedError(native);
  assert.ok(typed instanceof CustomOpDeviceError && typed instanceof DeviceError);
  assert.deepEqual({ library: typed.library, symbol: typed.symbol, message: typed.message }, { library: "/x/rope.so", symbol: "llama_napi_rope_cuda", message: native.message });
});

test("on the GPU: without the op's CUDA launcher, device cuda is a CustomOpDeviceError and device auto runs on the CPU", NEEDS_GPU, async () => {
  const err = await loadError({ device: "cuda", customOps: lib.rope, enableCustomOps: ["rope"] }, CustomOpDeviceError);
  assert.equal(err.library, lib.rope);
  assert.equal(err.symbol, "llama_napi_rope_cuda");
  assert.match(err.message, /does not export the CUDA launcher llama_napi_rope_cuda/);
  const model = await loadModel(tiny(), { device: "auto", customOps: lib.rope, enableCustomOps: ["rope"] });
  try {
    assert.equal(model.info.device, "cpu");
    assert.deepEqual(model.info.customOps, { library: lib.rope, ops: ["rope"] });
  } finally {
    await model.dispose();
  }
});

// nvcc may fuse the rotation's multiply-adds where the built-in kernel rounds each step: float rounding apart.
for (const dirName of ["sotu-l2-23m", "sotu-l3-26m"]) {
  test(`on the GPU: rope_cuda.cu's launcher gives the built-in CUDA logits (within 1e-4) and greedy tokens: ${dirName}`, NEEDS_GPU, async () => {
    const library = await buildOp(path.join(EXAMPLE, "rope_cuda.cu"), { output: path.join(dir, "rope_cuda.so") });
    await compareWithBuiltin(dirName, { customOps: library, enableCustomOps: ["rope"] }, 1e-4, "cuda");
  });
}
