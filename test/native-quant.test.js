"use strict";
// The native quantizers (binding.quantize / dequantize): round trips and argument checks, bit-exactness of q8_0
// and q4_0 against files llama.cpp's llama-quantize wrote from the same bf16 weights, and forward passes of
// tiny models with quantized weights against the same models with the dequantized weights in f32.
const { test } = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const binding = require("node-gyp-build")(path.join(__dirname, ".."));
const { readGguf } = require("../dist/cjs/formats/gguf.js");
const { readSafetensors } = require("../dist/cjs/formats/safetensors.js");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { makeRandom } = require("./helpers/random.js");

// The engine's type codes are ggml's numbers (native/engine/tensor.h).
const TYPE = { f32: 0, f16: 1, q4_0: 2, q4_1: 3, q5_0: 6, q5_1: 7, q8_0: 8, q2_K: 10, q3_K: 11, q4_K: 12, q5_K: 13, q6_K: 14, iq4_nl: 20, iq4_xs: 23, bf16: 30 };
const { GGML_TYPES } = require("../dist/cjs/formats/ggml-types.js");
const typeInfoOf = (code) => binding.typeInfo().find((t) => t.code === code);


function randomValues(random, count, scale = 1) {
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = (random() * 2 - 1) * scale;
  return values;
}

function readBytes(file, offset, length) {
  const fd = fs.openSync(file, "r");
  try {
    const bytes = Buffer.alloc(length);
    fs.readSync(fd, bytes, 0, length, offset);
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}

test("typeInfo lists the engine's types under ggml's numbers, with the block layouts GGUF files use", () => {
  const engine = binding.typeInfo();
  assert.deepStrictEqual(
    engine.map((t) => t.code),
    engine.map((t) => t.code).sort((a, b) => a - b),
    "code order",
  );
  // Exactly the ggml types the TypeScript side marks as computed by the engine, with the same layout.
  const computed = [...GGML_TYPES].filter(([, t]) => t.tensorType).map(([code, t]) => [code, t.tensorType, t.blockSize, t.blockBytes]);
  assert.deepStrictEqual(
    engine.map((t) => [t.code, t.name, t.blockSize, t.blockBytes]),
    computed,
  );
  assert.deepStrictEqual(Object.fromEntries(engine.map((t) => [t.name, t.code])), TYPE);
});

test("quantize -> dequantize round trips within each format's error bound", async () => {
  const random = makeRandom(7);
  const rows = 3, cols = 512;
  const src = randomValues(random, rows * cols);
  // Exact zeros survive every symmetric format (q4_1, q5_1, q2_K, q4_K and q5_K add a min; iq4_*'s levels skip 0).
  src[5] = 0;
  for (const [name, code] of Object.entries(TYPE)) {
    const packed = await binding.quantize(code, src, rows, cols);
    const info = typeInfoOf(code);
    assert.strictEqual(packed.byteLength, (rows * cols / info.blockSize) * info.blockBytes, name);
    const back = await binding.dequantize(code, packed, rows, cols);
    assert.strictEqual(back.length, rows * cols);
    let worst = 0;
    for (let i = 0; i < src.length; i++) worst = Math.max(worst, Math.abs(back[i] - src[i]));
    // |x| < 1 everywhere. f32 exact; f16 half an ulp at 1 (2^-11); bf16 2^-8. q8_0: d/2 = 1/254, plus 127 times
    // the half rounding of d (relative 2^-11). q4_0: d/2 = 1/16, plus the -8..7 asymmetry (the +max side clamps to 7/8 of max: 1/8).
    // q5_0: the same with 32 levels (1/32 + 1/32). q4_1 / q5_1: half of (max - min) / 15 or 31, max - min < 2.
    // K-quants: q6_K scale steps 1/32-ish of the block max; q4_K 4 bits and q5_K 5 bits with a fitted min; q3_K
    // 8 levels per 16 values; q2_K 4 levels with a fitted min. iq4_*: 16 levels up to 24 of 127 apart (half of
    // that at the block max ~1 is 0.095), the scale fitted by least squares rather than to the max.
    const bound = { f32: 0, f16: 2 ** -11, bf16: 2 ** -8, q8_0: 1 / 254 + 2 ** -11, q4_0: 1 / 8 + 1e-3, q6_K: 0.04, q5_K: 0.05, q4_K: 0.1, q3_K: 0.25, q2_K: 0.5, iq4_nl: 0.13, iq4_xs: 0.13, q4_1: 1 / 15 + 1e-3, q5_0: 1 / 16 + 1e-3, q5_1: 1 / 31 + 1e-3 }[name];
    assert.ok(worst <= bound, `${name}: max round-trip error ${worst} > ${bound}`);
    if (!["q4_1", "q5_1", "q2_K", "q4_K", "q5_K", "iq4_nl", "iq4_xs"].includes(name)) assert.strictEqual(back[5], 0, `${name} keeps an exact zero`);
  }
});

test("quantize and dequantize validate their arguments", async () => {
  const src = new Float32Array(64);
  await assert.rejects(binding.quantize(TYPE.q4_K, src, 1, 64), { code: "INVALID_ARGUMENT", message: /cols = 64 .*q4_K block size 256/ });
  await assert.rejects(binding.quantize(TYPE.q8_0, src, 3, 32), { code: "INVALID_ARGUMENT", message: /256 bytes.*3 rows x 32 cols.*384/ });
  await assert.rejects(binding.quantize(4, src, 1, 64), { code: "INVALID_ARGUMENT", message: /type 4 is not one of the engine's types/ }); // a code ggml removed
  await assert.rejects(binding.quantize(TYPE.q8_0, new Uint8Array(64), 1, 64), { code: "INVALID_ARGUMENT", message: /Float32Array/ });
  await assert.rejects(binding.dequantize(TYPE.q4_0, new Uint8Array(17), 1, 32), { code: "INVALID_ARGUMENT", message: /17 bytes.*18/ });
});

// HF (rotate-half) rows of q/k to GGUF's interleaved rotary order: GGUF row h*hd + 2i + j = HF row h*hd + j*hd/2 + i.
function permuteRotary(values, rows, cols, heads) {
  const headDim = rows / heads, half = headDim / 2;
  const out = new Float32Array(values.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const from = h * headDim + j * half + i, to = h * headDim + 2 * i + j;
        out.set(values.subarray(from * cols, (from + 1) * cols), to * cols);
      }
  return out;
}

function ggufNameOf(hfName) {
  const mapped = {
    "model.embed_tokens.weight": "token_embd.weight",
    "lm_head.weight": "output.weight",
  }[hfName];
  if (mapped) return mapped;
  const m = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)_proj\.weight$/.exec(hfName);
  if (!m) return undefined;
  const part = { q: "attn_q", k: "attn_k", v: "attn_v", o: "attn_output", gate: "ffn_gate", up: "ffn_up", down: "ffn_down" }[m[3]];
  return `blk.${m[1]}.${part}.weight`;
}

/** Quantizes every bf16 matrix of sotu-l2-23m and counts the blocks equal to llama.cpp's file, per GGUF type. */
async function compareWithLlamaCpp(ggufFile) {
  const dir = modelPath("trained", "sotu-l2-23m");
  const stFile = path.join(dir, "model.safetensors");
  const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  const gguf = readGguf(modelPath("trained", "sotu-l2-23m-gguf", ggufFile));
  const byName = new Map(gguf.tensors.map((t) => [t.name, t]));
  const counts = {};
  for (const t of readSafetensors(stFile).tensors) {
    const name = ggufNameOf(t.name);
    const target = name && byName.get(name);
    if (!target) continue;
    const typeName = Object.keys(TYPE).find((k) => TYPE[k] === target.ggmlType && typeInfoOf(TYPE[k]).blockSize > 1);
    if (!typeName) continue;
    const [rows, cols] = t.shape;
    const raw = readBytes(stFile, t.offset, t.byteLength);
    let values = new Float32Array(rows * cols);
    const bits = new Uint32Array(values.buffer);
    for (let i = 0; i < values.length; i++) bits[i] = raw.readUInt16LE(2 * i) << 16; // bf16 -> f32 is exact
    if (name.endsWith("attn_q.weight")) values = permuteRotary(values, rows, cols, config.num_attention_heads);
    if (name.endsWith("attn_k.weight")) values = permuteRotary(values, rows, cols, config.num_key_value_heads);
    const ours = await binding.quantize(TYPE[typeName], values, rows, cols);
    const theirs = readBytes(gguf.path ?? modelPath("trained", "sotu-l2-23m-gguf", ggufFile), target.offset, target.byteLength);
    assert.strictEqual(ours.byteLength, theirs.byteLength, name);
    const blockBytes = typeInfoOf(TYPE[typeName]).blockBytes;
    const c = (counts[typeName] ??= { identical: 0, total: 0, tensors: 0, tensorsIdentical: 0 });
    let identical = 0;
    for (let b = 0; b < ours.byteLength / blockBytes; b++) {
      const o = b * blockBytes;
      if (Buffer.compare(Buffer.from(ours.buffer, ours.byteOffset + o, blockBytes), theirs.subarray(o, o + blockBytes)) === 0)
        identical++;
    }
    c.identical += identical;
    c.total += ours.byteLength / blockBytes;
    c.tensors++;
    if (identical === ours.byteLength / blockBytes) c.tensorsIdentical++;
  }
  return counts;
}

test("q8_0 quantization is bit-identical to llama.cpp's sotu-l2-23m-q8_0.gguf", NEEDS_REFERENCE_MODELS, async (t) => {
  const counts = await compareWithLlamaCpp("sotu-l2-23m-q8_0.gguf");
  t.diagnostic(JSON.stringify(counts));
  assert.strictEqual(counts.q8_0.tensors, 58);
  assert.strictEqual(counts.q8_0.identical, counts.q8_0.total);
});

test("q4_0 quantization is bit-identical to llama.cpp's sotu-l2-23m-q4_0.gguf", NEEDS_REFERENCE_MODELS, async (t) => {
  const counts = await compareWithLlamaCpp("sotu-l2-23m-q4_0.gguf");
  t.diagnostic(JSON.stringify(counts));
  assert.strictEqual(counts.q4_0.tensors, 57);
  assert.strictEqual(counts.q4_0.identical, counts.q4_0.total);
});

test("K-quants agree with llama.cpp's sotu-l2-23m-q4_K_M.gguf and -q6_K.gguf", NEEDS_REFERENCE_MODELS, async (t) => {
  // Bit-exactness is not required of the K-quant quantizers (only their layout and quality), but ours follow
  // ggml's reference quantizers step for step (with no fused multiply-adds), and every block matches.
  for (const file of ["sotu-l2-23m-q4_K_M.gguf", "sotu-l2-23m-q6_K.gguf"]) {
    const counts = await compareWithLlamaCpp(file);
    t.diagnostic(`${file}: ${JSON.stringify(counts)}`);
    for (const [type, c] of Object.entries(counts))
      assert.strictEqual(c.identical, c.total, `${file} ${type}: ${c.identical}/${c.total} blocks identical`);
  }
});

// ---- Forward passes with quantized weights ----

// dim and hidden are multiples of 256 so every matrix can take every type; 67 vocabulary rows leave partial
// row tiles.
const CONFIG = { dim: 256, hiddenDim: 512, layers: 2, heads: 4, kvHeads: 2, headDim: 64, vocabSize: 67, normEps: 1e-5 };

function matrixShapes(c) {
  const shapes = [["token_embd.weight", c.vocabSize, c.dim]];
  for (let l = 0; l < c.layers; l++) {
    shapes.push(
      [`blk.${l}.attn_q.weight`, c.heads * c.headDim, c.dim],
      [`blk.${l}.attn_k.weight`, c.kvHeads * c.headDim, c.dim],
      [`blk.${l}.attn_v.weight`, c.kvHeads * c.headDim, c.dim],
      [`blk.${l}.attn_output.weight`, c.dim, c.heads * c.headDim],
      [`blk.${l}.ffn_gate.weight`, c.hiddenDim, c.dim],
      [`blk.${l}.ffn_up.weight`, c.hiddenDim, c.dim],
      [`blk.${l}.ffn_down.weight`, c.dim, c.hiddenDim],
    );
  }
  shapes.push(["output.weight", c.vocabSize, c.dim]);
  return shapes;
}

/**
 * Two raw weight files for the same random model: one with the matrices in the types typeOf(name) picks, one
 * with those matrices dequantized back to f32 (so both compute with exactly the same weight values). Returns
 * the two specs for binding.Model.
 */
async function writeQuantizedPair(typeOf, seed) {
  const random = makeRandom(seed);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-quant-"));
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  const quantized = { chunks: [], tensors: [], offset: 0 }, reference = { chunks: [], tensors: [], offset: 0 };
  const append = (target, name, type, shape, bytes) => {
    target.tensors.push({ name, file: 0, offset: target.offset, type, shape });
    target.chunks.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    target.offset += bytes.byteLength;
  };
  for (const [name, rows, cols] of matrixShapes(CONFIG)) {
    // Scale 1/sqrt(cols) keeps activations O(1) through the layers; embeddings O(1).
    const values = randomValues(random, rows * cols, name === "token_embd.weight" ? 1 : 1 / Math.sqrt(cols));
    const type = TYPE[typeOf(name)];
    const packed = await binding.quantize(type, values, rows, cols);
    append(quantized, name, type, [rows, cols], packed);
    append(reference, name, TYPE.f32, [rows, cols], await binding.dequantize(type, packed, rows, cols));
  }
  const norms = ["output_norm.weight"];
  for (let l = 0; l < CONFIG.layers; l++) norms.push(`blk.${l}.attn_norm.weight`, `blk.${l}.ffn_norm.weight`);
  for (const name of norms) {
    const values = randomValues(random, CONFIG.dim, 0.2).map((v) => 1 + v);
    append(quantized, name, TYPE.f32, [CONFIG.dim], values);
    append(reference, name, TYPE.f32, [CONFIG.dim], values);
  }
  const ropeFreqs = new Float32Array(CONFIG.headDim / 2);
  for (let i = 0; i < ropeFreqs.length; i++) ropeFreqs[i] = 1 / Math.pow(10000, (2 * i) / CONFIG.headDim);
  const spec = (target, file) => {
    fs.writeFileSync(file, Buffer.concat(target.chunks));
    return { files: [file], tensors: target.tensors, threads: 2, config: { ...CONFIG, ropeInterleaved: true, ropeFreqs } };
  };
  return { quantized: spec(quantized, path.join(dir, "quantized.bin")), reference: spec(reference, path.join(dir, "f32.bin")) };
}

const TOKENS = [1, 5, 17, 42, 3, 66, 0, 29, 8, 50, 13];

/**
 * All-position logits of TOKENS, as one batch (prompt path) and one token at a time (decode path), and the bytes of
 * weights the model repacked at load.
 */
async function evaluate(spec) {
  const model = new binding.Model(spec);
  try {
    const batchContext = model.createContext(32);
    const batch = (await batchContext.decode(Int32Array.from(TOKENS), 0, { logits: "all" })).logits;
    batchContext.close();
    const stepContext = model.createContext(32);
    const steps = new Float32Array(batch.length);
    for (let i = 0; i < TOKENS.length; i++)
      steps.set((await stepContext.decode(Int32Array.of(TOKENS[i]), i)).logits, i * CONFIG.vocabSize);
    stepContext.close();
    return { batch, steps, repackedBytes: model.repackedBytes };
  } finally {
    model.close();
  }
}

function relativeRms(a, b) {
  let diff = 0, norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += b[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}

// The only difference between the two models is that the quantized one rounds its activations to 8 bits
// (q8_0 / q8_K) before each matmul: a relative error of at most 1/254 per value (RMS about 1/(254 sqrt 3) =
// 0.23%), independent across values. Through 2 layers (7 matmuls each, plus the output) such errors add up to
// roughly 1% of the logits' RMS; 3% leaves room without admitting a wrong kernel (one wrong block scale or
// nibble order moves the logits by tens of percent). Batch and one-at-a-time evaluation quantize each token's
// activations identically and sum each block in the same order, so they agree to float rounding in attention.
const FORWARD_CASES = {
  q8_0: () => "q8_0",
  q4_0: () => "q4_0",
  q2_K: () => "q2_K",
  q3_K: () => "q3_K",
  q4_K: () => "q4_K",
  q5_K: () => "q5_K",
  q6_K: () => "q6_K",
  q4_1: () => "q4_1",
  q5_0: () => "q5_0",
  q5_1: () => "q5_1",
  iq4_nl: () => "iq4_nl",
  iq4_xs: () => "iq4_xs",
  // llama-quantize's q4_K_M mix: attn_v, ffn_down and output in q6_K, the rest q4_K.
  q4_K_M: (name) => (/attn_v|ffn_down|^output/.test(name) ? "q6_K" : "q4_K"),
  // llama-quantize's q4_K_S: q5_K in some attn_v / ffn_down.
  // llama-quantize's q3_K_M: q4_K / q5_K in attn_v, attn_output and ffn_down.
  "q3_K + q4_K + q5_K + q6_K mixed": (name) => (/attn_v|^output/.test(name) ? "q6_K" : /ffn_down/.test(name) ? "q5_K" : /attn_output/.test(name) ? "q4_K" : "q3_K"),
  "q4_K + q5_K + q6_K mixed": (name) => (/attn_v|ffn_down/.test(name) ? "q5_K" : /^output/.test(name) ? "q6_K" : "q4_K"),
  "q8_0 + f16 + q4_0 mixed": (name) => (/attn_q|ffn_up/.test(name) ? "f16" : /attn_k|ffn_gate|output/.test(name) ? "q4_0" : "q8_0"),
};

for (const [label, typeOf] of Object.entries(FORWARD_CASES)) {
  test(`forward with ${label} weights matches the dequantized f32 model up to activation quantization`, async (t) => {
    const { quantized, reference } = await writeQuantizedPair(typeOf, 11);
    const q = await evaluate(quantized);
    const f = await evaluate(reference);
    const error = relativeRms(q.batch, f.batch);
    const pathError = relativeRms(q.steps, q.batch);
    t.diagnostic(`relative RMS vs f32: ${error.toExponential(2)}; decode vs batch: ${pathError.toExponential(2)}`);
    assert.ok(error < 0.03, `logits differ from the dequantized f32 model by ${error} (relative RMS)`);
    assert.ok(pathError < 1e-5, `decode and batch logits differ by ${pathError} (relative RMS)`);
    assert.ok(relativeRms(f.steps, f.batch) < 1e-5);
  });
}

// q4_0, q8_0, q4_K, q5_K and q6_K matrices are repacked at load for the SIMD kernels (native/engine/repack.h);
// LLAMA_NAPI_REPACK=0 keeps the mapped rows. On AVX-512 both paths take the same float steps, bit for bit; the AVX2
// kernels on the mapped rows sum in another order (kernel_tests holds every product within 1e-5 of the scalar one).
for (const mix of ["q8_0 + f16 + q4_0 mixed", "q4_K_M", "q4_K + q5_K + q6_K mixed"]) {
  test(`repacked weights (${mix}) give the logits of the mapped ones (LLAMA_NAPI_REPACK=0)`, async () => {
    const { quantized } = await writeQuantizedPair(FORWARD_CASES[mix], 5);
    const repacked = await evaluate(quantized);
    process.env.LLAMA_NAPI_REPACK = "0";
    let mapped;
    try {
      mapped = await evaluate(quantized);
    } finally {
      delete process.env.LLAMA_NAPI_REPACK;
    }
    const kernels = binding.cpuFeatures();
    assert.strictEqual(mapped.repackedBytes, 0);
    if (kernels === "scalar") {
      assert.strictEqual(repacked.repackedBytes, 0);
      return;
    }
    // Every repacked matrix that a product reads (the embedding table is looked up, not multiplied).
    const repackedTypes = [TYPE.q4_0, TYPE.q8_0, TYPE.q4_K, TYPE.q5_K, TYPE.q6_K];
    const matrixBytes = quantized.tensors.filter((t) => repackedTypes.includes(t.type) && t.name !== "token_embd.weight")
      .reduce((n, t) => n + (t.shape[0] * t.shape[1] / typeInfoOf(t.type).blockSize) * typeInfoOf(t.type).blockBytes, 0);
    assert.ok(repacked.repackedBytes >= matrixBytes, `repackedBytes ${repacked.repackedBytes} < the ${matrixBytes} bytes repacked`);
    if (kernels.startsWith("avx512")) {
      assert.deepStrictEqual(repacked.batch, mapped.batch);
      assert.deepStrictEqual(repacked.steps, mapped.steps);
    } else {
      // Another summation order can flip the rounding of a quantized activation downstream (one q8 step: up to 1/254
      // of a value), which moves the logits by ~1e-3; a wrong kernel moves them by tens of percent.
      const difference = relativeRms(repacked.batch, mapped.batch);
      assert.ok(difference < 1e-2, `repacked vs mapped logits: relative RMS ${difference}`);
    }
  });
}

test("the forward comparisons pass on the portable scalar kernels too (LLAMA_NAPI_KERNELS=scalar)", { skip: process.env.LLAMA_NAPI_KERNELS === "scalar" }, () => {
  const { spawnSync } = require("node:child_process");
  const run = spawnSync(process.execPath, ["--test", "--test-name-pattern=^forward with", __filename], {
    encoding: "utf8",
    env: { ...process.env, LLAMA_NAPI_KERNELS: "scalar" },
  });
  assert.strictEqual(run.status, 0, `forward tests failed on scalar kernels:\n${run.stdout}${run.stderr}`);
});

test("a quantized matrix whose rows do not fill whole blocks is refused, naming the tensor", async () => {
  const { quantized } = await writeQuantizedPair(() => "q8_0", 3);
  const t = quantized.tensors.find((x) => x.name === "blk.0.ffn_down.weight");
  t.type = TYPE.q4_K; // same bytes would not even fit; the shape check comes first
  t.shape = [CONFIG.dim, CONFIG.hiddenDim + 32];
  assert.throws(() => new binding.Model(quantized), { code: "MODEL_FORMAT", message: /blk\.0\.ffn_down\.weight.*544.*q4_K block size 256/ });
  t.shape = [CONFIG.dim, CONFIG.hiddenDim];
  const norm = quantized.tensors.find((x) => x.name === "output_norm.weight");
  norm.type = TYPE.q8_0;
  assert.throws(() => new binding.Model(quantized), { code: "UNSUPPORTED_MODEL", message: /output_norm\.weight.*q8_0.*norm weights/ });
});
