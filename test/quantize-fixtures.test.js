"use strict";
// Our quantizer against llama.cpp's llama-quantize, file type by file type: test/fixtures/llama-quantize/*.json hold,
// for each tensor of llama-quantize's output from the f32 GGUF of trained/sotu-l2-23m, its type and the sha256 of its
// bytes (scripts/llama-quantize-fixtures.js made them). We quantize the HF directory (bf16, exact in f32) with the
// file type's name and compare tensor by tensor; then each output loads, scores a sane perplexity and generates.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { modelPath, skipFileWithoutReferenceModels, tensorBytes } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;
const { quantize, loadModel, perplexity } = require("../dist/cjs/index.js");
const { readGguf } = require("../dist/cjs/formats/gguf.js");
const { GGML_TYPES } = require("../dist/cjs/formats/ggml-types.js");

const FIXTURES = path.join(__dirname, "fixtures", "llama-quantize");
const FILE_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"];
// Over the whole held-out text llama-perplexity gives 70.85 for the f32 weights and 72.1 (+1.8%) for Q4_0
// (MANIFEST.md). On the windows scored here each file must stay within -1% .. +5% of the bf16 weights it came from
// (+10% for the 3-bit types, +25% for Q2_K): a wrong block layout or rule sends perplexity up by far more.
const pplRatioRange = (fileType) => [0.99, fileType === "Q2_K" ? 1.25 : fileType.startsWith("Q3_K") ? 1.1 : 1.05];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "quantize-fixtures-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const outputOf = (fileType) => path.join(tmp, `${fileType}.gguf`);

for (const fileType of FILE_TYPES) {
  test(`${fileType}: every tensor has llama-quantize's type and bytes`, async () => {
    const fixture = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${fileType}.json`), "utf8"));
    const result = await quantize(modelPath("trained", "sotu-l2-23m"), outputOf(fileType), { type: fileType, threads: 2 });
    assert.deepEqual(result.notices, []);
    const ours = readGguf(result.path);
    assert.equal(ours.metadata.get("general.file_type"), fixture.fileType);
    assert.deepEqual(ours.tensors.map((t) => t.name).sort(), fixture.tensors.map((t) => t.name).sort());
    const differing = [];
    for (const expected of fixture.tensors) {
      const t = ours.tensors.find((u) => u.name === expected.name);
      const type = GGML_TYPES.get(t.ggmlType).name;
      const sha256 = crypto.createHash("sha256").update(tensorBytes(result.path, t)).digest("hex");
      if (type !== expected.type || sha256 !== expected.sha256) differing.push(`${t.name}: ${type} vs llama-quantize's ${expected.type}${type === expected.type ? " (bytes differ)" : ""}`);
    }
    assert.deepEqual(differing, []);
  });
}

test("each output loads, scores a sane perplexity on held-out text and generates greedily", async (t) => {
  const text = fs.readFileSync(modelPath("trained", "heldout.txt"), "utf8");
  const measure = async (model) => perplexity(model, text, { contextSize: 256, llamaCppWindows: true, maxWindows: 8 });
  const bf16 = await loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 2, contextSize: 257 });
  const base = await measure(bf16).finally(() => bf16.dispose());
  t.diagnostic(`bf16: PPL ${base.ppl.toFixed(3)} over ${base.scored} tokens`);
  for (const fileType of FILE_TYPES) {
    const model = await loadModel(outputOf(fileType), { threads: 2, contextSize: 257 });
    try {
      const r = await measure(model);
      const g = await model.complete("The President said", { temperature: 0, maxTokens: 16 });
      t.diagnostic(`${fileType}: PPL ${r.ppl.toFixed(3)}; "${g.text}"`);
      const ratio = r.ppl / base.ppl;
      const [low, high] = pplRatioRange(fileType);
      assert.ok(ratio > low && ratio < high, `${fileType}: PPL ${r.ppl} is ${ratio} times the bf16 weights'`);
      assert.equal(g.tokens.length, 16);
      assert.match(g.text, /[a-z]+ [a-z]+/);
    } finally {
      await model.dispose();
    }
  }
});

test("info names each output's file type as llama.cpp does", () => {
  const { spawnSync } = require("node:child_process");
  const cli = path.join(__dirname, "..", "dist", "cjs", "cli", "main.js");
  const descriptions = { Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1", Q8_0: "Q8_0", Q2_K: "Q2_K - Medium", Q3_K_S: "Q3_K - Small", Q3_K_M: "Q3_K - Medium", Q3_K_L: "Q3_K - Large", Q4_K_S: "Q4_K - Small", Q4_K_M: "Q4_K - Medium", Q5_K_S: "Q5_K - Small", Q5_K_M: "Q5_K - Medium", Q6_K: "Q6_K", IQ4_NL: "IQ4_NL - 4.5 bpw", IQ4_XS: "IQ4_XS - 4.25 bpw" };
  for (const fileType of FILE_TYPES) {
    const r = spawnSync(process.execPath, [cli, "info", outputOf(fileType), "--json"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const { fileType: reported } = JSON.parse(r.stdout);
    assert.deepEqual(reported, { code: readGguf(outputOf(fileType)).metadata.get("general.file_type"), name: fileType, description: descriptions[fileType] });
  }
  const text = spawnSync(process.execPath, [cli, "info", outputOf("Q5_K_M")], { encoding: "utf8" });
  assert.match(text.stdout, /^file type +Q5_K_M \(Q5_K - Medium; general\.file_type 17\)$/m);
});
