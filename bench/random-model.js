#!/usr/bin/env node
// Writes a random-weight Llama model as a GGUF file (f32, f16 or bf16) with the real Llama 2 vocabulary
// (copied from the shared vocab GGUF), so that both llama-napi and llama.cpp can load and time it.
// Usage: node bench/random-model.js --shape stories110M|tinyllama|sotu --type f32|f16|bf16 --out FILE
"use strict";
const path = require("node:path");
const { parseArgs } = require("node:util");
const { writeGguf } = require("../dist/cjs/formats/gguf-writer.js");
const { readGguf } = require("../dist/cjs/formats/gguf.js");

const SHAPES = {
  stories110M: { dim: 768, layers: 12, heads: 12, kvHeads: 12, hidden: 2048, vocab: 32000, ctx: 1024 },
  tinyllama: { dim: 2048, layers: 22, heads: 32, kvHeads: 4, hidden: 5632, vocab: 32000, ctx: 2048 },
  llama7b: { dim: 4096, layers: 32, heads: 32, kvHeads: 32, hidden: 11008, vocab: 32000, ctx: 4096 },
};
const GGML = { f32: { code: 0, bytes: 4 }, f16: { code: 1, bytes: 2 }, bf16: { code: 30, bytes: 2 } };

const { values } = parseArgs({
  options: { shape: { type: "string", default: "stories110M" }, type: { type: "string", default: "f32" }, out: { type: "string" }, seed: { type: "string", default: "1" } },
});
const shape = SHAPES[values.shape];
const type = GGML[values.type];
if (!shape || !type || !values.out) {
  console.error(`usage: random-model.js --shape ${Object.keys(SHAPES).join("|")} --type f32|f16|bf16 --out FILE`);
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

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toHalf(x) {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  let exp = ((b >>> 23) & 0xff) - 127 + 15;
  let mant = b & 0x7fffff;
  if (exp <= 0) return sign; // tiny values flush to zero (random weights never need subnormals)
  if (exp >= 31) return sign | 0x7c00;
  let h = sign | (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return h;
}
function toBf16(x) {
  f32[0] = x;
  const b = u32[0];
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}
function encode(values32) {
  if (values.type === "f32") return new Uint8Array(values32.buffer);
  const out = new Uint16Array(values32.length);
  const conv = values.type === "f16" ? toHalf : toBf16;
  for (let i = 0; i < values32.length; i++) out[i] = conv(values32[i]);
  return new Uint8Array(out.buffer);
}

const { dim, layers, heads, kvHeads, hidden, vocab, ctx } = shape;
const headDim = dim / heads;
const tensors = [];
function add(name, rows, cols, { norm = false } = {}) {
  const n = rows * cols;
  const isNorm = norm; // norms stay f32, as llama.cpp's converters keep them
  tensors.push({
    name,
    ggmlType: isNorm ? 0 : type.code,
    dims: rows === 1 ? [cols] : [cols, rows],
    byteLength: n * (isNorm ? 4 : type.bytes),
    data: () => {
      const v = fillRandom(new Float32Array(n), isNorm ? 0.05 : 0.02, isNorm ? 1 : 0);
      return isNorm ? new Uint8Array(v.buffer) : encode(v);
    },
  });
}
add("token_embd.weight", vocab, dim);
for (let l = 0; l < layers; l++) {
  add(`blk.${l}.attn_norm.weight`, 1, dim, { norm: true });
  add(`blk.${l}.attn_q.weight`, heads * headDim, dim);
  add(`blk.${l}.attn_k.weight`, kvHeads * headDim, dim);
  add(`blk.${l}.attn_v.weight`, kvHeads * headDim, dim);
  add(`blk.${l}.attn_output.weight`, dim, heads * headDim);
  add(`blk.${l}.ffn_norm.weight`, 1, dim, { norm: true });
  add(`blk.${l}.ffn_gate.weight`, hidden, dim);
  add(`blk.${l}.ffn_up.weight`, hidden, dim);
  add(`blk.${l}.ffn_down.weight`, dim, hidden);
}
add("output_norm.weight", 1, dim, { norm: true });
add("output.weight", vocab, dim);

const modelsDir = process.env.LLAMA_NAPI_TEST_MODELS ?? path.join(__dirname, "..", "..", "shared", "models");
const vocabMeta = readGguf(path.join(modelsDir, "vocab", "ggml-vocab-llama-spm.gguf")).metadata;
const fileType = { f32: 0, f16: 1, bf16: 32 }[values.type];
const metadata = [
  ["general.architecture", { type: "string", value: "llama" }],
  ["general.name", { type: "string", value: `random ${values.shape} ${values.type}` }],
  ["general.file_type", { type: "u32", value: fileType }],
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
writeGguf(values.out, { metadata, tensors });
console.log(`wrote ${values.out}: ${values.shape} ${values.type}`);
