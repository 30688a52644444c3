"use strict";
// Corrupted configs with huge sizes, in every format: each must fail with a ModelFormatError naming the file, in a
// child process with a small heap, so that a parser allocating from the config (a billion-layer shape map) aborts
// the child or times out instead of passing.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { setGgufInt } = require("./helpers/gguf-patch.js");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-huge-"));
process.on("exit", () => fs.rmSync(tmp, { recursive: true, force: true }));

const HUGE = 1_000_000_000;
const CHILD_HEAP_MB = 64;
const CHILD_TIMEOUT_MS = 60_000;

let counter = 0;
const fresh = (name) => path.join(tmp, `${counter++}-${name}`);

function ggufCase(key) {
  const file = fresh(`${key}.gguf`);
  fs.writeFileSync(file, setGgufInt(fs.readFileSync(DEFAULT_MODEL), key, HUGE));
  return { label: `GGUF ${key}`, parser: "gguf", path: file };
}

/** A copy of a model directory (weights linked, not copied) with one JSON file edited. */
function jsonDirCase(label, parser, source, jsonName, key, value = HUGE) {
  const dir = fresh(path.basename(source));
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(source)) {
    if (f !== jsonName) fs.symlinkSync(path.join(source, f), path.join(dir, f));
  }
  const json = JSON.parse(fs.readFileSync(path.join(source, jsonName), "utf8"));
  fs.writeFileSync(path.join(dir, jsonName), JSON.stringify({ ...json, [key]: value }));
  return { label: `${label} ${key}`, parser, path: dir };
}

const LLAMA2C_FIELDS = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];

function llama2cCase(field, value = HUGE) {
  const bytes = fs.readFileSync(modelPath("tinystories", "stories260K.bin"));
  bytes.writeInt32LE(value, 4 * LLAMA2C_FIELDS.indexOf(field));
  const file = fresh(`${field}.bin`);
  fs.writeFileSync(file, bytes);
  return { label: `llama2.c ${field} ${value}`, parser: "llama2c", path: file };
}

// Parses each case in a fresh process with a small heap; prints one JSON line per case.
const CHILD = `
const cases = JSON.parse(process.argv[1]);
const parsers = {
  gguf: require(${JSON.stringify(path.resolve(__dirname, "../dist/cjs/formats/gguf.js"))}).parseGgufModel,
  hf: require(${JSON.stringify(path.resolve(__dirname, "../dist/cjs/formats/hf.js"))}).parseHfModel,
  meta: require(${JSON.stringify(path.resolve(__dirname, "../dist/cjs/formats/meta.js"))}).parseMetaModel,
  llama2c: require(${JSON.stringify(path.resolve(__dirname, "../dist/cjs/formats/llama2c.js"))}).parseLlama2cModel,
};
for (const c of cases) {
  let result;
  try {
    parsers[c.parser](c.path);
    result = { name: "loaded" };
  } catch (err) {
    result = { name: err.name, message: err.message };
  }
  console.log(JSON.stringify({ label: c.label, ...result }));
}
`;

function parseInChild(cases) {
  const run = spawnSync(process.execPath, [`--max-old-space-size=${CHILD_HEAP_MB}`, "-e", CHILD, JSON.stringify(cases)], {
    encoding: "utf8",
    timeout: CHILD_TIMEOUT_MS,
  });
  assert.equal(run.signal, null, `the parsing process died with ${run.signal}: ${run.stderr.slice(-2000)}`);
  assert.equal(run.status, 0, run.stderr.slice(-2000));
  return run.stdout.trim().split("\n").map((line) => JSON.parse(line));
}

function assertAllRefused(cases) {
  const results = parseInChild(cases);
  assert.equal(results.length, cases.length);
  cases.forEach((c, i) => {
    const r = results[i];
    assert.equal(r.name, "ModelFormatError", `${c.label}: ${r.name}: ${r.message}`);
    assert.ok(r.message.includes(c.path), `${c.label}: the message does not name ${c.path}: ${r.message}`);
  });
}

test("GGUF: huge llama.* sizes fail fast with ModelFormatError", () => {
  const keys = [
    "llama.block_count", "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
    "llama.attention.head_count_kv", "llama.context_length", "llama.rope.dimension_count",
  ];
  assertAllRefused(keys.map(ggufCase));
});

test("HF config.json: huge sizes fail fast with ModelFormatError", NEEDS_REFERENCE_MODELS, () => {
  const source = modelPath("trained", "sotu-l2-23m");
  const keys = [
    "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
    "vocab_size", "max_position_embeddings",
  ];
  assertAllRefused(keys.map((key) => jsonDirCase("HF", "hf", source, "config.json", key)));
});

test("Meta params.json: huge sizes fail fast with ModelFormatError", NEEDS_REFERENCE_MODELS, () => {
  const source = modelPath("trained", "sotu-l2-23m-meta");
  const keys = ["n_layers", "dim", "n_heads", "n_kv_heads", "vocab_size", "max_seq_len", "multiple_of"];
  assertAllRefused(keys.map((key) => jsonDirCase("Meta", "meta", source, "params.json", key)));
});

test("llama2.c header: huge sizes fail fast with ModelFormatError", NEEDS_REFERENCE_MODELS, () => {
  // 2^31 - 1 too: the largest int32, where sizes computed from the header pass 2^53.
  assertAllRefused([...LLAMA2C_FIELDS.map((f) => llama2cCase(f)), llama2cCase("n_layers", 2 ** 31 - 1), llama2cCase("dim", 2 ** 31 - 1)]);
});
