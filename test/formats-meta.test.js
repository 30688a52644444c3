"use strict";
// Meta checkpoint directories (params.json + consolidated.00.pth): the converted trained model in shared/models,
// and small checkpoints written here (a stored ZIP holding a hand-made pickle) to break each rule.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { global, op, statePickle, str, tuple, zip } = require("./helpers/torch-checkpoint.js");
const { parseMetaModel } = require("../dist/cjs/formats/meta.js");
const { parseHfModel } = require("../dist/cjs/formats/hf.js");
const { ModelFormatError, UnsupportedModelError } = require("../dist/cjs/errors.js");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "formats-meta-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;

function readRange(file, offset, length) {
  const buf = Buffer.alloc(length);
  const fd = fs.openSync(file, "r");
  fs.readSync(fd, buf, 0, length, offset);
  fs.closeSync(fd);
  return buf;
}

const tensorBytes = (m, name) => {
  const t = m.tensors.find((x) => x.name === name);
  return readRange(m.files[t.file], t.offset, t.byteLength);
};

test("sotu-l2-23m-meta: config, tensors, tokenizer", NEEDS_REFERENCE_MODELS, () => {
  const dir = modelPath("trained", "sotu-l2-23m-meta");
  const m = parseMetaModel(dir);
  assert.equal(m.format, "meta");
  assert.deepEqual(m.files, [path.join(dir, "consolidated.00.pth")]);
  assert.deepEqual(m.config, {
    architecture: "llama", dim: 256, hiddenDim: 768, layers: 8, heads: 8, kvHeads: 4, headDim: 32, vocabSize: 32000,
    contextLength: 4096, normEps: 1e-5, ropeTheta: 10000, ropeScaling: undefined, ropeLayout: "interleaved", tiedEmbeddings: false,
  });
  assert.equal(m.tensors.length, 75);
  assert.equal(m.weightType, "bf16");
  assert.deepEqual(m.tokenizer, { kind: "sentencepiece", path: path.join(dir, "tokenizer.model") });
  assert.equal(m.bosId, 1);
  assert.deepEqual(m.eosIds, [2]);
  assert.equal(m.metadata.contextLengthSource, "default (4096)");
});

test("sotu-l2-23m-meta holds the HF model's weights at the offsets each parser gives", NEEDS_REFERENCE_MODELS, () => {
  const meta = parseMetaModel(modelPath("trained", "sotu-l2-23m-meta"));
  const hf = parseHfModel(modelPath("trained", "sotu-l2-23m"));
  for (const name of ["token_embd.weight", "output.weight", "output_norm.weight", "blk.0.attn_v.weight", "blk.3.attn_output.weight", "blk.7.ffn_down.weight", "blk.5.ffn_gate.weight", "blk.6.ffn_up.weight", "blk.2.attn_norm.weight"]) {
    assert.ok(tensorBytes(meta, name).equals(tensorBytes(hf, name)), `${name} bytes differ`);
  }
  // q/k rows are permuted between the layouts: HF row h*hd + i*hd/2 + j is Meta row h*hd + 2j + i ("half" vs "interleaved").
  const hd = 32;
  const rowBytes = 256 * 2;
  for (const name of ["blk.1.attn_q.weight", "blk.4.attn_k.weight"]) {
    const m = tensorBytes(meta, name);
    const h = tensorBytes(hf, name);
    for (const [head, i, j] of [[0, 0, 1], [0, 1, 0], [2, 1, 7], [3, 0, 15]]) {
      const hfRow = head * hd + i * (hd / 2) + j;
      const metaRow = head * hd + 2 * j + i;
      assert.ok(h.subarray(hfRow * rowBytes, (hfRow + 1) * rowBytes).equals(m.subarray(metaRow * rowBytes, (metaRow + 1) * rowBytes)), `${name} row ${hfRow}`);
    }
  }
});

const PARAMS = { dim: 8, n_layers: 1, n_heads: 2, n_kv_heads: 1, vocab_size: 4, multiple_of: 16, norm_eps: 1e-5 };

/** The tensors of a tiny model (dim 8, hidden 32); wk and wv share storage "kv" (wv at storage offset 32). */
function tinyTensors() {
  const t = (name, key, shape, extra = {}) => ({ name, key, shape, numel: shape.reduce((a, b) => a * b, 1), ...extra });
  return [
    t("tok_embeddings.weight", "0", [4, 8]), t("norm.weight", "1", [8]), t("output.weight", "2", [4, 8]),
    t("layers.0.attention.wq.weight", "3", [8, 8]),
    t("layers.0.attention.wk.weight", "kv", [4, 8], { numel: 64 }),
    t("layers.0.attention.wv.weight", "kv", [4, 8], { numel: 64, offset: 32 }),
    t("layers.0.attention.wo.weight", "5", [8, 8]), t("layers.0.feed_forward.w1.weight", "6", [32, 8]),
    t("layers.0.feed_forward.w2.weight", "7", [8, 32]), t("layers.0.feed_forward.w3.weight", "8", [32, 8]),
    t("layers.0.attention_norm.weight", "9", [8]), t("layers.0.ffn_norm.weight", "10", [8]),
  ];
}

/** Storage data: float32 i + 1000 × (storage index) so each element is recognisable. */
function storages(tensors) {
  const byKey = new Map();
  tensors.forEach((t) => byKey.set(t.key, t.numel));
  return [...byKey].map(([key, numel], s) => {
    const buf = Buffer.alloc(numel * 4);
    for (let i = 0; i < numel; i++) buf.writeFloatLE(s * 1000 + i, 4 * i);
    return [`archive/data/${key}`, buf];
  });
}

function metaDir({ params = PARAMS, tensors = tinyTensors(), pickle, entries, files = {} } = {}) {
  const dir = path.join(tmp, `meta-${counter++}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "params.json"), JSON.stringify(params));
  const zipEntries = entries ?? [["archive/data.pkl", pickle ?? statePickle(tensors)], ...storages(tensors), ["archive/version", Buffer.from("3\n")]];
  fs.writeFileSync(path.join(dir, "consolidated.00.pth"), zip(zipEntries));
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
  return dir;
}

function assertThrowsNaming(fn, cls, file, pattern) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err.name}: ${err.message}`);
    assert.ok(err.message.includes(file), `message does not name ${file}: ${err.message}`);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

test("synthetic Meta checkpoint: storage offsets, shared storages, llama3 params, tiktoken tokenizer", () => {
  const dir = metaDir({
    params: { ...PARAMS, rope_theta: 500000, use_scaled_rope: true, max_seq_len: 128, ffn_dim_multiplier: 1.0 },
    files: { "tokenizer.model": "IQ== 0\nIg== 1\n" },
  });
  const m = parseMetaModel(dir);
  assert.equal(m.config.hiddenDim, 32);
  assert.equal(m.config.contextLength, 128);
  assert.equal(m.config.ropeTheta, 500000);
  assert.deepEqual(m.config.ropeScaling, { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContextLength: 8192 });
  assert.equal(m.weightType, "f32");
  assert.equal(m.tokenizer.kind, "tiktoken");
  assert.equal(m.bosId, undefined, "a 4-token vocabulary has no room for Llama 3's 256 special tokens");
  const storageIndex = (key) => [...new Set(tinyTensors().map((t) => t.key))].indexOf(key);
  const v = tensorBytes(m, "blk.0.attn_v.weight");
  assert.equal(v.length, 32 * 4);
  assert.equal(v.readFloatLE(0), storageIndex("kv") * 1000 + 32);
  assert.equal(tensorBytes(m, "blk.0.attn_k.weight").readFloatLE(4), storageIndex("kv") * 1000 + 1);
  assert.equal(tensorBytes(m, "blk.0.ffn_down.weight").readFloatLE(4 * 5), storageIndex("7") * 1000 + 5);
});

test("Meta rule breaks give typed errors naming the file", () => {
  const nonContiguous = tinyTensors();
  nonContiguous[3] = { ...nonContiguous[3], stride: [1, 8] };
  const pastStorage = tinyTensors();
  pastStorage[5] = { ...pastStorage[5], offset: 40 };
  const cases = [
    ["disallowed global", { pickle: Buffer.concat([op("\x80\x02"), global("os", "system"), tuple([str("echo hi")]), op("R.")]) }, UnsupportedModelError, /os\.system, which is not on the allow-list/],
    ["corrupt global name", { pickle: Buffer.concat([op("\x80\x02"), global("torch\x01J", "FloatStorage"), op(".")]) }, ModelFormatError, /not a Python name: "torch\\u0001J\.FloatStorage"/],
    ["disallowed rebuild", { pickle: statePickle(tinyTensors(), { rebuild: ["builtins", "eval"] }) }, UnsupportedModelError, /builtins\.eval/],
    ["truncated pickle", { pickle: statePickle(tinyTensors()).subarray(0, 200) }, ModelFormatError, /pickle is truncated/],
    ["non-contiguous", { tensors: nonContiguous }, ModelFormatError, /layers\.0\.attention\.wq\.weight is not contiguous/],
    ["past storage", { tensors: pastStorage }, ModelFormatError, /wv\.weight reaches past the end of its storage/],
    ["int storage", { tensors: tinyTensors().map((t, i) => (i === 1 ? { ...t, storageClass: "IntStorage" } : t)) }, UnsupportedModelError, /norm\.weight has dtype i32/],
    ["w1 vs params", { params: { ...PARAMS, multiple_of: 64 } }, ModelFormatError, /w1\.weight has 32 rows, but params\.json implies 64/],
    ["shape vs params", { params: { ...PARAMS, vocab_size: 5 } }, ModelFormatError, /token_embd\.weight has shape \[4, 8\], but the config implies \[5, 8\]/],
    ["missing key", { params: { ...PARAMS, dim: undefined } }, ModelFormatError, /"dim" is missing/],
    ["compressed", { entries: [["archive/data.pkl", statePickle(tinyTensors()), 8]] }, ModelFormatError, /data\.pkl is compressed \(method 8\)/],
    ["missing storage", { entries: [["archive/data.pkl", statePickle(tinyTensors())]] }, ModelFormatError, /storage 0 is missing/],
  ];
  for (const [name, spec, cls, pattern] of cases) {
    const dir = metaDir(spec);
    assert.throws(() => parseMetaModel(dir), (err) => {
      assert.ok(err instanceof cls, `${name}: expected ${cls.name}, got ${err.name}: ${err.message}`);
      assert.ok(err.message.includes(dir), `${name}: message does not name the file: ${err.message}`);
      assert.match(err.message, pattern, name);
      return true;
    });
  }
});

test("Meta directory-level errors", () => {
  let dir = metaDir();
  fs.copyFileSync(path.join(dir, "consolidated.00.pth"), path.join(dir, "consolidated.01.pth"));
  assertThrowsNaming(() => parseMetaModel(dir), UnsupportedModelError, dir, /2 model-parallel shards/);

  dir = metaDir();
  fs.writeFileSync(path.join(dir, "consolidated.00.pth"), Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0, 0]));
  assertThrowsNaming(() => parseMetaModel(dir), UnsupportedModelError, dir, /legacy/);

  dir = metaDir();
  fs.writeFileSync(path.join(dir, "consolidated.00.pth"), fs.readFileSync(path.join(dir, "consolidated.00.pth")).subarray(0, 500));
  assertThrowsNaming(() => parseMetaModel(dir), ModelFormatError, dir);
});
