"use strict";
// HF directories (config.json + safetensors): the trained models in shared/models, and small directories written
// here to break each rule.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { parseHfModel } = require("../dist/cjs/formats/hf.js");
const { readSafetensors } = require("../dist/cjs/formats/safetensors.js");
const { ModelFormatError, UnsupportedModelError } = require("../dist/cjs/errors.js");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "formats-hf-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;

function assertThrowsNaming(fn, cls, file, pattern) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err.name}: ${err.message}`);
    assert.ok(err.message.includes(file), `message does not name ${file}: ${err.message}`);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

/** Writes a safetensors file of zeros: tensors is { name: [dtype, shape] }. */
function writeSafetensors(file, tensors) {
  const sizes = { F32: 4, F16: 2, BF16: 2, I64: 8 };
  const header = {};
  let offset = 0;
  for (const [name, [dtype, shape]] of Object.entries(tensors)) {
    const bytes = shape.reduce((a, b) => a * b, sizes[dtype]);
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  header.__metadata__ = { format: "pt" };
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(offset)]));
}

const TINY_CONFIG = {
  architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1,
  num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 4, max_position_embeddings: 64, rms_norm_eps: 1e-6,
  rope_theta: 10000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};

function tinyTensors(dtype = "BF16") {
  return {
    "model.embed_tokens.weight": [dtype, [4, 8]], "model.norm.weight": [dtype, [8]], "lm_head.weight": [dtype, [4, 8]],
    "model.layers.0.input_layernorm.weight": [dtype, [8]], "model.layers.0.post_attention_layernorm.weight": [dtype, [8]],
    "model.layers.0.self_attn.q_proj.weight": [dtype, [8, 8]], "model.layers.0.self_attn.k_proj.weight": [dtype, [4, 8]],
    "model.layers.0.self_attn.v_proj.weight": [dtype, [4, 8]], "model.layers.0.self_attn.o_proj.weight": [dtype, [8, 8]],
    "model.layers.0.mlp.gate_proj.weight": [dtype, [16, 8]], "model.layers.0.mlp.up_proj.weight": [dtype, [16, 8]],
    "model.layers.0.mlp.down_proj.weight": [dtype, [8, 16]],
  };
}

/** A tiny HF directory; `files` adds or replaces files (object → JSON, string/Buffer → as is, null → removed). */
function tinyDir({ config = {}, tensors = tinyTensors(), files = {} } = {}) {
  const dir = path.join(tmp, `model-${counter++}`);
  fs.mkdirSync(dir);
  const cfg = { ...TINY_CONFIG, ...config };
  for (const [k, v] of Object.entries(config)) if (v === undefined) delete cfg[k];
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(cfg));
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name);
    if (content === null) fs.rmSync(file);
    else fs.writeFileSync(file, typeof content === "object" && !Buffer.isBuffer(content) ? JSON.stringify(content) : content);
  }
  return dir;
}

test("sotu-l2-23m: Llama 2 style HF model", NEEDS_REFERENCE_MODELS, () => {
  const dir = modelPath("trained", "sotu-l2-23m");
  const m = parseHfModel(dir);
  assert.equal(m.format, "hf");
  assert.deepEqual(m.files, [path.join(dir, "model.safetensors")]);
  assert.deepEqual(m.config, {
    architecture: "llama", dim: 256, hiddenDim: 768, layers: 8, heads: 8, kvHeads: 4, headDim: 32, vocabSize: 32000,
    contextLength: 1024, normEps: 1e-5, ropeTheta: 10000, ropeScaling: undefined, ropeLayout: "half", tiedEmbeddings: false,
  });
  assert.equal(m.tensors.length, 2 + 1 + 8 * 9);
  assert.equal(m.weightType, "bf16");
  assert.equal(m.bosId, 1);
  assert.deepEqual(m.eosIds, [2]);
  assert.deepEqual(m.tokenizer, { kind: "sentencepiece", path: path.join(dir, "tokenizer.model") });
  assert.deepEqual(m.tensors.find((t) => t.name === "blk.7.attn_k.weight").shape, [128, 256]);
  assert.equal(m.metadata.model_type, "llama");
  // Offsets agree with the safetensors header read independently here.
  const fd = fs.openSync(m.files[0], "r");
  const lenBuf = Buffer.alloc(8);
  fs.readSync(fd, lenBuf, 0, 8, 0);
  const headerLength = Number(lenBuf.readBigUInt64LE());
  const json = Buffer.alloc(headerLength);
  fs.readSync(fd, json, 0, headerLength, 8);
  fs.closeSync(fd);
  const header = JSON.parse(json.toString());
  const down = m.tensors.find((t) => t.name === "blk.5.ffn_down.weight");
  assert.equal(down.offset, 8 + headerLength + header["model.layers.5.mlp.down_proj.weight"].data_offsets[0]);
  assert.equal(down.byteLength, 256 * 768 * 2);
});

test("sotu-l3-26m: tied embeddings, llama3 RoPE scaling, tokenizer.json", NEEDS_REFERENCE_MODELS, () => {
  const dir = modelPath("trained", "sotu-l3-26m");
  const m = parseHfModel(dir);
  assert.equal(m.config.tiedEmbeddings, true);
  assert.equal(m.config.vocabSize, 128256);
  assert.equal(m.config.ropeTheta, 500000);
  assert.deepEqual(m.config.ropeScaling, { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 8192 });
  assert.ok(!m.tensors.some((t) => t.name === "output.weight"));
  assert.equal(m.tensors.length, 2 + 4 * 9);
  assert.equal(m.bosId, 128000);
  assert.deepEqual(m.eosIds, [128001]);
  assert.equal(m.tokenizer.kind, "hf-json");
  assert.equal(m.tokenizer.configPath, path.join(dir, "tokenizer_config.json"));
  assert.equal(m.tokenizer.path, path.join(dir, "tokenizer.json"));
});

test("config forms: rope_parameters (transformers 5), linear scaling, head_dim default, eos lists", () => {
  const { rope_theta: _, ...noTheta } = TINY_CONFIG;
  let dir = tinyDir({
    config: { ...noTheta, rope_theta: undefined, rope_parameters: { rope_theta: 500000, rope_type: "llama3", factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } },
    files: { "generation_config.json": { eos_token_id: [2, 3], bos_token_id: 1 } },
  });
  let m = parseHfModel(dir);
  assert.equal(m.config.ropeTheta, 500000);
  assert.deepEqual(m.config.ropeScaling, { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 8192 });
  assert.equal(m.config.headDim, 4);
  assert.deepEqual(m.eosIds, [2, 3]);
  assert.equal(m.tokenizer, undefined);

  dir = tinyDir({ config: { rope_scaling: { type: "linear", factor: 2 } }, files: { "tokenizer.json": "{}", "tokenizer.model": Buffer.from([0x0a, 0x03]) } });
  m = parseHfModel(dir);
  assert.deepEqual(m.config.ropeScaling, { type: "linear", factor: 2 });
  assert.deepEqual(m.tokenizer, { kind: "hf-json", path: path.join(dir, "tokenizer.json") });

  // Tied: an lm_head copy is ignored; F16 and F32 weights; the rotary buffer is skipped.
  const tensors = tinyTensors("F16");
  tensors["model.norm.weight"] = ["F32", [8]];
  tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = ["F32", [2]];
  m = parseHfModel(tinyDir({ config: { tie_word_embeddings: true }, tensors, files: { "tokenizer.model": "IQ== 0\nIg== 1\n" } }));
  assert.equal(m.config.tiedEmbeddings, true);
  assert.equal(m.tensors.length, 11);
  assert.equal(m.weightType, "f16");
  assert.equal(m.tokenizer.kind, "tiktoken");
});

test("sharded safetensors via model.safetensors.index.json", () => {
  const dir = tinyDir({ files: { "model.safetensors": null } });
  const all = Object.entries(tinyTensors());
  const shards = { "model-00001-of-00002.safetensors": all.slice(0, 5), "model-00002-of-00002.safetensors": all.slice(5) };
  const weightMap = {};
  for (const [shard, tensors] of Object.entries(shards)) {
    writeSafetensors(path.join(dir, shard), Object.fromEntries(tensors));
    for (const [name] of tensors) weightMap[name] = shard;
  }
  fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const m = parseHfModel(dir);
  assert.deepEqual(m.files, Object.keys(shards).map((s) => path.join(dir, s)));
  assert.equal(m.tensors.find((t) => t.name === "blk.0.ffn_down.weight").file, 1);
  assert.equal(m.tensors.find((t) => t.name === "token_embd.weight").file, 0);

  fs.rmSync(path.join(dir, "model-00002-of-00002.safetensors"));
  assertThrowsNaming(() => parseHfModel(dir), ModelFormatError, "model.safetensors.index.json", /shard model-00002-of-00002\.safetensors is missing/);
});

test("HF rule breaks give typed errors naming the file", () => {
  const shape = tinyTensors();
  shape["model.layers.0.mlp.up_proj.weight"] = ["BF16", [17, 8]];
  const bias = { ...tinyTensors(), "model.layers.0.self_attn.q_proj.bias": ["BF16", [8]] };
  const ints = { ...tinyTensors(), "model.norm.weight": ["I64", [8]] };
  const cases = [
    ["missing key", { config: { hidden_size: undefined } }, ModelFormatError, "config.json", /"hidden_size" is missing/],
    ["wrong key type", { config: { num_hidden_layers: "8" } }, ModelFormatError, "config.json", /"num_hidden_layers" is not a number/],
    ["other model type", { config: { model_type: "mistral" } }, UnsupportedModelError, "config.json", /model_type "mistral"/],
    ["biases", { config: { attention_bias: true } }, UnsupportedModelError, "config.json", /attention_bias/],
    ["rope type", { config: { rope_scaling: { rope_type: "yarn", factor: 4 } } }, UnsupportedModelError, "config.json", /"yarn"/],
    ["bad json", { files: { "config.json": "{ nope" } }, ModelFormatError, "config.json", /not valid JSON/],
    ["shape", { tensors: shape }, ModelFormatError, "model-", /blk\.0\.ffn_up\.weight has shape \[17, 8\], but the config implies \[16, 8\]/],
    ["extra tensor", { tensors: bias }, UnsupportedModelError, "model.safetensors", /q_proj\.bias/],
    ["dtype", { tensors: ints }, UnsupportedModelError, "model.safetensors", /dtype I64/],
    ["no lm_head", { tensors: (() => { const t = tinyTensors(); delete t["lm_head.weight"]; return t; })() }, ModelFormatError, "model-", /output\.weight is missing/],
    ["no weights", { files: { "model.safetensors": null } }, ModelFormatError, "model-", /neither model\.safetensors/],
  ];
  for (const [name, spec, cls, fileHint, pattern] of cases) {
    const dir = tinyDir(spec);
    assert.throws(() => parseHfModel(dir), (err) => {
      assert.ok(err instanceof cls, `${name}: expected ${cls.name}, got ${err.name}: ${err.message}`);
      assert.ok(err.message.includes(dir) && err.message.includes(fileHint), `${name}: message does not name the file: ${err.message}`);
      assert.match(err.message, pattern, name);
      return true;
    });
  }
});

test("safetensors header corruptions", () => {
  const dir = tinyDir();
  const good = fs.readFileSync(path.join(dir, "model.safetensors"));
  const variant = (name, mutate) => {
    const buf = Buffer.from(good);
    const file = path.join(dir, name);
    fs.writeFileSync(file, mutate(buf) ?? buf);
    return file;
  };
  let f = variant("len.safetensors", (b) => { b.writeBigUInt64LE(BigInt(good.length), 0); });
  assertThrowsNaming(() => readSafetensors(f), ModelFormatError, f, /header length \d+ does not fit/);
  f = variant("huge.safetensors", (b) => { b.writeBigUInt64LE(2n ** 63n, 0); });
  assertThrowsNaming(() => readSafetensors(f), ModelFormatError, f, /out of range/);
  f = variant("json.safetensors", (b) => { b.write("[", 8); });
  assertThrowsNaming(() => readSafetensors(f), ModelFormatError, f, /not valid JSON/);
  f = variant("cut.safetensors", (b) => b.subarray(0, b.length - 10));
  assertThrowsNaming(() => readSafetensors(f), ModelFormatError, f, /truncated/);
  const headerLength = Number(good.readBigUInt64LE(0));
  const header = JSON.parse(good.subarray(8, 8 + headerLength).toString());
  const rewrite = (name, edit) => variant(name, (b) => {
    const h = structuredClone(header);
    edit(h);
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, b.subarray(8 + headerLength)]);
  });
  f = rewrite("size.safetensors", (h) => { h["model.norm.weight"].shape = [9]; });
  assertThrowsNaming(() => readSafetensors(f), ModelFormatError, f, /model\.norm\.weight: holds 16 bytes, but shape \[9\] of BF16 needs 18/);
  f = rewrite("offsets.safetensors", (h) => { h["model.norm.weight"].data_offsets = [1e12, 1e12 + 16]; });
  assertThrowsNaming(() => readSafetensors(f), ModelFormatError, f, /model\.norm\.weight data needs bytes/);
  f = rewrite("dtype.safetensors", (h) => { h["model.norm.weight"].dtype = "Q4"; });
  assertThrowsNaming(() => readSafetensors(f), ModelFormatError, f, /unknown dtype Q4/);
});
