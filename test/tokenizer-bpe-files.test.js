"use strict";
// The byte-level BPE loaders on small hand-made files in os.tmpdir(): merge semantics, both merge notations, and the
// errors a malformed or unsupported file must raise (naming the file).
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { loadBpeTokenizer } = require("../dist/cjs/tokenizer/bpe.js");
const { BYTE_TO_CHAR } = require("../dist/cjs/tokenizer/bpe-byte-level.js");
const { ModelFormatError, UnsupportedModelError, InvalidArgumentError } = require("../dist/cjs/errors.js");

const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-bpe-"));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

function writeFile(name, content) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return file;
}

/**
 * A tokenizer.json with the 256 byte tokens (ids 0..255), "bc" (256), "ab" (257), "abc" (258, in the vocab but no
 * merge makes it), merges "b c" before "a b", and two special tokens.
 */
function tinyTokenizerJson(overrides = {}) {
  const vocab = Object.fromEntries(BYTE_TO_CHAR.map((ch, id) => [ch, id]));
  Object.assign(vocab, { bc: 256, ab: 257, abc: 258 });
  return {
    added_tokens: [
      { id: 259, content: "<|begin_of_text|>", special: true },
      { id: 260, content: "<|eot_id|>", special: true },
    ],
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: LLAMA3_SPLIT }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: "ByteLevel" },
    ...overrides,
    model: { type: "BPE", ignore_merges: false, vocab, merges: ["b c", "a b"], ...overrides.model },
  };
}

const loadJson = (name, json) => loadBpeTokenizer({ kind: "hf-json", path: writeFile(name, JSON.stringify(json)) });

test("merges apply lowest rank first; ignore_merges emits whole-vocab pieces; [a, b] merges read the same", async () => {
  const merged = await loadJson("plain.json", tinyTokenizerJson());
  assert.deepEqual(merged.tokenize("abc ab", { addBos: false }), [97, 256, 32, 257]);
  assert.deepEqual(merged.tokenize("abc", { addBos: false }), [97, 256], "b c merges first, then a + bc has no merge");
  assert.deepEqual(merged.tokenize("ab", { addBos: false }), [257]);
  const ignoring = await loadJson("ignore.json", tinyTokenizerJson({ model: { ignore_merges: true } }));
  assert.deepEqual(ignoring.tokenize("abc", { addBos: false }), [258]);
  const pairs = await loadJson("pairs.json", tinyTokenizerJson({ model: { merges: [["b", "c"], ["a", "b"]] } }));
  assert.deepEqual(pairs.tokenize("abc ab cab", { addBos: false }), merged.tokenize("abc ab cab", { addBos: false }));
});

test("BOS and EOS come from tokenizer_config.json, else the Llama 3 names; add_bos_token is honoured", async () => {
  const file = writeFile("with-config.json", JSON.stringify(tinyTokenizerJson()));
  const configPath = writeFile("tokenizer_config.json", JSON.stringify({ bos_token: "<|begin_of_text|>", eos_token: { content: "<|eot_id|>" }, add_bos_token: false }));
  const configured = await loadBpeTokenizer({ kind: "hf-json", path: file, configPath });
  assert.equal(configured.bosId, 259);
  assert.deepEqual(configured.eosIds, [260]);
  assert.equal(configured.addBosDefault, false);
  assert.deepEqual(configured.tokenize("ab"), [257]);
  assert.deepEqual(configured.tokenize("ab", { addBos: true }), [259, 257]);

  const bare = await loadBpeTokenizer({ kind: "hf-json", path: file });
  assert.equal(bare.bosId, 259);
  assert.equal(bare.addBosDefault, true);
  const noBos = await loadJson("no-bos.json", tinyTokenizerJson({ added_tokens: [] }));
  assert.equal(noBos.bosId, undefined);
  assert.throws(() => noBos.tokenize("ab", { addBos: true }), InvalidArgumentError);
});

test("tokenizer.json errors name the file", async () => {
  const cases = [
    ["wordpiece.json", JSON.stringify(tinyTokenizerJson({ model: { type: "WordPiece" } })), UnsupportedModelError],
    ["unigram.json", JSON.stringify(tinyTokenizerJson({ model: { type: "Unigram" } })), UnsupportedModelError],
    ["unknown-merge.json", JSON.stringify(tinyTokenizerJson({ model: { merges: ["b c", "x yz"] } })), ModelFormatError],
    ["unknown-merge-pair.json", JSON.stringify(tinyTokenizerJson({ model: { merges: [["b", "c"], ["a", "zz"]] } })), ModelFormatError],
    ["merge-result-unknown.json", JSON.stringify(tinyTokenizerJson({ model: { merges: ["c a"] } })), ModelFormatError],
    ["bad-merge.json", JSON.stringify(tinyTokenizerJson({ model: { merges: ["abc"] } })), ModelFormatError],
    ["truncated.json", JSON.stringify(tinyTokenizerJson()).slice(0, 500), ModelFormatError],
    // An id past the number of tokens: at 2^32 and beyond it would not even be an array index.
    ["huge-added-id.json", JSON.stringify(tinyTokenizerJson({ added_tokens: [{ id: 2 ** 40, content: "<|x|>", special: true }] })), ModelFormatError],
    ["gpt2-regex.json", JSON.stringify(tinyTokenizerJson({ pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, use_regex: true } })), UnsupportedModelError],
    ["other-split.json", JSON.stringify(tinyTokenizerJson({ pre_tokenizer: { type: "Sequence", pretokenizers: [
      { type: "Split", pattern: { Regex: "\\p{N}" }, behavior: "Isolated", invert: false },
      { type: "ByteLevel", add_prefix_space: false, use_regex: false },
    ] } })), UnsupportedModelError],
  ];
  for (const [name, content, errorType] of cases) {
    const file = writeFile(name, content);
    await assert.rejects(loadBpeTokenizer({ kind: "hf-json", path: file }), (err) => {
      assert.ok(err instanceof errorType, `${name}: ${err}`);
      assert.ok(err.message.includes(file), `${name}: message names the file: ${err.message}`);
      return true;
    });
  }
  const good = writeFile("good.json", JSON.stringify(tinyTokenizerJson()));
  const badConfig = writeFile("bad_config.json", "{");
  await assert.rejects(loadBpeTokenizer({ kind: "hf-json", path: good, configPath: badConfig }), (err) => err instanceof ModelFormatError && err.message.includes(badConfig));
  await assert.rejects(loadBpeTokenizer({ kind: "hf-json", path: path.join(dir, "missing.json") }), ModelFormatError);
});

/** tiktoken lines for the 256 single bytes (rank = byte) plus extra "token rank" lines. */
function tiktokenText(extra) {
  const lines = Array.from({ length: 256 }, (_, b) => `${Buffer.from([b]).toString("base64")} ${b}`);
  return [...lines, ...extra.map(([token, rank]) => `${Buffer.from(token).toString("base64")} ${rank}`)].join("\n") + "\n";
}

test("tiktoken: merges implied by ranks, Meta's special tokens after the ranks", async () => {
  const file = writeFile("tiny.model", tiktokenText([["bc", 256], ["ab", 257], ["abc", 258]]));
  const tokenizer = await loadBpeTokenizer({ kind: "tiktoken", path: file });
  assert.equal(tokenizer.vocabSize, 259 + 256);
  assert.equal(tokenizer.bosId, 259);
  assert.deepEqual(tokenizer.eosIds, [260, 268]);
  // tiktoken emits a piece that is itself a token whole; inside a longer piece the lowest-ranked pair merges first.
  assert.deepEqual(tokenizer.tokenize("abc", { addBos: false }), [258]);
  assert.deepEqual(tokenizer.tokenize("abcc", { addBos: false }), [258, 99], "b+c first, then a+bc since abc is a token");
  assert.deepEqual(tokenizer.tokenize("<|eot_id|>", { special: true }), [259, 268]);
});

test("tiktoken errors name the file", async () => {
  const cases = [
    ["bad-base64.model", tiktokenText([["ab", 256]]).replace("YWI= 256", "Y@I= 256")],
    ["no-rank.model", tiktokenText([["ab", 256]]).replace("YWI= 256", "YWI=")],
    ["duplicate-rank.model", tiktokenText([["ab", 255]])],
    ["gap.model", tiktokenText([["ab", 257]])],
  ];
  for (const [name, content] of cases) {
    const file = writeFile(name, content);
    await assert.rejects(loadBpeTokenizer({ kind: "tiktoken", path: file }), (err) => {
      assert.ok(err instanceof ModelFormatError, `${name}: ${err}`);
      assert.ok(err.message.includes(file), `${name}: ${err.message}`);
      return true;
    });
  }
});

test("GGUF metadata errors name the key or value at fault", async () => {
  const metadata = (entries) =>
    new Map(Object.entries({
      "tokenizer.ggml.model": "gpt2",
      "tokenizer.ggml.pre": "llama-bpe",
      "tokenizer.ggml.tokens": [...BYTE_TO_CHAR, "ab"],
      "tokenizer.ggml.merges": ["a b"],
      ...entries,
    }));
  const ggufPath = "/models/bpe.gguf"; // named in messages only: the metadata is built here
  const ok = await loadBpeTokenizer({ kind: "gguf", path: ggufPath, metadata: metadata({}) });
  assert.deepEqual(ok.tokenize("ab"), [256], "no BOS token: none added");
  const cases = [
    [{ "tokenizer.ggml.pre": "qwen2" }, UnsupportedModelError, "qwen2"],
    [{ "tokenizer.ggml.model": "llama" }, UnsupportedModelError, "llama"],
    [{ "tokenizer.ggml.merges": ["a zz"] }, ModelFormatError, "a zz"],
    [{ "tokenizer.ggml.token_type": [1, 1] }, ModelFormatError, "token_type"],
    [{ "tokenizer.ggml.bos_token_id": 9999 }, ModelFormatError, "bos_token_id"],
    [{ "tokenizer.ggml.tokens": undefined }, ModelFormatError, "tokenizer.ggml.tokens"],
  ];
  for (const [entries, errorType, named] of cases) {
    await assert.rejects(loadBpeTokenizer({ kind: "gguf", path: ggufPath, metadata: metadata(entries) }), (err) => {
      assert.ok(err instanceof errorType, `${named}: ${err}`);
      assert.ok(err.message.includes(named), err.message);
      assert.ok(err.message.includes(ggufPath), err.message);
      return true;
    });
  }
  await assert.rejects(loadBpeTokenizer({ kind: "sentencepiece", path: "x" }), InvalidArgumentError);
  assert.throws(() => ok.detokenize([ok.vocabSize]), InvalidArgumentError);
  assert.throws(() => ok.tokenBytes(-1), InvalidArgumentError);
});
