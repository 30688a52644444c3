"use strict";
// llama2.c .bin files, and parseModel's recognition of every format and tokenizer override.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { parseLlama2cModel } = require("../dist/cjs/formats/llama2c.js");
const { parseModel } = require("../dist/cjs/formats/detect.js");
const { ModelFormatError, UnsupportedModelError } = require("../dist/cjs/errors.js");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "formats-l2c-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpFile = (name, content) => {
  const file = path.join(tmp, `${counter++}-${name}`);
  fs.writeFileSync(file, content);
  return file;
};

async function assertRejectsNaming(promise, cls, file, pattern) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err.name}: ${err.message}`);
    assert.ok(err.message.includes(file), `message does not name ${file}: ${err.message}`);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

// Only the tests marked NEEDS_REFERENCE_MODELS use these, and they are skipped when the reference set is absent.
const STORIES = NEEDS_REFERENCE_MODELS.skip ? undefined : modelPath("tinystories", "stories260K.bin");
const storiesBytes = STORIES && fs.readFileSync(STORIES);

test("stories260K.bin: legacy v0 header, shared classifier, per-layer offsets", NEEDS_REFERENCE_MODELS, () => {
  const m = parseLlama2cModel(STORIES);
  assert.equal(m.format, "llama2c");
  assert.deepEqual(m.config, {
    architecture: "llama", dim: 64, hiddenDim: 172, layers: 5, heads: 8, kvHeads: 4, headDim: 8, vocabSize: 512,
    contextLength: 512, normEps: 1e-5, ropeTheta: 10000, ropeLayout: "interleaved", tiedEmbeddings: true,
  });
  assert.equal(m.tensors.length, 2 + 5 * 9);
  assert.equal(m.tokenizer, undefined, "no tokenizer.bin beside it (tok512.bin must be given)");
  assert.equal(m.bosId, 1);
  assert.deepEqual(m.eosIds, [2]);
  const at = (name) => m.tensors.find((t) => t.name === name).offset;
  const emb = 512 * 64 * 4;
  assert.equal(at("token_embd.weight"), 28);
  assert.equal(at("blk.0.attn_norm.weight"), 28 + emb);
  assert.equal(at("blk.2.attn_norm.weight"), 28 + emb + 2 * 64 * 4);
  assert.equal(at("blk.0.attn_q.weight"), 28 + emb + 5 * 64 * 4);
  assert.equal(at("blk.1.attn_k.weight"), 28 + emb + 5 * 64 * 4 + 5 * 64 * 64 * 4 + 32 * 64 * 4);
  // output_norm is followed by the two freq_cis tables (512 × 4 floats each), which end the file.
  assert.equal(at("output_norm.weight") + 64 * 4 + 2 * 512 * 4 * 4, storiesBytes.length);
  // RMSNorm weights of a trained model are positive and O(1).
  const norm = storiesBytes.readFloatLE(at("output_norm.weight"));
  assert.ok(norm > 0.05 && norm < 20, `output_norm[0] = ${norm}`);
});

test("llama2.c: unshared classifier (negative vocab_size), v1 'ak42' export, other versions", NEEDS_REFERENCE_MODELS, () => {
  const v0 = parseLlama2cModel(STORIES);
  const tensor = (m, bytes, name) => {
    const t = m.tensors.find((x) => x.name === name);
    return bytes.subarray(t.offset, t.offset + t.byteLength);
  };
  const embedding = tensor(v0, storiesBytes, "token_embd.weight");

  const unsharedBytes = Buffer.concat([storiesBytes, embedding]);
  unsharedBytes.writeInt32LE(-512, 20);
  const unshared = parseLlama2cModel(tmpFile("unshared.bin", unsharedBytes));
  assert.equal(unshared.config.tiedEmbeddings, false);
  assert.equal(unshared.config.vocabSize, 512);
  assert.ok(tensor(unshared, unsharedBytes, "output.weight").equals(embedding));
  assert.equal(unshared.tensors.find((t) => t.name === "output.weight").offset, storiesBytes.length);

  // v1: 256-byte header, then norms, embedding, matrices in llama2.c's export order; no freq_cis.
  const header = Buffer.alloc(256);
  header.writeUInt32LE(0x616b3432, 0);
  header.writeInt32LE(1, 4);
  storiesBytes.copy(header, 8, 0, 28);
  header.writeUInt8(1, 36);
  const order = ["attn_norm", "ffn_norm", "output_norm", "token_embd", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"];
  const blocks = order.flatMap((kind) => v0.tensors.filter((t) => t.name === `${kind}.weight` || t.name.endsWith(`.${kind}.weight`)));
  const v1Bytes = Buffer.concat([header, ...blocks.map((t) => storiesBytes.subarray(t.offset, t.offset + t.byteLength))]);
  const v1 = parseLlama2cModel(tmpFile("v1.bin", v1Bytes));
  assert.equal(v1.metadata.llama2cVersion, 1);
  assert.deepEqual(v1.config, v0.config);
  for (const t of v0.tensors) assert.ok(tensor(v1, v1Bytes, t.name).equals(tensor(v0, storiesBytes, t.name)), t.name);

  const v2Bytes = Buffer.from(v1Bytes);
  v2Bytes.writeInt32LE(2, 4);
  const v2 = tmpFile("v2.bin", v2Bytes);
  assert.throws(() => parseLlama2cModel(v2), (e) => e instanceof UnsupportedModelError && e.message.includes(v2) && /version 2/.test(e.message));
});

test("llama2.c corruptions", NEEDS_REFERENCE_MODELS, async () => {
  const cut = tmpFile("cut.bin", storiesBytes.subarray(0, 500000));
  assert.throws(() => parseLlama2cModel(cut), (e) => e instanceof ModelFormatError && e.message.includes(cut) && /truncated: the llama2.c header implies 1056540 bytes, the file has 500000/.test(e.message));
  await assertRejectsNaming(parseModel(cut), ModelFormatError, cut, /truncated/);
  const long = tmpFile("long.bin", Buffer.concat([storiesBytes, Buffer.alloc(4)]));
  await assertRejectsNaming(parseModel(long), ModelFormatError, long, /longer than its header implies/);
  const badHeads = Buffer.from(storiesBytes);
  badHeads.writeInt32LE(3, 16); // n_kv_heads 3 does not divide 8 heads
  const f = tmpFile("heads.bin", badHeads);
  await assertRejectsNaming(parseModel(f), ModelFormatError, f, /not a model file this library reads/);
});

test("parseModel recognises every format", NEEDS_REFERENCE_MODELS, async () => {
  const expect = {
    [modelPath("trained", "sotu-l2-23m")]: "hf",
    [modelPath("trained", "sotu-l3-26m")]: "hf",
    [modelPath("trained", "sotu-l2-23m-meta")]: "meta",
    [STORIES]: "llama2c",
    [DEFAULT_MODEL]: "gguf",
    [modelPath("gguf", "llama-2-tiny-random.gguf")]: "gguf",
    [modelPath("trained", "sotu-l2-23m-gguf", "sotu-l2-23m-q4_0.gguf")]: "gguf",
  };
  for (const [p, format] of Object.entries(expect)) assert.equal((await parseModel(p)).format, format, p);
  const relative = path.relative(process.cwd(), STORIES);
  assert.deepEqual((await parseModel(relative)).files, [STORIES]);
});

test("parseModel errors name the path", async () => {
  const missing = path.join(tmp, "no-such-model.gguf");
  await assertRejectsNaming(parseModel(missing), ModelFormatError, missing, /ENOENT|no such file/);
  const text = tmpFile("notes.txt", "just some text, long enough to look at as a header\n");
  await assertRejectsNaming(parseModel(text), ModelFormatError, text, /not a model file this library reads \(GGUF, HF directory, Meta checkpoint directory, llama2\.c \.bin, serialized model\)/);
  const empty = tmpFile("empty.bin", Buffer.alloc(0));
  await assertRejectsNaming(parseModel(empty), ModelFormatError, empty, /not a model file/);
  const dir = path.join(tmp, "empty-dir");
  fs.mkdirSync(dir);
  await assertRejectsNaming(parseModel(dir), ModelFormatError, dir, /neither config\.json nor params\.json/);
});

test("options.tokenizer: the kind is told from the file's content", NEEDS_REFERENCE_MODELS, async () => {
  const cases = [
    [modelPath("tinystories", "tok512.bin"), { kind: "llama2c", path: modelPath("tinystories", "tok512.bin") }],
    [modelPath("llama2", "tokenizer.model"), { kind: "sentencepiece", path: modelPath("llama2", "tokenizer.model") }],
    [modelPath("llama2", "tokenizer.bin"), { kind: "llama2c", path: modelPath("llama2", "tokenizer.bin") }],
    [modelPath("llama3", "tokenizer.model"), { kind: "tiktoken", path: modelPath("llama3", "tokenizer.model") }],
    [modelPath("llama3", "tokenizer.json"), { kind: "hf-json", path: modelPath("llama3", "tokenizer.json"), configPath: modelPath("llama3", "tokenizer_config.json") }],
  ];
  for (const [tokenizer, expected] of cases) {
    assert.deepEqual((await parseModel(STORIES, { tokenizer })).tokenizer, expected, tokenizer);
  }
  const vocab = (await parseModel(STORIES, { tokenizer: modelPath("vocab", "ggml-vocab-llama-spm.gguf") })).tokenizer;
  assert.equal(vocab.kind, "gguf");
  assert.equal(vocab.metadata.get("tokenizer.ggml.tokens").length, 32000);
  const hf = await parseModel(modelPath("trained", "sotu-l2-23m"), { tokenizer: modelPath("llama3", "tokenizer.model") });
  assert.equal(hf.tokenizer.kind, "tiktoken");
  const junk = tmpFile("junk.tok", Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x02]));
  await assertRejectsNaming(parseModel(STORIES, { tokenizer: junk }), ModelFormatError, junk, /not a tokenizer file/);
  const missing = path.join(tmp, "missing.model");
  await assertRejectsNaming(parseModel(STORIES, { tokenizer: missing }), ModelFormatError, missing);
});
