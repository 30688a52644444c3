"use strict";
// Our quantized GGUFs of trained/sotu-l2-23m against llama-quantize's own (trained/sotu-l2-23m-gguf): every tensor
// gets the same type and the same block bytes, under each type; the results load and generate.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath, tensorBytes } = require("./helpers/models.js");
const { quantize, loadModel } = require("../dist/cjs/index.js");
const { readGguf } = require("../dist/cjs/formats/gguf.js");
const { GGML_TYPES } = require("../dist/cjs/formats/ggml-types.js");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "quantize-llama-cpp-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));


const CASES = [
  { file: "q8_0", options: { type: "q8_0" }, fileType: 7 },
  { file: "q4_0", options: { type: "q4_0" }, fileType: 2 },
  { file: "q6_K", options: { type: "q6_K" }, fileType: 18 },
  { file: "q4_K_M", options: { type: "q4_K", mix: "q4_K_M" }, fileType: 15 },
];

for (const { file, options, fileType } of CASES) {
  test(`${file}: same type and block bytes as llama-quantize for all 75 tensors`, NEEDS_REFERENCE_MODELS, async () => {
    const result = await quantize(modelPath("trained", "sotu-l2-23m"), path.join(tmp, `${file}.gguf`), options);
    assert.deepEqual(result.notices, []);
    const ours = readGguf(result.path);
    const ref = readGguf(modelPath("trained", "sotu-l2-23m-gguf", `sotu-l2-23m-${file}.gguf`));
    assert.equal(ours.metadata.get("general.file_type"), fileType);
    assert.equal(ours.tensors.length, ref.tensors.length);
    for (const t of ref.tensors) {
      const u = ours.tensors.find((x) => x.name === t.name);
      assert.equal(GGML_TYPES.get(u.ggmlType).name, GGML_TYPES.get(t.ggmlType).name, t.name);
      assert.deepEqual(u.dims, t.dims, t.name);
      assert.ok(tensorBytes(result.path, u).equals(tensorBytes(ref.path, t)), `${t.name} (${GGML_TYPES.get(t.ggmlType).name}) bytes differ`);
    }
    for (const key of ["llama.context_length", "llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
      "llama.rope.dimension_count", "llama.rope.freq_base", "llama.attention.head_count", "llama.attention.head_count_kv",
      "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
      "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "general.quantization_version"]) {
      assert.deepEqual(ours.metadata.get(key), ref.metadata.get(key), key);
    }
  });
}

test("the quantized files load and generate; stories260K (dim 64) falls back to q5_0/q5_1/q8_0/f16 with notices", NEEDS_REFERENCE_MODELS, async () => {
  const q4 = await loadModel(path.join(tmp, "q4_0.gguf"), { threads: 2, contextSize: 64 });
  try {
    assert.equal(q4.info.weightType, "q4_0");
    const r = await q4.complete("The President said", { temperature: 0, maxTokens: 12 });
    assert.equal(r.tokens.length, 12);
    assert.match(r.text, /\w+/);
  } finally {
    await q4.dispose();
  }
  const result = await quantize(DEFAULT_MODEL, path.join(tmp, "s260-q4_K.gguf"), { type: "q4_K" });
  const types = Object.fromEntries(result.tensors.map((t) => [t.name, t.type]));
  assert.equal(types["blk.0.attn_q.weight"], "q5_0"); // llama.cpp's fallback for q4_K
  assert.equal(types["blk.0.attn_v.weight"], "q5_1"); // Q4_K_S's q5_K, whose fallback is q5_1
  assert.equal(types["blk.0.ffn_down.weight"], "f16"); // row length 172 is no whole number of 32-blocks
  assert.equal(types["output.weight"], "q8_0");
  assert.ok(result.notices.some((n) => n.startsWith("blk.0.ffn_down.weight: row length 172 is not a whole number of q4_K blocks; written as f16")));
  const model = await loadModel(result.path, { threads: 1 });
  try {
    const r = await model.complete("Once upon a time", { temperature: 0, maxTokens: 8 });
    assert.match(r.text, /^, there was a little girl/); // what the f32 model says too
  } finally {
    await model.dispose();
  }
});
