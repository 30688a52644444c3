"use strict";
// Writes tiny GGUF models for tests whose weights the test chooses, with stories260K's 512-token SPM vocab.
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { writeGguf } = require("../../dist/cjs/formats/gguf-writer.js");
const { readGguf } = require("../../dist/cjs/formats/gguf.js");
const { expectedTensorShapes } = require("../../dist/cjs/formats/llama-tensors.js");
const { DEFAULT_MODEL } = require("./models.js");
const { makeRandom } = require("./random.js");

/**
 * fill(name, rows, cols) returns the Float32Array of a tensor (rows*cols values), undefined for zeros, or
 * { ggmlType, bytes } for a tensor stored in another type (bytes: a Uint8Array of its whole data).
 * metadata: more [key, GgufValue] entries (a chat template, an eot id, ...).
 * Returns the path of a new GGUF file in a temp dir (removed at process exit).
 */
function writeTinyModel({ dim = 16, layers = 1, heads = 2, kvHeads = 1, hidden = 32, contextLength = 64, fill = () => undefined, metadata: extra = [] } = {}) {
  const vocabMeta = readGguf(DEFAULT_MODEL).metadata;
  const vocab = vocabMeta.get("tokenizer.ggml.tokens").length;
  const headDim = dim / heads;
  const tensors = [];
  const add = (name, rows, cols) => {
    const values = fill(name, rows, cols) ?? new Float32Array(rows * cols);
    const { ggmlType, bytes } =
      values instanceof Float32Array ? { ggmlType: 0, bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) } : values;
    tensors.push({ name, ggmlType, dims: rows === 1 ? [cols] : [cols, rows], byteLength: bytes.byteLength, data: () => bytes });
  };
  const config = { dim, hiddenDim: hidden, layers, heads, kvHeads, headDim, vocabSize: vocab, tiedEmbeddings: false };
  for (const [name, shape] of expectedTensorShapes(config)) add(name, shape.length === 1 ? 1 : shape[0], shape.at(-1));
  const u32 = (value) => ({ type: "u32", value });
  const metadata = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["llama.context_length", u32(contextLength)],
    ["llama.embedding_length", u32(dim)],
    ["llama.block_count", u32(layers)],
    ["llama.feed_forward_length", u32(hidden)],
    ["llama.rope.dimension_count", u32(headDim)],
    ["llama.attention.head_count", u32(heads)],
    ["llama.attention.head_count_kv", u32(kvHeads)],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: vocabMeta.get("tokenizer.ggml.tokens") }],
    ["tokenizer.ggml.scores", { type: "array", itemType: "f32", value: vocabMeta.get("tokenizer.ggml.scores") }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: vocabMeta.get("tokenizer.ggml.token_type") }],
    ["tokenizer.ggml.bos_token_id", u32(1)],
    ["tokenizer.ggml.eos_token_id", u32(2)],
    ["tokenizer.ggml.unknown_token_id", u32(0)],
    ...extra,
  ];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-tiny-"));
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "tiny.gguf");
  writeGguf(file, { metadata, tensors });
  return file;
}

/** A model whose every layer is zero, so the output logits are output.weight · rmsnorm(embedding). */
function writeConstantOutputModel(logitsPerToken, metadata = []) {
  const dim = 16;
  return writeTinyModel({
    dim,
    metadata,
    fill: (name, rows, cols) => {
      if (name === "token_embd.weight" || name === "output_norm.weight") return new Float32Array(rows * cols).fill(1);
      if (name === "output.weight") {
        // rmsnorm(ones) = ones, so logit[v] = sum of row v = logitsPerToken[v].
        const w = new Float32Array(rows * cols);
        for (let v = 0; v < rows; v++) w.fill((logitsPerToken[v] ?? 0) / cols, v * cols, (v + 1) * cols);
        return w;
      }
      return undefined;
    },
  });
}

function randomValues(n, seed) {
  const random = makeRandom(seed);
  return Float32Array.from({ length: n }, () => random() - 0.5);
}

/** A tiny model whose blk.0.ffn_gate.weight has random values, optionally with one NaN planted at `at`. */
function modelWithNaN(at) {
  return writeTinyModel({
    fill: (name, rows, cols) => {
      if (name !== "blk.0.ffn_gate.weight" && name !== "token_embd.weight") return undefined;
      const values = randomValues(rows * cols, 7);
      if (name === "blk.0.ffn_gate.weight" && at !== undefined) values[at] = NaN;
      return values;
    },
  });
}

module.exports = { writeTinyModel, writeConstantOutputModel, modelWithNaN, randomValues };
