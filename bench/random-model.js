#!/usr/bin/env node
// Writes a random-weight Llama model as a GGUF file with the real Llama 2 vocabulary (copied from the shared vocab
// GGUF), so that both llama-napi and llama.cpp can load and time it. Weights are encoded by the library's quantize
// path (tensor-codec, llama-quantize's per-tensor type rules), so q4_0 keeps output.weight at q6_K as llama.cpp does.
// Usage: node bench/random-model.js --shape stories110M|tinyllama|llama7b --type TYPE (quantize's: q4_K, Q5_K_M, IQ4_XS, ...)
//          [--mix q4_K_M] [--repeat-rows N] --out FILE
// --repeat-rows N encodes N random rows per tensor and repeats them: the llama7b shape takes about an hour to
// encode row by row, and a speed benchmark needs the sizes and the formats, not distinct rows.
"use strict";
const path = require("node:path");
const { parseArgs } = require("node:util");
const { GgufWriter } = require("../dist/cjs/formats/gguf-writer.js");
const { readGguf } = require("../dist/cjs/formats/gguf.js");
const { expectedTensorShapes } = require("../dist/cjs/formats/llama-tensors.js");
const { rowBytes, TENSOR_TYPE_LAYOUT } = require("../dist/cjs/formats/ggml-types.js");
const { encodeRows } = require("../dist/cjs/quantize/tensor-codec.js");
const { chooseTensorType, fileType, QUANTIZE_TYPES } = require("../dist/cjs/quantize/tensor-types.js");

const SHAPES = {
  stories110M: { dim: 768, layers: 12, heads: 12, kvHeads: 12, hidden: 2048, vocab: 32000, ctx: 1024 },
  tinyllama: { dim: 2048, layers: 22, heads: 32, kvHeads: 4, hidden: 5632, vocab: 32000, ctx: 2048 },
  // ctx 8192 (Llama 2's is 4096): bench/cuda/bench.js --depth 4096 needs 4,224 positions, as llama-bench -d 4096 -n 128
  // uses, and loadModel holds a context to the trained one.
  llama7b: { dim: 4096, layers: 32, heads: 32, kvHeads: 32, hidden: 11008, vocab: 32000, ctx: 8192 },
};

const { values } = parseArgs({
  options: {
    shape: { type: "string", default: "stories110M" }, type: { type: "string", default: "f32" }, mix: { type: "string" },
    out: { type: "string" }, seed: { type: "string", default: "1" }, "repeat-rows": { type: "string" },
  },
});
const shape = SHAPES[values.shape];
if (!shape || !QUANTIZE_TYPES.includes(values.type) || !values.out || (values.mix !== undefined && values.mix !== "q4_K_M")) {
  console.error(`usage: random-model.js --shape ${Object.keys(SHAPES).join("|")} --type ${QUANTIZE_TYPES.join("|")} [--mix q4_K_M] --out FILE`);
  process.exit(2);
}

// xorshift32 → roughly normal values (sum of 4 uniforms), std 0.02: keeps activations in a sane range.
let state = Number(values.seed) >>> 0 || 1;
function fillRandom(out, std, mean) {
  const scale = std * Math.sqrt(3); // (sum of 4 uniforms in [-1,1)) / 2 has variance 1/3
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (let k = 0; k < 4; k++) {
      state ^= state << 13; state ^= state >>> 17; state ^= state << 5; state >>>= 0;
      s += state / 2147483648 - 1;
    }
    out[i] = mean + (s / 2) * scale;
  }
  return out;
}

const { dim, layers, heads, kvHeads, hidden, vocab, ctx } = shape;
const headDim = dim / heads;
const tensors = [];
function add(name, rows, cols) {
  const { type } = chooseTensorType({ name, shape: rows === 1 ? [cols] : [rows, cols], layers, tiedEmbeddings: false }, values.type, values.mix);
  tensors.push({ name, rows, cols, type, ggmlType: TENSOR_TYPE_LAYOUT[type].code, dims: rows === 1 ? [cols] : [cols, rows], byteLength: rows * rowBytes(type, cols) });
}
const config = { dim, hiddenDim: hidden, layers, heads, kvHeads, headDim, vocabSize: vocab, tiedEmbeddings: false };
for (const [name, shape] of expectedTensorShapes(config)) add(name, shape.length === 1 ? 1 : shape[0], shape.at(-1));

const modelsDir = process.env.LLAMA_NAPI_TEST_MODELS ?? path.join(__dirname, "..", "..", "shared", "models");
const vocabMeta = readGguf(path.join(modelsDir, "vocab", "ggml-vocab-llama-spm.gguf")).metadata;
const metadata = [
  ["general.architecture", { type: "string", value: "llama" }],
  ["general.name", { type: "string", value: `random ${values.shape} ${values.mix ?? values.type}` }],
  ["general.file_type", { type: "u32", value: fileType(values.type, values.mix) }],
  ["general.quantization_version", { type: "u32", value: 2 }],
  ["llama.context_length", { type: "u32", value: ctx }],
  ["llama.embedding_length", { type: "u32", value: dim }],
  ["llama.block_count", { type: "u32", value: layers }],
  ["llama.feed_forward_length", { type: "u32", value: hidden }],
  ["llama.rope.dimension_count", { type: "u32", value: headDim }],
  ["llama.attention.head_count", { type: "u32", value: heads }],
  ["llama.attention.head_count_kv", { type: "u32", value: kvHeads }],
  ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
  ["llama.rope.freq_base", { type: "f32", value: 10000 }],
  ["tokenizer.ggml.model", { type: "string", value: "llama" }],
  ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: vocabMeta.get("tokenizer.ggml.tokens") }],
  ["tokenizer.ggml.scores", { type: "array", itemType: "f32", value: vocabMeta.get("tokenizer.ggml.scores") }],
  ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: vocabMeta.get("tokenizer.ggml.token_type") }],
  ["tokenizer.ggml.bos_token_id", { type: "u32", value: 1 }],
  ["tokenizer.ggml.eos_token_id", { type: "u32", value: 2 }],
  ["tokenizer.ggml.unknown_token_id", { type: "u32", value: 0 }],
  ["tokenizer.ggml.add_bos_token", { type: "bool", value: true }],
];
(async () => {
  const writer = GgufWriter.open(values.out, metadata, tensors);
  try {
    for (const t of tensors) {
      const norm = t.rows === 1; // norms near 1, weights near 0 (std 0.02 keeps activations in a sane range)
      const encode = (n) => encodeRows(t.type, fillRandom(new Float32Array(n * t.cols), norm ? 0.05 : 0.02, norm ? 1 : 0), n, t.cols);
      // Row chunks keep memory bounded for the large shapes.
      const chunk = Math.max(1, Math.floor((1 << 22) / t.cols));
      const repeated = values["repeat-rows"] ? await encode(Math.min(t.rows, Math.max(1, Number(values["repeat-rows"])))) : undefined;
      const repeatedRows = repeated ? repeated.length / rowBytes(t.type, t.cols) : 0;
      for (let first = 0; first < t.rows; first += chunk) {
        const n = Math.min(chunk, t.rows - first);
        if (!repeated) {
          writer.write(await encode(n));
          continue;
        }
        for (let row = first; row < first + n;) {
          const take = Math.min(repeatedRows - (row % repeatedRows), first + n - row);
          const start = (row % repeatedRows) * rowBytes(t.type, t.cols);
          writer.write(repeated.subarray(start, start + take * rowBytes(t.type, t.cols)));
          row += take;
        }
      }
    }
    writer.commit();
  } catch (err) {
    writer.abort();
    throw err;
  }
  console.log(`wrote ${values.out}: ${values.shape} ${values.mix ?? values.type}`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
