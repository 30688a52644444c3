"use strict";
// `llama-napi convert` on the trained models, judged by their HF references: the converted GGUF tokenizes the prompts
// to HF's ids, continues them greedily with HF's text, and (f32) gives the source directory's logits within 1e-5.
// Also: the chat template and Llama 3.1 RoPE scaling (rope_freqs.weight) travel into the file and are used.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { loadModel } = require("../dist/cjs/index.js");
const { readGguf } = require("../dist/cjs/formats/gguf.js");
const { parseModel } = require("../dist/cjs/formats/detect.js");
const { ropeFrequencies } = require("../dist/cjs/native/rope.js");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;
const { maxAbsDiff } = require("./helpers/reference.js");

const CLI = path.resolve(__dirname, "..", "dist", "cjs", "cli", "main.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-convert-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Runs the convert command; returns the output path. */
function convert(dir, name, ...args) {
  const out = path.join(tmp, name);
  const r = spawnSync(process.execPath, [CLI, "convert", dir, out, "--threads", "2", ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^wrote /);
  return out;
}

const reference = (dir) => JSON.parse(fs.readFileSync(path.join(dir, "reference-public.json"), "utf8"));

/**
 * The greedy 48-token continuation of a case: ids and text as HF decoded them (the continuation alone, so without
 * the space SentencePiece writes before a first word; generate()'s text, following the prompt, keeps it).
 */
async function checkGreedy(model, c, where) {
  const { tokens, text } = await model.complete(c.prompt, { maxTokens: 48, temperature: 0 });
  assert.deepEqual(tokens, c.greedy48, `${where}: greedy ids`);
  assert.equal(model.detokenize(tokens), c.greedy48_text, `${where}: greedy text`);
  const asHfDecodes = model.info.tokenizer === "spm" ? text.replace(/^ /, "") : text;
  assert.equal(asHfDecodes, c.greedy48_text, `${where}: generated text`);
}

/** Each case: HF's prompt ids and greedy continuation; with `sourceLogits`, those logits within `tolerance`. */
async function checkAgainstSource(ggufPath, dir, { sourceLogits, tolerance }) {
  const model = await loadModel(ggufPath, { threads: 2, contextSize: 128 });
  try {
    assert.equal(model.info.format, "gguf");
    for (const [i, c] of reference(dir).cases.entries()) {
      assert.deepEqual(model.tokenize(c.prompt, { addBos: true }), c.ids, `case ${i} ids`);
      await checkGreedy(model, c, `case ${i}`);
      if (sourceLogits) {
        const diff = maxAbsDiff(await model.evaluate(c.ids), sourceLogits[i]);
        assert.ok(diff <= tolerance, `case ${i}: max |Δ| from the source directory's logits = ${diff}`);
      }
    }
  } finally {
    await model.dispose();
  }
}

/** The source directory's own logits for each case, and its greedy text (the HF path end to end). */
async function sourceLogits(dir) {
  const model = await loadModel(dir, { threads: 2, contextSize: 128 });
  try {
    const logits = [];
    for (const c of reference(dir).cases) {
      logits.push(await model.evaluate(c.ids));
      await checkGreedy(model, c, `${dir}: generate(${JSON.stringify(c.prompt)})`);
    }
    return logits;
  } finally {
    await model.dispose();
  }
}

test("sotu-l3-26m (HF, Llama 3 BPE, Llama 3.1 RoPE scaling) → GGUF f32 and bf16", async () => {
  const dir = modelPath("trained", "sotu-l3-26m");
  const logits = await sourceLogits(dir);

  const f32 = convert(dir, "l3-f32.gguf", "--type", "f32");
  await checkAgainstSource(f32, dir, { sourceLogits: logits, tolerance: 1e-5 });
  const bf16 = convert(dir, "l3-bf16.gguf"); // the default type: the input's own (bf16)
  assert.equal(readGguf(bf16).metadata.get("general.file_type"), 32, "MOSTLY_BF16");
  await checkAgainstSource(bf16, dir, { sourceLogits: logits, tolerance: 1e-5 });

  const m = readGguf(f32).metadata;
  assert.equal(m.get("general.file_type"), 0);
  assert.deepEqual(
    ["llama.context_length", "llama.rope.freq_base", "llama.attention.head_count", "llama.attention.head_count_kv"].map((k) => m.get(k)),
    [131072, 500000, 6, 2],
  );
  assert.equal(m.get("tokenizer.ggml.pre"), "llama-bpe");
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  assert.equal(m.get("tokenizer.chat_template"), tokenizerConfig.chat_template);

  // The scaling travels as rope_freqs.weight; the loader divides by those factors, giving HF's llama3 frequencies.
  const [hfConfig, ggufConfig] = [(await parseModel(dir)).config, (await parseModel(f32)).config];
  assert.equal(ggufConfig.ropeScaling, undefined);
  assert.equal(ggufConfig.ropeFreqFactors.length, 16);
  const [expected, got] = [ropeFrequencies(hfConfig), ropeFrequencies(ggufConfig)];
  got.forEach((f, i) => assert.ok(Math.abs(f - expected[i]) <= 1e-6 * expected[i], `frequency ${i}: ${f} vs ${expected[i]}`));
  assert.ok(expected.some((f, i) => f !== ropeFrequencies({ ...ggufConfig, ropeFreqFactors: undefined })[i]), "the factors matter");

  // The chat template works the same from the GGUF as from the directory.
  const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello" }];
  const [fromDir, fromGguf] = [await loadModel(dir, { threads: 1 }), await loadModel(f32, { threads: 1 })];
  try {
    assert.equal(fromGguf.chatTemplate, fromDir.chatTemplate);
    assert.deepEqual(fromGguf.applyChatTemplate(messages), fromDir.applyChatTemplate(messages));
    assert.deepEqual(fromGguf.info.eosIds, [128001, 128009]);
  } finally {
    await fromDir.dispose();
    await fromGguf.dispose();
  }
});

test("sotu-l2-23m (HF, Llama 2 SentencePiece) → GGUF f32", async () => {
  const dir = modelPath("trained", "sotu-l2-23m");
  const f32 = convert(dir, "l2-f32.gguf", "--type", "f32");
  await checkAgainstSource(f32, dir, { sourceLogits: await sourceLogits(dir), tolerance: 1e-5 });
  const m = readGguf(f32).metadata;
  assert.equal(m.get("tokenizer.ggml.model"), "llama");
  assert.equal(m.get("llama.context_length"), 1024);
  assert.equal(m.has("tokenizer.chat_template"), false, "the directory has no template to carry");
});

test("convert usage errors exit 2; a bad input exits 1 and leaves no output", () => {
  const cli = (...args) => spawnSync(process.execPath, [CLI, "convert", ...args], { encoding: "utf8" });
  assert.equal(cli().status, 2);
  assert.equal(cli(modelPath("trained", "sotu-l2-23m")).status, 2, "the output path is required");
  assert.equal(cli(modelPath("trained", "sotu-l2-23m"), path.join(tmp, "x.gguf"), "--type", "iq2_xs").status, 2);
  const out = path.join(tmp, "missing.gguf");
  const r = cli(path.join(tmp, "no-such-dir"), out);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /ModelFormatError: .*no-such-dir/);
  assert.equal(fs.existsSync(out), false);
});
