"use strict";
// The CUDA backend (native/cuda/). Without a GPU (the normal suite, CI) this file checks that the addon was built
// as configured (with CUDA unless LLAMA_NAPI_CUDA=0), that device "cuda" then fails with a DeviceError saying why
// and "auto" falls back to the CPU, and says by name that the GPU checks did not run. On a GPU (bench/cuda/run.sh
// on the lent H100) it runs the kernel tests against the CPU engine and the reference models on the GPU: greedy
// continuations identical to the references, logits within 1e-3.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const os = require("node:os");
const { loadModel, quantize, DeviceError, NumericalError } = require("../dist/cjs/index.js");
const { toTypedError } = require("../dist/cjs/native/engine.js");
const { modelWithNaN, writeTinyModel } = require("./helpers/tiny-model.js");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { readReference, maxAbsDiff } = require("./helpers/reference.js");
const { testProgram } = require("./helpers/test-programs.js");

const root = path.join(__dirname, "..");
const binding = require("node-gyp-build")(root);
const cuda = binding.cudaInfo();
// As CMakeLists.txt decides: LLAMA_NAPI_CUDA=1 requires CUDA, 0 leaves it out, unset builds it when an NVIDIA
// driver is visible and nvcc is found.
const nvccFound = ["nvcc", "/usr/local/cuda/bin/nvcc"].some((nvcc) => spawnSync(nvcc, ["--version"]).status === 0);
const driverVisible = fs.existsSync("/dev/nvidiactl") || fs.existsSync("/proc/driver/nvidia");
const cudaWanted = process.env.LLAMA_NAPI_CUDA ? process.env.LLAMA_NAPI_CUDA === "1" : nvccFound && driverVisible;
const tiny = () => DEFAULT_MODEL;

test(`the addon was built ${cudaWanted ? "with" : "without"} the CUDA backend (LLAMA_NAPI_CUDA=${process.env.LLAMA_NAPI_CUDA ?? "unset"})`, () => {
  assert.equal(cuda.compiled, cudaWanted, JSON.stringify(cuda));
});

test("the addon's DEVICE_ERROR becomes a DeviceError", () => {
  assert.equal(toTypedError(Object.assign(new Error("no GPU"), { code: "DEVICE_ERROR" })).constructor, DeviceError);
});

if (cuda.devices === 0) {
  test(`no GPU here (${cuda.reason}): device "cuda" fails with a DeviceError saying why, "auto" runs on the CPU`, async (t) => {
    t.diagnostic("the GPU checks of this file run only where a CUDA device is present (bench/cuda/run.sh)");
    await assert.rejects(loadModel(tiny(), { device: "cuda" }), (err) => {
      assert.ok(err instanceof DeviceError, `${err.name}: ${err.message}`);
      assert.match(err.message, /CUDA is not available|no CUDA backend/);
      return true;
    });
    const model = await loadModel(tiny(), { device: "auto" });
    try {
      assert.equal(model.info.device, "cpu");
      assert.equal(model.info.gpu, undefined);
    } finally {
      await model.dispose();
    }
  });
} else {
  gpuTests();
}

function gpuTests() {
  const cudaKernelTests = testProgram("cuda_kernel_tests");
  test("CUDA kernels against the CPU engine (build/Release/cuda_kernel_tests)", cudaKernelTests.options, (t) => {
    const run = spawnSync(cudaKernelTests.file, { encoding: "utf8" });
    for (const line of `${run.stdout}${run.stderr}`.trim().split("\n")) t.diagnostic(line);
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  });

  test("model.info names the GPU; device \"cpu\" still runs on the CPU", async () => {
    const gpu = await loadModel(tiny(), { device: "cuda", gpu: 0 });
    const cpu = await loadModel(tiny(), { device: "cpu" });
    try {
      assert.equal(gpu.info.device, "cuda");
      assert.equal(gpu.info.gpu.index, 0);
      assert.ok(gpu.info.gpu.name.length > 0);
      assert.equal(cpu.info.device, "cpu");
      // Each device's own pass size (kMaxPassRows in native/cuda/backend.cu, LLM_CPU_PASS_TOKENS on the CPU), which
      // the scheduler slices long prompts to.
      assert.equal(gpu.engine.limits.passTokens, 512);
      assert.equal(cpu.engine.limits.passTokens, 256);
      assert.equal(gpu.scheduler.passTokens, 512);
      await assert.rejects(loadModel(tiny(), { device: "cuda", gpu: cuda.devices }), DeviceError);
    } finally {
      await gpu.dispose();
      await cpu.dispose();
    }
  });

  test("embed on a GPU is a DeviceError (hidden states are computed on the CPU only); the engine refuses them on a GPU too", async () => {
    const gpu = await loadModel(tiny(), { device: "cuda" });
    try {
      await assert.rejects(gpu.embed(["a"]), (err) => err instanceof DeviceError && /CPU only/.test(err.message));
      const context = gpu.engine.createContext(8);
      try {
        await assert.rejects(gpu.engine.decodeBatch([{ context, tokens: Int32Array.of(1, 5), pos: 0, logits: "hidden" }]), DeviceError);
      } finally {
        context.close();
      }
    } finally {
      await gpu.dispose();
    }
  });

  // The device machine takes 64 MiB per call, less than the three trained models: LLAMA_NAPI_CUDA_TRAINED names
  // the ones a run carries (bench/cuda/run.sh sets it); the others are reported as not run.
  const chosen = process.env.LLAMA_NAPI_CUDA_TRAINED?.split(",");

  // Every block type on the GPU (the kernel tests hold each product to the CPU's): sotu-l2-23m quantized here by
  // quantize() to a file type of each, run on the GPU and on the CPU. Both quantize the activations to q8, so a
  // float difference in the order of a sum can move one across a rounding step; the logits then differ by a little
  // (the kernel tests' models: up to 3e-2 of the largest), and greedy tokens agree except at a near-tie, which the
  // test names: the CPU's logits of the two tokens lie within twice the two devices' largest difference there.
  const QUANTIZED_FILE_TYPES = ["Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS", "Q2_K", "Q3_K_M", "Q4_K_S", "Q5_K_M"];
  const sotuHere = !chosen || chosen.includes("sotu-l2-23m");
  for (const fileType of QUANTIZED_FILE_TYPES)
  test(`cuda: sotu-l2-23m quantized to ${fileType} here: logits within 3e-2 of the CPU's on the same file, greedy 16 tokens the same but at near-ties`,
    sotuHere ? NEEDS_REFERENCE_MODELS : { skip: `sotu-l2-23m not in this call (LLAMA_NAPI_CUDA_TRAINED=${process.env.LLAMA_NAPI_CUDA_TRAINED})` }, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cuda-types-"));
    try {
      const { path: file } = await quantize(modelPath("trained", "sotu-l2-23m"), path.join(dir, `${fileType}.gguf`), { type: fileType });
      const gpu = await loadModel(file, { device: "cuda" });
      const cpu = await loadModel(file, { device: "cpu" });
      try {
        assert.equal(gpu.info.device, "cuda");
        const { ref } = readReference("trained/sotu-l2-23m");
        let worst = 0;
        const nearTies = [];
        for (const [i, c] of ref.cases.entries()) {
          const want = await cpu.evaluate(c.ids);
          const relative = maxAbsDiff(await gpu.evaluate(c.ids), want) / Math.max(...want.map(Math.abs));
          worst = Math.max(worst, relative);
          assert.ok(relative < 3e-2, `case ${i}: logits relative error ${relative}`);
          const options = { maxTokens: 16, temperature: 0, ignoreEos: true };
          const [onGpu, onCpu] = [(await gpu.complete({ tokens: c.ids }, options)).tokens, (await cpu.complete({ tokens: c.ids }, options)).tokens];
          const parted = onCpu.findIndex((token, k) => token !== onGpu[k]);
          if (parted < 0) continue;
          const prefix = [...c.ids, ...onCpu.slice(0, parted)];
          const [cpuLogits, gpuLogits] = [await cpu.evaluate(prefix), await gpu.evaluate(prefix)];
          const gap = Math.abs(cpuLogits[onCpu[parted]] - cpuLogits[onGpu[parted]]);
          const noise = maxAbsDiff(cpuLogits, gpuLogits);
          assert.ok(gap <= 2 * noise, `case ${i}: greedy tokens part at ${parted} (CPU ${onCpu[parted]}, GPU ${onGpu[parted]}), logit gap ${gap} > 2 x ${noise}`);
          nearTies.push(`case ${i} at token ${parted}: gap ${gap.toExponential(2)}, devices ${noise.toExponential(2)} apart`);
        }
        t.diagnostic(`largest logits relative error over ${ref.cases.length} cases: ${worst.toExponential(2)}; near-ties: ${nearTies.join("; ") || "none"}`);
      } finally {
        await gpu.dispose();
        await cpu.dispose();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("cuda: a NaN weight makes evaluate and generation fail with a NumericalError, greedy (device argmax) or sampled", async () => {
    const file = modelWithNaN(5);
    const model = await loadModel(file, { device: "cuda" });
    try {
      for (const temperature of [0, 0.8]) {
        await assert.rejects(model.complete("Once upon", { temperature, maxTokens: 4 }), (err) => err instanceof NumericalError && err.model === file);
      }
      await assert.rejects(model.evaluate([1, 2, 3]), (err) => err instanceof NumericalError && /not finite/.test(err.message));
      // The model goes on: its sound twin on the same GPU generates.
      const clean = await loadModel(modelWithNaN(undefined), { device: "cuda" });
      try {
        assert.equal((await clean.complete("Once upon", { temperature: 0, maxTokens: 4, ignoreEos: true })).tokens.length, 4);
      } finally {
        await clean.dispose();
      }
    } finally {
      await model.dispose();
    }
  });

  const TRAINED = [
    { name: "sotu-l2-23m (HF safetensors, bf16)", model: ["trained", "sotu-l2-23m"], reference: "trained/sotu-l2-23m" },
    { name: "sotu-l2-23m-meta (Meta consolidated.pth)", model: ["trained", "sotu-l2-23m-meta"], reference: "trained/sotu-l2-23m" },
    { name: "sotu-l3-26m (HF, Llama 3.1 rope scaling, tied)", model: ["trained", "sotu-l3-26m"], reference: "trained/sotu-l3-26m" },
  ];
  for (const m of TRAINED) {
    if (chosen && !chosen.includes(m.model[1])) {
      test(`cuda: ${m.name}: NOT RUN in this call (LLAMA_NAPI_CUDA_TRAINED=${chosen.join(",")})`, () => {});
      continue;
    }
    // f32 keys and values hold the bound the CPU's f32 cache does; f16 ones (the default) round each key and value
    // to 11 bits, which moved the CPU's logits by up to 4.1e-3 on these models without changing a greedy token.
    for (const [kvCacheType, bound] of [["f32", 1e-3], ["f16", 1e-2]])
    test(`cuda: ${m.name}, ${kvCacheType} KV: logits within ${bound} of HF float32 and greedy48 identical`, NEEDS_REFERENCE_MODELS, async (t) => {
      const { ref, logitsOf } = readReference(m.reference);
      const model = await loadModel(modelPath(...m.model), { device: "cuda", kvCacheType });
      try {
        assert.equal(model.info.device, "cuda");
        let worst = 0;
        for (const [i, c] of ref.cases.entries()) {
          const diff = maxAbsDiff(await model.evaluate(c.ids), logitsOf(i));
          worst = Math.max(worst, diff);
          assert.ok(diff <= bound, `case ${i} (${JSON.stringify(c.prompt)}): max |Δ| = ${diff}`);
          const { tokens } = await model.complete({ tokens: c.ids }, { maxTokens: 48, temperature: 0 });
          assert.deepEqual(tokens, c.greedy48, `case ${i} greedy continuation`);
        }
        t.diagnostic(`largest |Δ logit| over ${ref.cases.length} cases: ${worst.toExponential(2)}`);
      } finally {
        await model.dispose();
      }
    });
  }

  for (const [name, file, options] of [
    ["stories260K.gguf", tiny, () => ({})],
    ["stories260K.bin (llama2.c, shared classifier: tied embeddings)", () => modelPath("tinystories", "stories260K.bin"),
      () => ({ tokenizer: modelPath("tinystories", "tok512.bin") })],
  ]) test(`cuda: ${name} reproduces llama2.c run.c output`, NEEDS_REFERENCE_MODELS, async () => {
    const model = await loadModel(file(), { ...options(), device: "cuda" });
    try {
      const cases = JSON.parse(fs.readFileSync(modelPath("tinystories", "expected-run-c.json"), "utf8")).cases;
      for (const c of cases) {
        const promptIds = model.tokenize(c.prompt, { addBos: true });
        let text = model.detokenize(promptIds);
        for await (const t of model.generate({ tokens: promptIds }, { temperature: 0, maxTokens: c.steps - promptIds.length + 1 })) {
          text += t.text;
        }
        assert.equal(text, c.output, `prompt ${JSON.stringify(c.prompt)}`);
      }
    } finally {
      await model.dispose();
    }
  });

  test("cuda: batched sequences (continuous batching) equal each sequence alone, and the engine's greedy loop agrees", async () => {
    const model = await loadModel(tiny(), { device: "cuda" });
    try {
      const prompts = ["Once upon a time", "The cat", "Lily and Ben went to the park. They", "One day"];
      const alone = [];
      for (const p of prompts) alone.push((await model.complete(p, { temperature: 0, maxTokens: 40 })).tokens);
      const together = await model.generateBatch(prompts, { temperature: 0, maxTokens: 40 });
      assert.deepEqual(together.map((c) => c.tokens), alone);
      assert.deepEqual(await model.nativeGreedy(prompts[0], 40), alone[0]);
    } finally {
      await model.dispose();
    }
  });

  test("cuda: KV cache state (read, write, copy) matches the CPU's and restores decoding", async () => {
    // f32 pools: the two engines' keys agree to float rounding (f16 rows could round a near-tie apart).
    const gpu = await loadModel(tiny(), { device: "cuda", kvCacheType: "f32" });
    const cpu = await loadModel(tiny(), { device: "cpu", kvCacheType: "f32" });
    try {
      const ids = gpu.tokenize("Once upon a time there was a dog", { addBos: true });
      const next = ids.slice(-1);
      const prefix = ids.slice(0, -1);
      // The engines behind the models (internal): contexts with state access.
      const [ge, ce] = [gpu.engine, cpu.engine];
      const a = ge.createContext(64), b = ge.createContext(64), c = ge.createContext(64), onCpu = ce.createContext(64);
      await a.decode(prefix, 0, { logits: "none" });
      await onCpu.decode(prefix, 0, { logits: "none" });
      const state = a.readState(prefix.length);
      const cpuState = new Float32Array(onCpu.readState(prefix.length).buffer);
      assert.ok(maxAbsDiff(new Float32Array(state.buffer), cpuState) < 1e-4, "GPU and CPU caches hold the same keys and values");
      b.writeState(prefix.length, state, prefix);
      c.copyFrom(a, prefix.length);
      const want = (await a.decode(next, prefix.length)).logits;
      assert.ok(maxAbsDiff((await b.decode(next, prefix.length)).logits, want) === 0, "restored state decodes the same");
      assert.ok(maxAbsDiff((await c.decode(next, prefix.length)).logits, want) === 0, "copied state decodes the same");
      const top = (await a.decode(next, prefix.length, { logits: "none", topK: 5 })).top;
      assert.equal(top.length, 5);
      assert.equal(top[0], want.indexOf(Math.max(...want)));
      for (const ctx of [a, b, c, onCpu]) ctx.close();
    } finally {
      await gpu.dispose();
      await cpu.dispose();
    }
  });

  test("cuda: a KV pool larger than the GPU fails at load with an OutOfMemoryError (a DeviceError) naming the bytes; a smaller one loads", async () => {
    // 200M positions of f32 rows: 256 GB, more than any one GPU.
    await assert.rejects(loadModel(tiny(), { device: "cuda", kvCacheType: "f32", kvCacheTokens: 200_000_000 }), (err) => {
      assert.ok(err instanceof DeviceError && err.name === "OutOfMemoryError", `${err.name}: ${err.message}`);
      assert.match(err.message, /free/);
      assert.ok(err.bytesNeeded > 200_000_000, `bytesNeeded = ${err.bytesNeeded}`);
      return true;
    });
    const model = await loadModel(tiny(), { device: "cuda" });
    try {
      const { tokens } = await model.complete("Once upon a time", { temperature: 0, maxTokens: 8 });
      assert.equal(tokens.length, 8);
    } finally {
      await model.dispose();
    }
  });
}
