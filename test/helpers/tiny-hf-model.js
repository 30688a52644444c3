"use strict";
// Writes tiny HF Llama directories with the Llama 3 vocab (128256 tokens) and weights that make greedy generation
// follow a chain of tokens the test chooses: every layer is zero, so the logits are lm_head · rmsnorm(embedding of
// the last token). Each chained token gets an embedding of its own (a one-hot "slot"), and lm_head points that slot
// at the token that should come next.
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { modelPath } = require("./models.js");

const VOCAB = 128256;
const DIM = 16;
const HIDDEN = 32;

/** A safetensors file of F32 tensors: an 8-byte header length, the JSON header, then the data. */
function writeSafetensors(file, tensors) {
  const header = {};
  let offset = 0;
  for (const [name, { shape, data }] of Object.entries(tensors)) {
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  const fd = fs.openSync(file, "w");
  fs.writeSync(fd, length);
  fs.writeSync(fd, json);
  for (const { data } of Object.values(tensors)) fs.writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  fs.closeSync(fd);
}

/** HF names → tensors of layer `index`: norms from `norm(n)`, matrices from `matrix(rows, cols)`. */
function hfLayerTensors(index, { dim, kvDim, hidden }, norm, matrix) {
  const layer = `model.layers.${index}`;
  return {
    [`${layer}.input_layernorm.weight`]: norm(dim),
    [`${layer}.post_attention_layernorm.weight`]: norm(dim),
    [`${layer}.self_attn.q_proj.weight`]: matrix(dim, dim),
    [`${layer}.self_attn.k_proj.weight`]: matrix(kvDim, dim),
    [`${layer}.self_attn.v_proj.weight`]: matrix(kvDim, dim),
    [`${layer}.self_attn.o_proj.weight`]: matrix(dim, dim),
    [`${layer}.mlp.gate_proj.weight`]: matrix(hidden, dim),
    [`${layer}.mlp.up_proj.weight`]: matrix(hidden, dim),
    [`${layer}.mlp.down_proj.weight`]: matrix(dim, hidden),
  };
}

/**
 * chain: [from, to] pairs: after token `from`, greedy decoding picks `to` (up to DIM - 1 pairs).
 * generationConfig / tokenizerConfig: written as JSON (tokenizerConfig defaults to llama3/tokenizer_config.json).
 * Returns the directory (removed at process exit).
 */
function writeChainHfModel({ chain, generationConfig, tokenizerConfig } = {}) {
  if (chain.length >= DIM) throw new Error(`at most ${DIM - 1} chain links`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-hf-"));
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));

  const zeros = (...shape) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  const embed = zeros(VOCAB, DIM);
  const head = zeros(VOCAB, DIM);
  for (let t = 0; t < VOCAB; t++) embed.data[t * DIM] = 1; // slot 0: every token not in the chain
  chain.forEach(([from, to], i) => {
    const slot = i + 1;
    embed.data[from * DIM] = 0;
    embed.data[from * DIM + slot] = 1;
    head.data[to * DIM + slot] = 10;
  });
  const ones = (n) => ({ shape: [n], data: new Float32Array(n).fill(1) });
  const tensors = { "model.embed_tokens.weight": embed, "model.norm.weight": ones(DIM), "lm_head.weight": head };
  Object.assign(tensors, hfLayerTensors(0, { dim: DIM, kvDim: DIM / 2, hidden: HIDDEN }, ones, zeros));
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);

  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: DIM,
    intermediate_size: HIDDEN,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    vocab_size: VOCAB,
    bos_token_id: 128000,
    eos_token_id: 128001,
    tie_word_embeddings: false,
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  if (generationConfig) fs.writeFileSync(path.join(dir, "generation_config.json"), JSON.stringify(generationConfig));
  fs.copyFileSync(modelPath("llama3", "tokenizer.json"), path.join(dir, "tokenizer.json"));
  const tokenizerConfigText = tokenizerConfig ? JSON.stringify(tokenizerConfig) : fs.readFileSync(modelPath("llama3", "tokenizer_config.json"));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), tokenizerConfigText);
  return dir;
}

module.exports = { writeChainHfModel, writeSafetensors, hfLayerTensors };
