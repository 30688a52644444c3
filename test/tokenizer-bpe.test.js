"use strict";
// The byte-level BPE tokenizer against llama.cpp's vocab test vectors, the trained model's HF reference ids, and
// round trips, from all three sources: tokenizer.json, Meta's tokenizer.model and a GGUF vocab.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const { loadBpeTokenizer } = require("../dist/cjs/tokenizer/bpe.js");
const { readGguf } = require("../dist/cjs/formats/gguf.js");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;

/**
 * llama.cpp's test vectors: .inp holds the cases, each followed by "\n__ggml_vocab_test__\n" (so a case may be empty
 * or end in newlines of its own); .out holds one line per case of space-separated ids, without BOS.
 */
function vocabCases(name) {
  const inputs = fs.readFileSync(modelPath("vocab", `${name}.inp`), "utf8").split("\n__ggml_vocab_test__\n");
  assert.equal(inputs.pop(), "", "the .inp ends with a separator");
  const outputs = fs.readFileSync(modelPath("vocab", `${name}.out`), "utf8").split("\n");
  assert.equal(outputs.pop(), "", "the .out ends with a newline");
  assert.equal(outputs.length, inputs.length);
  return inputs.map((text, i) => ({ text, ids: outputs[i].split(" ").filter(Boolean).map(Number) }));
}

const once = (load) => {
  let promise;
  return () => (promise ??= load());
};
const llama3Json = once(() =>
  loadBpeTokenizer({ kind: "hf-json", path: modelPath("llama3", "tokenizer.json"), configPath: modelPath("llama3", "tokenizer_config.json") }),
);
const llama3Tiktoken = once(() => loadBpeTokenizer({ kind: "tiktoken", path: modelPath("llama3", "tokenizer.model") }));
const deepseekGguf = once(() =>
  loadBpeTokenizer({ kind: "gguf", path: modelPath("vocab", "ggml-vocab-deepseek-coder.gguf"), metadata: readGguf(modelPath("vocab", "ggml-vocab-deepseek-coder.gguf")).metadata }),
);

function checkVocabCases(tokenizer, name) {
  const cases = vocabCases(name);
  assert.equal(cases.length, 46);
  for (const [i, { text, ids }] of cases.entries()) {
    const got = tokenizer.tokenize(text, { addBos: false });
    assert.deepEqual(got, ids, `case ${i} ${JSON.stringify(text)}`);
    assert.equal(tokenizer.detokenize(got), text, `round trip of case ${i}`);
  }
}

test("Llama 3 tokenizer.json: every llama-bpe vocab case", async () => {
  checkVocabCases(await llama3Json(), "ggml-vocab-llama-bpe.gguf");
});

test("Llama 3 tokenizer.model (tiktoken): every llama-bpe vocab case", async () => {
  checkVocabCases(await llama3Tiktoken(), "ggml-vocab-llama-bpe.gguf");
});

test("deepseek-coder GGUF vocab: every case, through its own pre-tokenizer", async () => {
  checkVocabCases(await deepseekGguf(), "ggml-vocab-deepseek-coder.gguf");
});

test("Llama 3 ids, BOS, EOS and special flags agree between tokenizer.json and tokenizer.model", async () => {
  const [json, tiktoken] = [await llama3Json(), await llama3Tiktoken()];
  for (const t of [json, tiktoken]) {
    assert.equal(t.kind, "bpe");
    assert.equal(t.vocabSize, 128256);
    assert.equal(t.bosId, 128000);
    assert.deepEqual(t.eosIds, [128001, 128009]);
    assert.equal(t.addBosDefault, true);
  }
  const heldout = fs.readFileSync(modelPath("trained", "heldout.txt"), "utf8");
  assert.deepEqual(tiktoken.tokenize(heldout), json.tokenize(heldout));
  for (let id = 127990; id < 128256; id++) {
    assert.equal(tiktoken.isSpecial(id), json.isSpecial(id), `isSpecial(${id})`);
    assert.deepEqual(Buffer.from(tiktoken.tokenBytes(id)), Buffer.from(json.tokenBytes(id)), `tokenBytes(${id})`);
  }
});

test("trained sotu-l3-26m: prompt ids and greedy text match the HF reference", async () => {
  const tokenizer = await loadBpeTokenizer({
    kind: "hf-json",
    // The model dir's tokenizer.json is a link to this file.
    path: modelPath("llama3", "tokenizer.json"),
    configPath: modelPath("trained", "sotu-l3-26m", "tokenizer_config.json"),
  });
  const reference = JSON.parse(fs.readFileSync(modelPath("trained", "sotu-l3-26m", "reference-public.json"), "utf8"));
  assert.ok(reference.cases.length > 0);
  for (const c of reference.cases) {
    assert.deepEqual(tokenizer.tokenize(c.prompt, { addBos: true }), c.ids, c.prompt);
    assert.deepEqual(tokenizer.tokenize(c.prompt), c.ids, "BOS is added by default");
    assert.equal(tokenizer.detokenize(c.greedy48), c.greedy48_text, c.prompt);
  }
});

test("special tokens are parsed only on request and never printed", async () => {
  for (const tokenizer of [await llama3Json(), await llama3Tiktoken()]) {
    const text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    const parsed = tokenizer.tokenize(text, { addBos: false, special: true });
    assert.deepEqual(parsed, [128006, 882, 128007, 271, 13347, 128009]);
    assert.equal(tokenizer.detokenize(parsed), "user\n\nHi");
    const literal = tokenizer.tokenize(text, { addBos: false });
    assert.ok(literal.every((id) => !tokenizer.isSpecial(id)), "special strings are literal text by default");
    assert.equal(tokenizer.detokenize(literal), text);
    assert.deepEqual(tokenizer.tokenize("<|begin_of_text|>", { special: true }), [128000, 128000]);
    assert.equal(tokenizer.isSpecial(128000), true);
    assert.equal(tokenizer.isSpecial(13347), false);
    assert.equal(tokenizer.tokenBytes(128009).length, 0);
    assert.equal(Buffer.from(tokenizer.tokenBytes(9906)).toString(), "Hello");
    assert.equal(Buffer.from(tokenizer.tokenBytes(220)).toString(), " ", "no leading-space stripping");
    assert.equal(tokenizer.detokenize([220, 9906]), " Hello");
    assert.deepEqual([128009, 9906, 220, 271].map((id) => tokenizer.tokenText(id)), ["<|eot_id|>", "Hello", "Ġ", "ĊĊ"], "as tokenizer.json spells them");
  }
});

test("deepseek-coder GGUF: ids, control and user-defined tokens", async () => {
  const tokenizer = await deepseekGguf();
  assert.equal(tokenizer.vocabSize, 32256);
  assert.equal(tokenizer.bosId, 32013);
  assert.deepEqual(tokenizer.eosIds, [32014]);
  assert.equal(tokenizer.addBosDefault, true);
  assert.equal(tokenizer.isSpecial(32013), true);
  assert.equal(tokenizer.isSpecial(32009), false, "user-defined tokens are printed");
  // User-defined tokens ("ü" here) are cut out of the text even without {special: true}, as llama.cpp and HF do.
  assert.deepEqual(tokenizer.tokenize("Führer", { addBos: false }), [37, 32009, 71, 6247]);
  assert.equal(tokenizer.detokenize([37, 32009, 71, 6247]), "Führer");
  assert.deepEqual(tokenizer.tokenize("<｜end▁of▁sentence｜>", { addBos: false, special: true }), [32014]);
});

test("round trips of arbitrary Unicode, and invalid UTF-8 decodes to U+FFFD", async () => {
  const texts = [
    "naïve café — “quotes” ½ 中文字符 한국어 日本語の文 🦙🦙 \u0085NEL\u00a0nbsp\u3000ideographic space",
    "  leading and trailing spaces  \n\n\n\ttabs\r\nCRLF's 'Re 'LL 123456789 1,234.56",
    "\uFEFFbom 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{1F600}\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",
  ];
  for (const tokenizer of [await llama3Json(), await llama3Tiktoken(), await deepseekGguf()]) {
    for (const text of texts) assert.equal(tokenizer.detokenize(tokenizer.tokenize(text, { addBos: true })), text);
  }
  const tokenizer = await llama3Json();
  const bytes = tokenizer.tokenize("🦙", { addBos: false }); // four bytes, split over several tokens
  assert.ok(bytes.length > 1);
  assert.equal(tokenizer.detokenize(bytes.slice(0, 1)), "\uFFFD");
  assert.deepEqual(Buffer.concat(bytes.map((id) => tokenizer.tokenBytes(id))), Buffer.from("🦙"));
});
