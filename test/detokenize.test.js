"use strict";
// Detokenization and StreamingDetokenizer: characters split across byte tokens, the dummy-prefix space after BOS,
// control tokens, invalid UTF-8, and the invariant: context text + deltas + flush === detokenize(all ids).
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models");
if (skipFileWithoutReferenceModels()) return;
const { loadTokenizer, StreamingDetokenizer } = require("../dist/cjs/tokenizer");
const { readGguf } = require("../dist/cjs/formats/gguf");
const { makeRandom } = require("./helpers/random.js");

const BOS = 1;
const EOS = 2;
const byteToken = (b) => 3 + b; // Llama 2: <0x00>..<0xFF> are ids 3..258

const SOURCES = {
  "vocab GGUF": () => loadTokenizer({ kind: "gguf", path: modelPath("vocab/ggml-vocab-llama-spm.gguf"), metadata: readGguf(modelPath("vocab/ggml-vocab-llama-spm.gguf")).metadata }),
  "tokenizer.model": () => loadTokenizer({ kind: "sentencepiece", path: modelPath("llama2/tokenizer.model") }),
  "tokenizer.bin": () => loadTokenizer({ kind: "llama2c", path: modelPath("llama2/tokenizer.bin") }),
};

/** Streams `generated` after `context`; returns the context text, the deltas and the flushed rest. */
function stream(tok, context, generated) {
  const detok = new StreamingDetokenizer(tok, context);
  const deltas = generated.map((id) => detok.push(id));
  return { contextText: detok.contextText, deltas, rest: detok.flush() };
}

test("an emoji in byte-fallback tokens comes out whole, once its last byte arrives", async () => {
  const tok = await SOURCES["vocab GGUF"]();
  const ids = tok.tokenize("🦙");
  assert.deepEqual(ids, [BOS, 29871, byteToken(0xf0), byteToken(0x9f), byteToken(0xa6), byteToken(0x99)]);
  const { contextText, deltas, rest } = stream(tok, [BOS], ids.slice(1));
  assert.equal(contextText, "");
  assert.deepEqual(deltas, ["", "", "", "", "🦙"]); // "▁" is the dummy prefix: stripped
  assert.equal(rest, "");
  // After text, the "▁" is a real space.
  assert.deepEqual(stream(tok, tok.tokenize("Hi"), ids.slice(1)).deltas, [" ", "", "", "", "🦙"]);
});

test("leading space: stripped from the first text token after BOS, kept after a prompt", async () => {
  for (const [name, load] of Object.entries(SOURCES)) {
    const tok = await load();
    const hello = 15043; // "▁Hello"
    const world = 3186; // "▁world"
    assert.deepEqual(stream(tok, [BOS], [hello, world]).deltas, ["Hello", " world"], name);
    assert.deepEqual(stream(tok, [BOS, hello], [world]).deltas, [" world"], name);
    assert.equal(stream(tok, [BOS, hello], [world]).contextText, "Hello", name);
    // The stripped space belongs to the start of the text, whether or not a BOS precedes it.
    assert.equal(tok.detokenize([hello, world]), "Hello world", name);
    assert.equal(tok.detokenize([BOS, BOS, hello]), "Hello", name);
    // Only one space goes: " Hello" is "▁" + "▁Hello".
    assert.equal(tok.detokenize(tok.tokenize(" Hello")), " Hello", name);
  }
});

test("control tokens print nothing; unknown prints SentencePiece's ⁇", async () => {
  const tok = await SOURCES["vocab GGUF"]();
  const detok = new StreamingDetokenizer(tok, [BOS, 15043]);
  assert.equal(detok.push(EOS), "");
  assert.equal(detok.push(BOS), "");
  assert.equal(detok.push(0), " \u2047 ");
  assert.equal(tok.detokenize([BOS, 15043, EOS, BOS, 3186, EOS]), "Hello world");
});

test("invalid UTF-8 becomes U+FFFD as TextDecoder makes it, in the stream as in full decode", async () => {
  const tok = await SOURCES["vocab GGUF"]();
  const cases = [
    [[byteToken(0x80)], "\uFFFD"], // lone continuation byte
    [[byteToken(0xf0), byteToken(0x9f)], "\uFFFD"], // truncated at the end: flushed
    [[byteToken(0xf0), 15043], "\uFFFD Hello"], // truncated by a following token
    [[byteToken(0xc0), byteToken(0xaf)], "\uFFFD\uFFFD"], // overlong
    [[byteToken(0xef), byteToken(0xbb), byteToken(0xbf), 15043], "\uFEFF Hello"], // a BOM is text
  ];
  for (const [ids, expected] of cases) {
    assert.equal(tok.detokenize([BOS, ...ids]), expected, JSON.stringify(ids));
    const { contextText, deltas, rest } = stream(tok, [BOS], ids);
    assert.equal(contextText + deltas.join("") + rest, expected, JSON.stringify(ids));
  }
  const { deltas, rest } = stream(tok, [BOS], [byteToken(0xf0), byteToken(0x9f)]);
  assert.deepEqual(deltas, ["", ""], "nothing comes out while the character may still complete");
  assert.equal(rest, "\uFFFD");
});

test("invariant on random ids: context text + deltas + flush === detokenize(all)", async () => {
  for (const [name, load] of Object.entries(SOURCES)) {
    const tok = await load();
    const random = makeRandom(42);
    // Mostly byte tokens and specials, so split and invalid characters are frequent.
    const pick = () => {
      const r = random();
      if (r < 0.4) return byteToken(Math.floor(random() * 256));
      if (r < 0.5) return Math.floor(random() * 3); // <unk>, <s>, </s>
      return Math.floor(random() * tok.vocabSize);
    };
    for (let trial = 0; trial < 300; trial++) {
      const ids = Array.from({ length: Math.floor(random() * 24) }, pick);
      if (random() < 0.5) ids.unshift(BOS);
      const cut = Math.floor(random() * (ids.length + 1));
      const { contextText, deltas, rest } = stream(tok, ids.slice(0, cut), ids.slice(cut));
      assert.equal(contextText + deltas.join("") + rest, tok.detokenize(ids), `${name}: ${JSON.stringify(ids)} cut at ${cut}`);
    }
  }
});

test("invariant on real text, cut after every token", async () => {
  const tok = await SOURCES["vocab GGUF"]();
  const lines = fs.readFileSync(modelPath("trained/heldout.txt"), "utf8").split("\n").filter((l) => l.length > 0).slice(0, 100);
  const samples = [...lines, "日本語 🦙🦙 ünïcödé", "  leading spaces", "tab\tand\nnewline"];
  const isContinuationByte = (id) => id >= byteToken(0x80) && id <= byteToken(0xbf);
  for (const text of samples) {
    const ids = tok.tokenize(text);
    for (let cut = 1; cut <= ids.length; cut++) {
      const prompt = ids.slice(0, cut);
      const { contextText, deltas, rest } = stream(tok, prompt, ids.slice(cut));
      assert.equal(contextText + deltas.join("") + rest, text, `${JSON.stringify(text)} cut at ${cut}`);
      // Unless the cut splits a character's byte tokens, the prompt's own full decode is the context text.
      if (cut === ids.length || !isContinuationByte(ids[cut])) assert.equal(contextText, tok.detokenize(prompt));
    }
  }
});
