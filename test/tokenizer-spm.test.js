"use strict";
// SentencePiece (Llama 2) tokenizer: llama.cpp's test vectors from every vocab source, round trips, tok512,
// special tokens, merge order and fallbacks on hand-made vocabs, errors, speed.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models");
const { loadTokenizer } = require("../dist/cjs/tokenizer");
const { SpmTokenizer } = require("../dist/cjs/tokenizer/spm");
const { readSentencePieceVocab } = require("../dist/cjs/tokenizer/vocab-sentencepiece");
const { readGguf } = require("../dist/cjs/formats/gguf");
const { ModelFormatError, UnsupportedModelError, InvalidArgumentError } = require("../dist/cjs/errors");

/** llama.cpp's .inp/.out: each case is followed by "\n__ggml_vocab_test__\n"; .out has one line of ids per case. */
function readVocabCases(base) {
  const inputs = fs.readFileSync(modelPath(`${base}.inp`), "utf8").split("\n__ggml_vocab_test__\n");
  assert.equal(inputs.pop(), "", "the .inp file ends with a separator");
  const outputs = fs.readFileSync(modelPath(`${base}.out`), "utf8").split("\n");
  assert.equal(outputs.pop(), "", "the .out file ends with a newline");
  assert.equal(inputs.length, outputs.length);
  return inputs.map((text, i) => ({ text, ids: outputs[i].trim() === "" ? [] : outputs[i].trim().split(" ").map(Number) }));
}

const ggufSource = (file) => ({ kind: "gguf", path: modelPath(file), metadata: readGguf(modelPath(file)).metadata });

/** Every way of loading the Llama 2 vocab; "tokenizer.model (own encoder)" checks our merging against SentencePiece's. */
const LLAMA2_SOURCES = {
  "vocab GGUF": () => loadTokenizer(ggufSource("vocab/ggml-vocab-llama-spm.gguf")),
  "model GGUF (llama-2-tiny-random)": () => loadTokenizer(ggufSource("gguf/llama-2-tiny-random.gguf")),
  "tokenizer.model (sentencepiece-js)": () => loadTokenizer({ kind: "sentencepiece", path: modelPath("llama2/tokenizer.model") }),
  "tokenizer.model (own encoder)": async () => new SpmTokenizer(await readSentencePieceVocab(modelPath("llama2/tokenizer.model"))),
  "tokenizer.bin (llama2.c)": () => loadTokenizer({ kind: "llama2c", path: modelPath("llama2/tokenizer.bin") }),
};

// Read here only where the reference set is present: the tests that use the cases are skipped where it is not.
const CASES = NEEDS_REFERENCE_MODELS.skip ? [] : readVocabCases("vocab/ggml-vocab-llama-spm.gguf");

for (const [name, load] of Object.entries(LLAMA2_SOURCES)) {
  test(`llama.cpp SPM vectors: ${name}`, NEEDS_REFERENCE_MODELS, async () => {
    const tok = await load();
    assert.equal(tok.kind, "spm");
    assert.equal(tok.vocabSize, 32000);
    assert.equal(tok.bosId, 1);
    assert.deepEqual(tok.eosIds, [2]);
    assert.equal(tok.addBosDefault, true);
    assert.equal(CASES.length, 46);
    for (const { text, ids } of CASES) {
      assert.deepEqual(tok.tokenize(text, { addBos: false }), ids, `ids of ${JSON.stringify(text)}`);
      assert.deepEqual(tok.tokenize(text), [1, ...ids], `BOS by default for ${JSON.stringify(text)}`);
      assert.equal(tok.detokenize(tok.tokenize(text)), text, `round trip of ${JSON.stringify(text)}`);
      assert.equal(tok.detokenize(ids), text, `decode without BOS of ${JSON.stringify(text)}`);
    }
  });
}

test("all Llama 2 sources agree on token bytes and types", NEEDS_REFERENCE_MODELS, async () => {
  const tokenizers = await Promise.all(Object.values(LLAMA2_SOURCES).map((load) => load()));
  const [reference, ...others] = tokenizers;
  for (let id = 0; id < reference.vocabSize; id++) {
    for (const tok of others) {
      assert.deepEqual(tok.tokenBytes(id), reference.tokenBytes(id), `bytes of token ${id}`);
      assert.equal(tok.isSpecial(id), reference.isSpecial(id), `isSpecial(${id})`);
      assert.equal(tok.tokenText(id), reference.tokenText(id), `tokenText(${id})`);
    }
  }
  assert.deepEqual([1, 2, 29871, 15043, 3 + 0xf0].map((id) => reference.tokenText(id)), ["<s>", "</s>", "▁", "▁Hello", "<0xF0>"]);
  assert.deepEqual([...reference.tokenBytes(29871)], [0x20]); // "▁"
  assert.deepEqual([...reference.tokenBytes(3 + 0xf0)], [0xf0]); // <0xF0>
  assert.deepEqual([...reference.tokenBytes(1)], []); // <s>
  assert.equal(reference.isSpecial(1), true);
  assert.equal(reference.isSpecial(15043), false);
});

test("more text: our merging equals SentencePiece's (sentencepiece-js)", NEEDS_REFERENCE_MODELS, async () => {
  const sp = await LLAMA2_SOURCES["tokenizer.model (sentencepiece-js)"]();
  const own = await LLAMA2_SOURCES["vocab GGUF"]();
  const text = fs.readFileSync(modelPath("trained/heldout.txt"), "utf8").slice(0, 200_000);
  const lines = text.split("\n");
  for (const line of lines) assert.deepEqual(own.tokenize(line), sp.tokenize(line), JSON.stringify(line));
  assert.deepEqual(own.tokenize(text), sp.tokenize(text));
  const odd = ["  \t\n  x", "ǅ ǆ ǈ ＡＢＣ", "🦙🦙 🦙", "a\u0000b", "\uFEFFbom", "é vs e\u0301", "日本語のテキスト", "x".repeat(300)];
  for (const s of odd) assert.deepEqual(own.tokenize(s), sp.tokenize(s), JSON.stringify(s));
});

test("tok512.bin (stories260K) encodes as its GGUF does", NEEDS_REFERENCE_MODELS, async () => {
  const bin = await loadTokenizer({ kind: "llama2c", path: modelPath("tinystories/tok512.bin") });
  const gguf = await loadTokenizer(ggufSource("tinystories/stories260K.gguf"));
  assert.equal(bin.vocabSize, 512);
  assert.deepEqual(bin.tokenize("Once upon a time"), [1, 403, 407, 261, 378]); // <s> ▁Once ▁upon ▁a ▁time
  assert.deepEqual([...bin.tokenBytes(3 + 0x41)], [0x41], "ids 3..258 are the byte tokens");
  const prompts = ["Once upon a time", "Lily and Ben went to the park", "The cat", "", "Hello 🦙! ünïcödé", " two  spaces"];
  for (const text of prompts) {
    assert.deepEqual(bin.tokenize(text), gguf.tokenize(text), JSON.stringify(text));
    assert.equal(bin.detokenize(bin.tokenize(text)), text);
  }
  // A character outside the 512 pieces falls back to bytes: "🦙" is F0 9F A6 99.
  assert.deepEqual(bin.tokenize("🦙", { addBos: false }).slice(-4), [0xf0 + 3, 0x9f + 3, 0xa6 + 3, 0x99 + 3]);
});

test("special tokens: parsed only with special: true", NEEDS_REFERENCE_MODELS, async () => {
  for (const [name, load] of Object.entries(LLAMA2_SOURCES)) {
    const tok = await load();
    const noBos = { addBos: false };
    assert.deepEqual(tok.tokenize("<s>Hello</s>", { ...noBos, special: true }), [1, 15043, 2], name);
    assert.deepEqual(tok.tokenize("<s>Hello</s>", noBos), [529, 29879, 29958, 10994, 829, 29879, 29958], name);
    // Each text fragment after a special token gets its own dummy prefix (as llama.cpp does).
    assert.deepEqual(tok.tokenize("<s> Hello</s>world<unk>", { ...noBos, special: true }), [1, 29871, 15043, 2, 3186, 0], name);
    assert.deepEqual(tok.tokenize("a<s>", { special: true }), [1, 263, 1], name);
    // So text after a special token decodes with a leading space that was not in the input.
    assert.equal(tok.detokenize(tok.tokenize("<s>Hello</s>world", { special: true })), "Hello world", name);
  }
});

/** A hand-made SPM vocab: the given pieces follow <unk>, <s>, </s> (and byte pieces when `bytes`). */
function tinyVocab(pieces, { bytes = false } = {}) {
  const all = [["<unk>", 0, 2], ["<s>", 0, 3], ["</s>", 0, 3]];
  if (bytes) for (let b = 0; b < 256; b++) all.push([`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, 0, 6]);
  for (const [piece, score] of pieces) all.push([piece, score, 1]);
  return {
    origin: "test vocab",
    pieces: all.map((p) => p[0]),
    scores: all.map((p) => p[1]),
    types: all.map((p) => p[2]),
    bosId: 1,
    eosIds: [2],
    unkId: 0,
    addBos: false,
    addDummyPrefix: true,
  };
}

test("merging: highest score first, ties to the leftmost pair", () => {
  const pieces = (tok, text) => tok.tokenize(text).map((id) => new TextDecoder().decode(tok.tokenBytes(id)));
  const base = [["▁", -1], ["a", -1], ["b", -1], ["c", -1]];
  const tie = new SpmTokenizer(tinyVocab([...base, ["ab", -5], ["bc", -5]]));
  assert.deepEqual(pieces(tie, "abc"), [" ", "ab", "c"]);
  const right = new SpmTokenizer(tinyVocab([...base, ["ab", -5], ["bc", -4]]));
  assert.deepEqual(pieces(right, "abc"), [" ", "a", "bc"]);
  // A merge result can merge again, and across the dummy prefix.
  const chain = new SpmTokenizer(tinyVocab([...base, ["ab", -2], ["▁ab", -3], ["▁abc", -9]]));
  assert.deepEqual(pieces(chain, "abc ab"), [" abc", " ab"]);
});

test("unknown characters: byte pieces when the vocab has them, else one unk per run", () => {
  const base = [["▁", -1], ["a", -1]];
  const withBytes = new SpmTokenizer(tinyVocab(base, { bytes: true }));
  assert.deepEqual(withBytes.tokenize("aé"), [259, 260, 3 + 0xc3, 3 + 0xa9]);
  assert.equal(withBytes.detokenize(withBytes.tokenize("aé")), "aé");
  const noBytes = new SpmTokenizer(tinyVocab(base));
  assert.deepEqual(noBytes.tokenize("aéé a"), [3, 4, 0, 3, 4]);
  assert.equal(noBytes.detokenize([3, 4, 0]), "a \u2047 ");
});

test("a 1 MB text tokenizes fast", NEEDS_REFERENCE_MODELS, async () => {
  const tok = await LLAMA2_SOURCES["vocab GGUF"]();
  const held = fs.readFileSync(modelPath("trained/heldout.txt"), "utf8");
  // Distinct text (not the same words over and over), so the chunk cache does not do all the work.
  let text = "";
  for (let i = 0; Buffer.byteLength(text) < 1 << 20; i++) text += held.replace(/[aeiou]/g, (v) => (i % 2 ? v.toUpperCase() : v)) + i;
  const start = process.hrtime.bigint();
  const ids = tok.tokenize(text);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  assert.ok(ids.length > 200_000);
  // Well under a second on an idle machine; the bound leaves room for a loaded CI box, and catches any blow-up.
  assert.ok(ms < 3000, `took ${ms.toFixed(0)} ms`);
  assert.equal(tok.detokenize(ids), text);
});

test("token ids are checked", NEEDS_REFERENCE_MODELS, async () => {
  const tok = await LLAMA2_SOURCES["vocab GGUF"]();
  for (const bad of [-1, 32000, 1.5, NaN]) {
    assert.throws(() => tok.tokenBytes(bad), InvalidArgumentError);
    assert.throws(() => tok.detokenize([bad]), InvalidArgumentError);
  }
});

test("errors: malformed files name the file; unknown tokenizer models are unsupported", NEEDS_REFERENCE_MODELS, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "spm-test-"));
  try {
    const truncated = path.join(dir, "truncated.bin");
    fs.writeFileSync(truncated, fs.readFileSync(modelPath("llama2/tokenizer.bin")).subarray(0, 1000));
    await assert.rejects(loadTokenizer({ kind: "llama2c", path: truncated }), (e) => e instanceof ModelFormatError && e.message.includes(truncated));
    const missing = path.join(dir, "missing.model");
    await assert.rejects(loadTokenizer({ kind: "sentencepiece", path: missing }), (e) => e instanceof ModelFormatError && e.message.includes(missing));
    // Llama 3's tokenizer.model is a tiktoken text file, not a SentencePiece protobuf.
    const tiktoken = modelPath("llama3/tokenizer.model");
    await assert.rejects(loadTokenizer({ kind: "sentencepiece", path: tiktoken }), (e) => e instanceof ModelFormatError && e.message.includes(tiktoken));
    const cut = path.join(dir, "cut.model");
    fs.writeFileSync(cut, fs.readFileSync(modelPath("llama2/tokenizer.model")).subarray(0, 250_000));
    await assert.rejects(loadTokenizer({ kind: "sentencepiece", path: cut }), (e) => e instanceof ModelFormatError && e.message.includes(cut));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const ggufPath = modelPath("vocab/ggml-vocab-llama-spm.gguf");
  const metadata = readGguf(ggufPath).metadata;
  const namesFile = (errorClass) => (e) => e instanceof errorClass && e.message.includes(ggufPath);
  await assert.rejects(
    loadTokenizer({ kind: "gguf", path: ggufPath, metadata: new Map([...metadata, ["tokenizer.ggml.model", "bert"]]) }),
    namesFile(UnsupportedModelError),
  );
  const noModel = new Map(metadata);
  noModel.delete("tokenizer.ggml.model");
  await assert.rejects(loadTokenizer({ kind: "gguf", path: ggufPath, metadata: noModel }), namesFile(ModelFormatError));
  await assert.rejects(
    loadTokenizer({ kind: "gguf", path: ggufPath, metadata: new Map([...metadata, ["tokenizer.ggml.scores", [1, 2]]]) }),
    (e) => namesFile(ModelFormatError)(e) && /invalid SentencePiece vocab: 2 scores/.test(e.message),
  );
});

test("GGUF flags: add_bos_token and add_space_prefix", NEEDS_REFERENCE_MODELS, async () => {
  const metadata = readGguf(modelPath("vocab/ggml-vocab-llama-spm.gguf")).metadata;
  const tok = await loadTokenizer({
    kind: "gguf",
    path: modelPath("vocab/ggml-vocab-llama-spm.gguf"),
    metadata: new Map([...metadata, ["tokenizer.ggml.add_bos_token", false], ["tokenizer.ggml.add_space_prefix", false]]),
  });
  assert.equal(tok.addBosDefault, false);
  assert.deepEqual(tok.tokenize("Hello world"), [10994, 3186]); // "Hello" "▁world": no BOS, no dummy prefix
  assert.deepEqual(tok.tokenize("Hello", { addBos: true }), [1, 10994]);
  assert.equal(tok.detokenize([1, 3186]), " world", "no dummy prefix, so no space is stripped");
});

test("loading tokenizer.model leaves no process listeners behind (sentencepiece-js's runtime adds some)", NEEDS_REFERENCE_MODELS, async () => {
  const count = () => process.listenerCount("uncaughtException") + process.listenerCount("unhandledRejection");
  const before = count();
  await loadTokenizer({ kind: "sentencepiece", path: modelPath("llama2/tokenizer.model") });
  assert.equal(count(), before);
});

test("addBos: true without a BOS token is an error", () => {
  const tok = new SpmTokenizer({ ...tinyVocab([["▁", -1]]), bosId: undefined });
  assert.equal(tok.addBosDefault, false);
  assert.throws(() => tok.tokenize("x", { addBos: true }), InvalidArgumentError);
});
