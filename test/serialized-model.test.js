"use strict";
// Serialized models (model.saveSerialized, lib/formats/serialized.ts): the same logits, greedy tokens, tokenizer and
// chat template as the original model; the saved KV options as load defaults; and every kind of damaged, foreign or
// mismatched file refused with a typed error naming the file and the field.
const { test, after } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const {
  loadModel, quantize, InvalidArgumentError, ModelFormatError, SerializedModelError, SerializedModelMismatchError,
} = require("../dist/cjs/index.js");
const { parseModel } = require("../dist/cjs/formats/detect.js");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");

const work = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-serialized-"));
after(() => fs.rmSync(work, { recursive: true, force: true }));

const HEADER_BYTES = 64;
const MIXED_TEXT = "Hello, world! <s> déjà vu — 12345 tabs\tand\n\nnewlines <|eot_id|></s> 🦙 end";

/** Loads `source`, saves it, loads the file; runs `check(original, serialized, file)` and disposes both. */
async function withBoth(source, name, check) {
  const file = path.join(work, `${name}.llnm`);
  const original = await loadModel(source, { threads: 2, kvCacheType: "f32", contextSize: 256 });
  try {
    const { bytes } = await original.saveSerialized(file);
    assert.equal(bytes, fs.statSync(file).size);
    const serialized = await loadModel(file, { threads: 2 });
    try {
      await check(original, serialized, file);
    } finally {
      await serialized.dispose();
    }
  } finally {
    await original.dispose();
  }
}

async function assertSameModel(original, serialized) {
  assert.equal(serialized.info.format, "serialized");
  for (const key of ["vocabSize", "dim", "layers", "heads", "kvHeads", "headDim", "weightType", "parameters", "tokenizer", "bosId", "contextSize"]) {
    assert.deepEqual(serialized.info[key], original.info[key], key);
  }
  assert.deepEqual(serialized.info.eosIds, original.info.eosIds);
  assert.equal(serialized.info.kvCache.type, "f32", "the saved KV cache type is the default");
  for (const special of [false, true]) {
    const ids = original.tokenize(MIXED_TEXT, { special });
    assert.deepEqual(serialized.tokenize(MIXED_TEXT, { special }), ids, `tokenize special=${special}`);
    assert.equal(serialized.detokenize(ids), original.detokenize(ids));
  }
  assert.equal(serialized.chatTemplate, original.chatTemplate);
  const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi there" }];
  assert.deepEqual(serialized.applyChatTemplate(messages), original.applyChatTemplate(messages));
  for (const prompt of ["The", "Once upon a time, in a land far away,"]) {
    const ids = original.tokenize(prompt);
    assert.deepEqual(await serialized.evaluate(ids), await original.evaluate(ids), `logits of ${JSON.stringify(prompt)}`);
    const a = await original.complete(prompt, { maxTokens: 24, temperature: 0 });
    const b = await serialized.complete(prompt, { maxTokens: 24, temperature: 0 });
    assert.deepEqual(b.tokens, a.tokens, `greedy tokens of ${JSON.stringify(prompt)}`);
    assert.equal(b.text, a.text);
  }
}

const MODELS = [
  { name: "sotu-l3-26m", parts: ["trained", "sotu-l3-26m"], what: "HF dir, tokenizer.json BPE" },
  { name: "sotu-l2-23m", parts: ["trained", "sotu-l2-23m"], what: "HF dir, SentencePiece tokenizer.model" },
  { name: "stories260K", parts: ["tinystories", "stories260K.gguf"], what: "GGUF, SPM vocab in metadata" },
];
for (const m of MODELS) {
  test(`${m.name} (${m.what}): the serialized file gives identical logits, greedy tokens, tokenizer and chat template`, NEEDS_REFERENCE_MODELS, async () => {
    await withBoth(modelPath(...m.parts), m.name, assertSameModel);
  });
}

test("a GGUF carrying Llama 3.1 scaling as rope_freqs factors round-trips them: identical logits and tokens", NEEDS_REFERENCE_MODELS, async () => {
  const gguf = path.join(work, "sotu-l3-26m-q8_0.gguf");
  await quantize(modelPath("trained", "sotu-l3-26m"), gguf, { type: "q8_0", threads: 2 });
  await withBoth(gguf, "sotu-l3-26m-q8_0", async (original, serialized, file) => {
    assert.equal(original.info.weightType, "q8_0");
    const factors = (await parseModel(gguf)).config.ropeFreqFactors;
    assert.equal(factors.length, 16, "headDim 32: 16 factors");
    assert.deepEqual((await parseModel(file)).config.ropeFreqFactors, factors);
    await assertSameModel(original, serialized);
  });
});

test("a session saved on the original model restores on its serialized file (same fingerprint)", async () => {
  await withBoth(DEFAULT_MODEL, "session", async (original, serialized) => {
    const sessionFile = path.join(work, "chat.session");
    const session = await original.createSession({ systemPrompt: "You tell stories." });
    await session.prompt("Tell me about Lily.", { maxTokens: 6, temperature: 0 });
    await session.save(sessionFile);
    session.dispose();
    const continued = async (model) => {
      const s = await model.createSession({ restore: sessionFile });
      try {
        return (await s.prompt("And then?", { maxTokens: 6, temperature: 0 })).tokens;
      } finally {
        s.dispose();
      }
    };
    assert.deepEqual(await continued(serialized), await continued(original));
  });
});

test("quantize reads a serialized SentencePiece model: the GGUF it writes tokenizes and generates as the original", async () => {
  await withBoth(DEFAULT_MODEL, "to-quantize", async (original, _serialized, file) => {
    const out = path.join(work, "from-serialized.gguf");
    await quantize(file, out, { type: "f32", threads: 1 });
    const requantized = await loadModel(out, { threads: 1, kvCacheType: "f32", contextSize: 256 });
    try {
      assert.deepEqual(requantized.tokenize(MIXED_TEXT, { special: true }), original.tokenize(MIXED_TEXT, { special: true }));
      const prompt = "Once upon a time";
      assert.deepEqual((await requantized.complete(prompt, { maxTokens: 16, temperature: 0 })).tokens, (await original.complete(prompt, { maxTokens: 16, temperature: 0 })).tokens);
    } finally {
      await requantized.dispose();
    }
  });
});

/** A serialized copy of the package's model, made once for the damage tests. */
let goodFile;
async function good() {
  if (!goodFile) {
    goodFile = path.join(work, "good.llnm");
    const model = await loadModel(DEFAULT_MODEL, { threads: 1, contextSize: 128 });
    try {
      await model.saveSerialized(goodFile);
    } finally {
      await model.dispose();
    }
  }
  return goodFile;
}

/** The parts of a serialized file: its header, manifest (parsed), tables bytes and tensor data bytes. */
function splitFile(file) {
  const bytes = fs.readFileSync(file);
  const manifestLength = bytes.readUInt32LE(20);
  const checkedLength = Number(bytes.readBigUInt64LE(24));
  const align = (n) => Math.ceil(n / 64) * 64;
  const tablesStart = align(HEADER_BYTES + manifestLength);
  return {
    header: bytes.subarray(0, HEADER_BYTES),
    manifest: JSON.parse(bytes.subarray(HEADER_BYTES, HEADER_BYTES + manifestLength).toString("utf8")),
    tables: bytes.subarray(tablesStart, HEADER_BYTES + checkedLength),
    data: bytes.subarray(align(HEADER_BYTES + checkedLength)),
    tablesStart,
  };
}

/** Writes a copy of `file` whose manifest `edit` changed, laid out and checksummed as the writer does. */
function rewritten(file, name, edit) {
  const { header, manifest, tables, data } = splitFile(file);
  edit(manifest);
  const align = (n) => Math.ceil(n / 64) * 64;
  const manifestBytes = Buffer.from(JSON.stringify(manifest), "utf8");
  const tablesStart = align(HEADER_BYTES + manifestBytes.length);
  const checked = Buffer.alloc(tablesStart + tables.length - HEADER_BYTES);
  manifestBytes.copy(checked, 0);
  tables.copy(checked, tablesStart - HEADER_BYTES);
  const newHeader = Buffer.from(header);
  newHeader.writeUInt32LE(manifestBytes.length, 20);
  newHeader.writeBigUInt64LE(BigInt(checked.length), 24);
  crypto.createHash("sha256").update(checked).digest().copy(newHeader, 32);
  const out = path.join(work, name);
  const pad = Buffer.alloc(align(HEADER_BYTES + checked.length) - HEADER_BYTES - checked.length);
  fs.writeFileSync(out, Buffer.concat([newHeader, checked, pad, data]));
  return out;
}

function patched(file, name, patch) {
  const bytes = Buffer.from(fs.readFileSync(file));
  patch(bytes);
  const out = path.join(work, name);
  fs.writeFileSync(out, bytes);
  return out;
}

/** loadModel(file) rejects with `Class`, naming the file, with the given fields. */
async function assertRefused(file, Class, fields = {}, options = { threads: 1 }) {
  await assert.rejects(loadModel(file, options), (err) => {
    assert.ok(err instanceof Class, `${err.name}: ${err.message}`);
    assert.ok(err.message.includes(file), err.message);
    for (const [key, value] of Object.entries(fields)) assert.deepEqual(err[key], value, `${key} of ${err.message}`);
    return true;
  });
}

test("a serialized model loads with its saved KV options as defaults; options given still win", async () => {
  const file = await good();
  const model = await loadModel(file, { threads: 1 });
  try {
    assert.equal(model.info.contextSize, 128);
    assert.equal(model.info.kvCache.type, "f16");
    assert.equal(model.info.device, "cpu");
  } finally {
    await model.dispose();
  }
  const other = await loadModel(file, { threads: 1, contextSize: 64, kvCacheType: "f32" });
  try {
    assert.equal(other.info.contextSize, 64);
    assert.equal(other.info.kvCache.type, "f32");
  } finally {
    await other.dispose();
  }
});

test("a file truncated anywhere is a ModelFormatError naming it (a SerializedModelError past the magic)", async () => {
  const file = await good();
  const { tablesStart, tables } = splitFile(file);
  const size = fs.statSync(file).size;
  const cuts = [
    { at: 10, Class: ModelFormatError },
    { at: 40, Class: SerializedModelError, field: "header" },
    { at: HEADER_BYTES + 20, Class: SerializedModelError, field: "manifest" },
    { at: tablesStart + Math.floor(tables.length / 2), Class: SerializedModelError, field: "manifest" },
    { at: Math.floor(size * 0.9), Class: SerializedModelError },
    { at: size - 1, Class: SerializedModelError },
  ];
  for (const cut of cuts) {
    const out = path.join(work, `cut-${cut.at}.llnm`);
    fs.writeFileSync(out, fs.readFileSync(file).subarray(0, cut.at));
    await assertRefused(out, cut.Class, cut.field ? { field: cut.field, path: out } : {});
    if (cut.Class === SerializedModelError && !cut.field) {
      await assert.rejects(loadModel(out, { threads: 1 }), (err) => /^tensors\[\d+\]$/.test(err.field) && err.message.includes("truncated"));
    }
  }
});

test("wrong magic, a flipped version byte and a damaged manifest byte are typed errors", async () => {
  const file = await good();
  await assertRefused(patched(file, "magic.llnm", (b) => (b[3] ^= 0x20)), ModelFormatError);
  const version = patched(file, "version.llnm", (b) => (b[16] ^= 0x02));
  await assertRefused(version, SerializedModelMismatchError, { field: "formatVersion", expected: 1, found: 3, path: version });
  const damaged = patched(file, "damaged.llnm", (b) => (b[HEADER_BYTES + 5] ^= 0x01));
  await assertRefused(damaged, SerializedModelError, { field: "checksum" });
  const table = patched(file, "table.llnm", (b) => (b[splitFile(file).tablesStart + 3] ^= 0x40));
  await assertRefused(table, SerializedModelError, { field: "checksum" });
});

test("a file from another engine version, or for another backend, is refused saying why", async () => {
  const file = await good();
  const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "package.json"), "utf8"));
  const older = rewritten(file, "older.llnm", (m) => (m.engineVersion = "0.0.1-old"));
  await assertRefused(older, SerializedModelMismatchError, { field: "engineVersion", expected: version, found: "0.0.1-old" });
  const cuda = rewritten(file, "cuda.llnm", (m) => (m.prepared.backend = "cuda"));
  await assertRefused(cuda, SerializedModelMismatchError, { field: "backend", expected: "cpu", found: "cuda" }, { threads: 1, device: "cpu" });
  const { cudaInfo } = require("../dist/cjs/native/engine.js");
  if (cudaInfo().devices === 0) {
    // "auto" takes the file's backend when the machine has it; this one has no GPU.
    await assertRefused(cuda, SerializedModelMismatchError, { field: "backend", found: "cuda" });
  }
});

test("a manifest with bad values is refused naming the field, even with a valid checksum", async () => {
  const file = await good();
  const cases = [
    { edit: (m) => (m.tensors[3].offset += 8), field: "tensors[3].offset" },
    { edit: (m) => (m.tensors[0].byteLength *= 2), field: "tensors[0].byteLength" },
    { edit: (m) => (m.tensors[1].offset = 1e12), field: "tensors[1]" },
    { edit: (m) => (m.config.dim = "64"), field: "config.dim" },
    { edit: (m) => (m.config.heads = 3), field: "config" },
    { edit: (m) => (m.tokenizer.tables.scores.byteLength += 4096), field: "tokenizer.tables.scores" },
    { edit: (m) => (m.tokenizer.tables.scores.type = "i32"), field: "tokenizer.tables.scores" },
    { edit: (m) => (m.tokenizer.meta.bosId = 100000), field: "tokenizer.bosId" },
    { edit: (m) => (m.tokenizer.meta.encoder = "other"), field: "tokenizer.encoder" },
    { edit: (m) => (m.prepared.kvCacheType = "q2"), field: "prepared.kvCacheType" },
    { edit: (m) => m.tensors.pop(), field: "tensors" },
  ];
  for (const [i, c] of cases.entries()) {
    await assertRefused(rewritten(file, `bad-${i}.llnm`, c.edit), SerializedModelError, { field: c.field });
  }
});

test("saveSerialized refuses the model's own file, a directory that does not exist and a disposed model", async () => {
  const copy = path.join(work, "own.gguf");
  fs.copyFileSync(DEFAULT_MODEL, copy);
  const model = await loadModel(copy, { threads: 1, contextSize: 64 });
  await assert.rejects(model.saveSerialized(copy), (err) => err instanceof InvalidArgumentError && err.option === "file");
  await assert.rejects(model.saveSerialized(""), InvalidArgumentError);
  const missingDir = path.join(work, "no-such-dir", "model.llnm");
  await assert.rejects(model.saveSerialized(missingDir), (err) => err instanceof InvalidArgumentError && err.option === "file" && err.message.includes(missingDir));
  assert.deepEqual(fs.readdirSync(work).filter((f) => f.endsWith(".partial")), [], "no partial file is left");
  await model.dispose();
  await assert.rejects(model.saveSerialized(path.join(work, "late.llnm")), /disposed/);
});
