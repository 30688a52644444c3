"use strict";
// quantize(): float round trips are exact, q/k rows land in GGUF's rotary order, metadata and tokenizers carry
// over (SentencePiece, llama2.c, HF BPE with Llama 3.1 RoPE scaling), llama-quantize's type rules, and errors.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath, tensorBytes } = require("./helpers/models.js");
const { quantize, loadModel, InvalidArgumentError, ModelFormatError, UnsupportedModelError, QUANTIZE_TYPES } = require("../dist/cjs/index.js");
const { writeTinyModel } = require("./helpers/tiny-model.js");
const { readGguf } = require("../dist/cjs/formats/gguf.js");
const { parseModel } = require("../dist/cjs/formats/detect.js");
const { chooseTensorType, useMoreBits } = require("../dist/cjs/quantize/tensor-types.js");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "quantize-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const out = (name) => path.join(tmp, name);
const CLI = path.resolve(__dirname, "..", "dist", "cjs", "cli", "main.js");


/** HF rotate-half rows → GGUF interleaved rows, per head (the reference permutation, written out plainly). */
function hfToGgufRows(buf, rows, rowBytes, headDim) {
  const outBuf = Buffer.alloc(buf.length);
  for (let r = 0; r < rows; r++) {
    const head = Math.floor(r / headDim), j = r % headDim, half = headDim / 2;
    const to = head * headDim + (j < half ? 2 * j : 2 * (j - half) + 1);
    buf.copy(outBuf, to * rowBytes, r * rowBytes, (r + 1) * rowBytes);
  }
  return outBuf;
}

test("f32 → f32: every tensor and every metadata key of stories260K.gguf carried over unchanged", async () => {
  const src = DEFAULT_MODEL;
  const result = await quantize(src, out("s260-f32.gguf"), { type: "f32" });
  assert.equal(result.fileType, 0);
  const a = readGguf(src);
  const b = readGguf(result.path);
  assert.equal(b.tensors.length, a.tensors.length);
  for (const t of a.tensors) {
    const u = b.tensors.find((x) => x.name === t.name);
    assert.deepEqual(u.dims, t.dims, t.name);
    assert.ok(tensorBytes(result.path, u).equals(tensorBytes(src, t)), t.name);
  }
  for (const [key, value] of a.metadata) {
    assert.deepEqual(b.metadata.get(key), value, key);
    assert.equal(b.metadataTypes.get(key), a.metadataTypes.get(key), key);
  }
  assert.equal(b.metadata.get("general.file_type"), 0);
  assert.equal(b.metadata.get("general.quantization_version"), 2);
});

test("llama2.c .bin + tokenizer.bin → GGUF: the SPM vocab llama.cpp's converter wrote, same greedy text", NEEDS_REFERENCE_MODELS, async () => {
  const result = await quantize(modelPath("tinystories", "stories260K.bin"), out("s260-bin.gguf"), {
    type: "f32",
    tokenizer: modelPath("tinystories", "tok512.bin"),
  });
  const ours = readGguf(result.path).metadata;
  const ref = readGguf(DEFAULT_MODEL).metadata;
  for (const key of ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"]) assert.deepEqual(ours.get(key), ref.get(key), key);
  const model = await loadModel(result.path, { threads: 1 });
  try {
    assert.equal((await model.complete("Once upon a time", { temperature: 0, maxTokens: 10 })).text, ", there was a little girl named Lily");
  } finally {
    await model.dispose();
  }
});

test("HF bf16 → bf16: matrices bit-identical (q/k rows in GGUF rotary order), norms f32, llama.* and SPM keys", NEEDS_REFERENCE_MODELS, async () => {
  const dir = modelPath("trained", "sotu-l2-23m");
  const hf = await parseModel(dir);
  const result = await quantize(dir, out("sotu-bf16.gguf"), { type: "bf16" });
  const g = readGguf(result.path);
  for (const t of hf.tensors) {
    const u = g.tensors.find((x) => x.name === t.name);
    const src = tensorBytes(hf.files[t.file], t);
    const got = tensorBytes(result.path, u);
    if (t.shape.length === 1) {
      assert.equal(u.ggmlType, 0, t.name);
      for (let i = 0; i < t.shape[0]; i++) assert.equal(got.readUInt16LE(4 * i + 2), src.readUInt16LE(2 * i), t.name);
      assert.equal(got.readUInt16LE(0), 0);
      continue;
    }
    assert.equal(u.ggmlType, 30, t.name);
    const rotary = /attn_[qk]\.weight$/.test(t.name);
    const expected = rotary ? hfToGgufRows(src, t.shape[0], t.shape[1] * 2, hf.config.headDim) : src;
    assert.ok(got.equals(expected), t.name);
  }
  const m = g.metadata;
  const expected = {
    "general.architecture": "llama", "general.name": "sotu-l2-23m", "general.file_type": 32,
    "llama.context_length": 1024, "llama.embedding_length": 256, "llama.block_count": 8, "llama.feed_forward_length": 768,
    "llama.rope.dimension_count": 32, "llama.rope.freq_base": 10000, "llama.attention.head_count": 8,
    "llama.attention.head_count_kv": 4, "llama.attention.layer_norm_rms_epsilon": Math.fround(1e-5), "llama.vocab_size": 32000,
    "tokenizer.ggml.model": "llama", "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
    "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": true,
  };
  for (const [key, value] of Object.entries(expected)) assert.equal(m.get(key), value, key);
  // The vocabulary equals the one llama.cpp's converter wrote from the same tokenizer.model.
  const ref = readGguf(modelPath("trained", "sotu-l2-23m-gguf", "sotu-l2-23m-q8_0.gguf")).metadata;
  for (const key of ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"]) assert.deepEqual(m.get(key), ref.get(key), key);
});

test("the Meta checkpoint (interleaved q/k) and the HF directory (rotate-half) give the same f32 GGUF tensors", NEEDS_REFERENCE_MODELS, async () => {
  const fromMeta = await quantize(modelPath("trained", "sotu-l2-23m-meta"), out("meta-f32.gguf"), { type: "f32", threads: 1 });
  const fromHf = await quantize(modelPath("trained", "sotu-l2-23m"), out("hf-f32.gguf"), { type: "f32" });
  const a = readGguf(fromMeta.path);
  const b = readGguf(fromHf.path);
  for (const t of a.tensors) {
    assert.ok(tensorBytes(a.path, t).equals(tensorBytes(b.path, b.tensors.find((x) => x.name === t.name))), t.name);
  }
});

test("HF Llama 3.1 (BPE tokenizer.json, llama3 RoPE scaling, tied) → f16 GGUF: rope_freqs.weight, gpt2 vocab, same predictions", NEEDS_REFERENCE_MODELS, async () => {
  const dir = modelPath("trained", "sotu-l3-26m");
  const result = await quantize(dir, out("l3-f16.gguf"), { type: "f16" });
  const g = readGguf(result.path);
  const m = g.metadata;
  assert.equal(m.get("tokenizer.ggml.model"), "gpt2");
  assert.equal(m.get("tokenizer.ggml.pre"), "llama-bpe");
  assert.equal(m.get("tokenizer.ggml.tokens").length, 128256);
  assert.equal(m.get("tokenizer.ggml.tokens")[128000], "<|begin_of_text|>");
  assert.equal(m.get("tokenizer.ggml.token_type")[128000], 3);
  assert.equal(m.get("tokenizer.ggml.merges").length, 280147);
  assert.equal(m.get("tokenizer.ggml.bos_token_id"), 128000);
  assert.equal(m.get("general.file_type"), 1);
  assert.ok(!g.tensors.some((t) => t.name === "output.weight"), "tied embeddings stay tied");
  const freqs = g.tensors.find((t) => t.name === "rope_freqs.weight");
  assert.deepEqual([freqs.dims, freqs.ggmlType], [[16], 0]);
  const factors = tensorBytes(result.path, freqs);
  // Llama 3.1 scaling with factor 8: high frequencies unscaled, low ones divided by 8, a smooth band between.
  assert.equal(factors.readFloatLE(0), 1);
  assert.equal(factors.readFloatLE(60), 8);

  const reference = JSON.parse(fs.readFileSync(path.join(dir, "reference-public.json"), "utf8"));
  const hf = await loadModel(dir, { threads: 2, contextSize: 128 });
  const gguf = await loadModel(result.path, { threads: 2, contextSize: 128 });
  try {
    const { prompt, ids, argmax } = reference.cases[0];
    assert.deepEqual(gguf.tokenize(prompt, { addBos: true }), ids);
    const [a, b] = [await hf.evaluate(ids), await gguf.evaluate(ids)];
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assert.ok(worst < 0.05, `f16 weights move the logits by at most 0.05 (moved ${worst})`);
    assert.equal(b.reduce((best, v, i) => (v > b[best] ? i : best), 0), argmax[argmax.length - 1]);
  } finally {
    await hf.dispose();
    await gguf.dispose();
  }
});

test("llama.cpp's type rules: output to q6_K, the _S and _M layers, fallbacks for rows that are not whole blocks", () => {
  const layers = 8;
  const kind = (name, type, mix, cols = 256, tiedEmbeddings = false) =>
    chooseTensorType({ name, shape: [512, cols], layers, heads: 8, kvHeads: 4, tiedEmbeddings }, type, mix);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].filter((l) => useMoreBits(l, layers)), [0, 3, 6, 7]);
  assert.deepEqual(kind("output.weight", "q4_0"), { type: "q6_K" });
  assert.deepEqual(kind("output.weight", "q8_0"), { type: "q8_0" });
  assert.deepEqual(kind("token_embd.weight", "q4_0"), { type: "q4_0" });
  assert.deepEqual(kind("token_embd.weight", "q4_0", undefined, 256, true), { type: "q6_K" });
  assert.deepEqual(kind("blk.3.attn_v.weight", "q4_K", "q4_K_M"), { type: "q6_K" });
  assert.deepEqual(kind("blk.4.ffn_down.weight", "q4_K", "q4_K_M"), { type: "q4_K" });
  assert.deepEqual(kind("blk.4.attn_v.weight", "q4_K"), { type: "q4_K" });
  // Q4_K_S (plain q4_K too): q5_K in attn_v of the first 4 layers and ffn_down of the first eighth.
  for (const [type, mix] of [["q4_K"], ["Q4_K_S"], ["q4_K", "q4_K_S"]]) {
    assert.deepEqual(kind("blk.3.attn_v.weight", type, mix), { type: "q5_K" });
    assert.deepEqual(kind("blk.0.ffn_down.weight", type, mix), { type: "q5_K" });
    assert.deepEqual(kind("blk.1.ffn_down.weight", type, mix), { type: "q4_K" });
    assert.deepEqual(kind("blk.0.attn_q.weight", type, mix), { type: "q4_K" });
  }
  // Q5_K_M: q6_K where Q4_K_M has it; Q5_K_S: q5_K throughout.
  assert.deepEqual(kind("blk.6.ffn_down.weight", "Q5_K_M"), { type: "q6_K" });
  assert.deepEqual(kind("blk.6.attn_v.weight", "q5_K", "q5_K_M"), { type: "q6_K" });
  assert.deepEqual(kind("blk.5.attn_v.weight", "Q5_K_M"), { type: "q5_K" });
  assert.deepEqual(kind("blk.0.attn_v.weight", "Q5_K_S"), { type: "q5_K" });
  assert.deepEqual(kind("output.weight", "Q5_K_S"), { type: "q6_K" });
  // Q3_K_M: attn_v q5_K in the first 2 layers, q4_K after; attn_output q4_K; ffn_down q5_K in the first sixteenth.
  assert.deepEqual(kind("blk.1.attn_v.weight", "Q3_K_M"), { type: "q5_K" });
  assert.deepEqual(kind("blk.2.attn_v.weight", "q3_K", "q3_K_M"), { type: "q4_K" });
  assert.deepEqual(kind("blk.5.attn_output.weight", "Q3_K_M"), { type: "q4_K" });
  assert.deepEqual(kind("blk.0.ffn_down.weight", "Q3_K_M"), { type: "q4_K" }); // 8 layers: no sixteenth
  assert.deepEqual(chooseTensorType({ name: "blk.1.ffn_down.weight", shape: [512, 256], layers: 32, heads: 8, kvHeads: 8, tiedEmbeddings: false }, "Q3_K_M"), { type: "q5_K" });
  assert.deepEqual(kind("blk.5.ffn_up.weight", "Q3_K_M"), { type: "q3_K" });
  // Q3_K_L: q5_K in all three; Q3_K_S (plain q3_K too): q3_K throughout, output q6_K.
  for (const name of ["blk.5.attn_v.weight", "blk.5.attn_output.weight", "blk.5.ffn_down.weight"]) assert.deepEqual(kind(name, "Q3_K_L"), { type: "q5_K" });
  for (const name of ["blk.0.attn_v.weight", "blk.5.attn_output.weight", "blk.0.ffn_down.weight"]) assert.deepEqual(kind(name, "q3_K"), { type: "q3_K" });
  assert.deepEqual(kind("output.weight", "Q3_K_S"), { type: "q6_K" });
  // Q2_K: attn_v q3_K (q4_K from 4 query heads per KV head), ffn_down and attn_output q3_K.
  assert.deepEqual(kind("blk.3.attn_v.weight", "Q2_K"), { type: "q3_K" });
  assert.deepEqual(chooseTensorType({ name: "blk.3.attn_v.weight", shape: [512, 256], layers, heads: 8, kvHeads: 2, tiedEmbeddings: false }, "q2_K"), { type: "q4_K" });
  assert.deepEqual(kind("blk.3.ffn_down.weight", "Q2_K"), { type: "q3_K" });
  assert.deepEqual(kind("blk.3.attn_output.weight", "Q2_K"), { type: "q3_K" });
  assert.deepEqual(kind("blk.3.ffn_gate.weight", "Q2_K"), { type: "q2_K" });
  // IQ4_NL / IQ4_XS: q5_K in ffn_down of the first eighth, and in attn_v from 4 query heads per KV head.
  for (const type of ["IQ4_NL", "iq4_xs"]) {
    assert.deepEqual(kind("blk.0.ffn_down.weight", type), { type: "q5_K" });
    assert.deepEqual(kind("blk.1.ffn_down.weight", type), { type: type.toLowerCase() });
    assert.deepEqual(kind("blk.0.attn_v.weight", type), { type: type.toLowerCase() });
    assert.deepEqual(chooseTensorType({ name: "blk.5.attn_v.weight", shape: [512, 256], layers, heads: 8, kvHeads: 2, tiedEmbeddings: false }, type), { type: "q5_K" });
    assert.deepEqual(kind("output.weight", type), { type: "q6_K" });
  }
  assert.deepEqual(kind("blk.3.attn_q.weight", "IQ4_XS", undefined, 96), { type: "iq4_nl", fallbackFrom: "iq4_xs" });
  // llama.cpp's fallback for q3_K rows that are not whole blocks is q4_0.
  assert.deepEqual(kind("blk.0.attn_q.weight", "q3_K", undefined, 96), { type: "q4_0", fallbackFrom: "q3_K" });
  // A 70B (80 layers, grouped-query attention): attn_v that would be q3_K or q4_K is q5_K.
  const at80 = (name, type, kvHeads) => chooseTensorType({ name, shape: [1024, 8192], layers: 80, heads: 64, kvHeads, tiedEmbeddings: false }, type);
  assert.deepEqual(at80("blk.40.attn_v.weight", "Q4_K_M", 8), { type: "q5_K" });
  assert.deepEqual(at80("blk.40.attn_v.weight", "Q4_K_M", 64), { type: "q4_K" });
  assert.deepEqual(at80("blk.42.attn_v.weight", "Q4_K_M", 8), { type: "q6_K" });
  assert.deepEqual(at80("blk.40.attn_q.weight", "Q4_K_M", 8), { type: "q4_K" });
  assert.deepEqual(at80("blk.40.attn_v.weight", "Q3_K_S", 8), { type: "q5_K" });
  // llama.cpp's fallbacks for rows that are not whole 256-value blocks: q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0.
  assert.deepEqual(kind("blk.0.attn_q.weight", "q4_K", undefined, 64), { type: "q5_0", fallbackFrom: "q4_K" });
  assert.deepEqual(kind("blk.0.attn_v.weight", "q4_K", undefined, 64), { type: "q5_1", fallbackFrom: "q5_K" });
  assert.deepEqual(kind("blk.3.attn_v.weight", "q4_K", "q4_K_M", 64), { type: "q8_0", fallbackFrom: "q6_K" });
  assert.deepEqual(kind("blk.0.ffn_down.weight", "q4_0", undefined, 172), { type: "f16", fallbackFrom: "q4_0" });
  assert.deepEqual(kind("output.weight", "q4_K", undefined, 64), { type: "q8_0" });
  assert.deepEqual(chooseTensorType({ name: "blk.0.attn_norm.weight", shape: [256], layers, heads: 8, kvHeads: 4, tiedEmbeddings: false }, "q4_0"), { type: "f32" });
  assert.deepEqual(kind("blk.0.ffn_up.weight", "bf16"), { type: "bf16" });
});

test("bad inputs: unknown type, mix without its base, unreadable input, unsupported tensor type, unwritable output; nothing left behind", async () => {
  const src = DEFAULT_MODEL;
  await assert.rejects(quantize(src, out("x.gguf"), { type: "iq2_xs" }), (e) => e instanceof InvalidArgumentError && e.message.includes(QUANTIZE_TYPES.join(", ")));
  await assert.rejects(quantize(src, out("x.gguf"), { type: "q4_0", mix: "q4_K_M" }), InvalidArgumentError);
  await assert.rejects(quantize(src, out("x.gguf"), { type: "Q4_K_M", mix: "q4_K_M" }), InvalidArgumentError);
  await assert.rejects(quantize("/nonexistent/model.gguf", out("x.gguf"), { type: "f32" }), (e) => e instanceof ModelFormatError && e.message.includes("/nonexistent/model.gguf"));
  const noDir = path.join(tmp, "no-such-dir", "x.gguf");
  await assert.rejects(quantize(src, noDir, { type: "f32" }), (e) => e instanceof InvalidArgumentError && e.message.includes(noDir));
  await assert.rejects(quantize(src, src, { type: "f32" }), /is the input file/);
  // An input tensor of a ggml type we cannot read (Q8_1): the type stamped into a tiny model's header.
  const q81 = out("q8_1-input.gguf");
  const bytes = fs.readFileSync(writeTinyModel({ dim: 32 }));
  const name = Buffer.from("blk.0.attn_q.weight");
  const typeAt = bytes.indexOf(name) + name.length + 4 + 2 * 8; // after nDims (u32) and two dims (u64)
  bytes.writeUInt32LE(9, typeAt);
  fs.writeFileSync(q81, bytes);
  await assert.rejects(quantize(q81, out("x.gguf"), { type: "q8_0" }), (e) => e instanceof UnsupportedModelError && /blk\.0\.attn_q\.weight has type Q8_1/.test(e.message));
  // A failure half way (here: the progress callback throws) leaves neither the output nor its temporary file.
  const failed = out("failed.gguf");
  await assert.rejects(quantize(src, failed, { type: "f32", onProgress: (p) => { if (p.tensorsDone === 3) throw new Error("disk on fire"); } }), /disk on fire/);
  assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.startsWith("failed")), []);
  assert.ok(!fs.existsSync(path.join(tmp, "x.gguf")));
});

test("CLI: quantize with --quantization-encoding, usage errors exit 2 and list the types, model errors exit 1", () => {
  const cli = (...args) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  const target = out("cli-f16.gguf");
  const ok = cli("quantize", DEFAULT_MODEL, target, "--quantization-encoding", "f16");
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /wrote .*cli-f16\.gguf \(F16\): 48 tensors \(f16 × 37, f32 × 11\)/);
  assert.equal(readGguf(target).metadata.get("general.file_type"), 1);
  const bad = cli("quantize", "a", "b", "--type", "iq2_xs");
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--type must be one of q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs, f16, bf16, f32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS, F16, BF16, F32 /);
  assert.equal(cli("quantize", "a", "--type", "f32").status, 2);
  const missing = cli("quantize", "/nonexistent/m.gguf", out("y.gguf"), "--type", "f32");
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /ModelFormatError: .*\/nonexistent\/m\.gguf/);
});
