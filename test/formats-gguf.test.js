"use strict";
// GGUF reader and model descriptor: the real files in shared/models, and small GGUFs written here to break each rule.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { readGguf, parseGgufModel } = require("../dist/cjs/formats/gguf.js");
const { ModelFormatError, UnsupportedModelError } = require("../dist/cjs/errors.js");

const T = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STR: 8, ARR: 9, U64: 10, I64: 11, F64: 12 };

function encodeString(s) {
  const bytes = Buffer.from(s, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([len, bytes]);
}

function encodeValue(type, value) {
  const b = Buffer.alloc(8);
  switch (type) {
    case T.U8: case T.BOOL: b.writeUInt8(Number(value)); return b.subarray(0, 1);
    case T.I8: b.writeInt8(value); return b.subarray(0, 1);
    case T.U16: b.writeUInt16LE(value); return b.subarray(0, 2);
    case T.I16: b.writeInt16LE(value); return b.subarray(0, 2);
    case T.U32: b.writeUInt32LE(value); return b.subarray(0, 4);
    case T.I32: b.writeInt32LE(value); return b.subarray(0, 4);
    case T.F32: b.writeFloatLE(value); return b.subarray(0, 4);
    case T.U64: b.writeBigUInt64LE(BigInt(value)); return b;
    case T.I64: b.writeBigInt64LE(BigInt(value)); return b;
    case T.F64: b.writeDoubleLE(value); return b;
    case T.STR: return encodeString(value);
    case T.ARR: {
      // value: [itemType, items]
      const [itemType, items] = value;
      const head = Buffer.alloc(12);
      head.writeUInt32LE(itemType);
      head.writeBigUInt64LE(BigInt(items.length), 4);
      return Buffer.concat([head, ...items.map((v) => encodeValue(itemType, v))]);
    }
  }
  throw new Error(`bad type ${type}`);
}

/** Writes a GGUF: kv is [key, type, value][]; tensors are {name, dims (ne order), type, bytes}; data is zeros. */
function writeGguf(file, { version = 3, kv = [], tensors = [], alignment = 32, tensorCount, patchOffset } = {}) {
  const parts = [Buffer.from("GGUF")];
  const head = Buffer.alloc(20);
  head.writeUInt32LE(version);
  head.writeBigUInt64LE(BigInt(tensorCount ?? tensors.length), 4);
  head.writeBigUInt64LE(BigInt(kv.length), 12);
  parts.push(head);
  for (const [key, type, value] of kv) {
    const t = Buffer.alloc(4);
    t.writeUInt32LE(type);
    parts.push(encodeString(key), t, encodeValue(type, value));
  }
  let offset = 0;
  for (const tensor of tensors) {
    const info = Buffer.alloc(4 + 8 * tensor.dims.length + 4 + 8);
    info.writeUInt32LE(tensor.dims.length);
    tensor.dims.forEach((d, i) => info.writeBigUInt64LE(BigInt(d), 4 + 8 * i));
    info.writeUInt32LE(tensor.type, 4 + 8 * tensor.dims.length);
    info.writeBigUInt64LE(BigInt(patchOffset?.[tensor.name] ?? offset), 8 + 8 * tensor.dims.length);
    parts.push(encodeString(tensor.name), info);
    offset += Math.ceil(tensor.bytes / alignment) * alignment;
  }
  let header = Buffer.concat(parts);
  header = Buffer.concat([header, Buffer.alloc((alignment - (header.length % alignment)) % alignment)]);
  fs.writeFileSync(file, Buffer.concat([header, Buffer.alloc(offset)]));
  return file;
}

/** A tiny valid llama GGUF (dim 8, 1 layer, 2 heads, 1 kv head, hidden 16, vocab 4), optionally altered. */
function tinyLlama({ kv = {}, tensorType = {}, dims = {}, ...rest } = {}) {
  const base = {
    "general.architecture": [T.STR, "llama"],
    "llama.embedding_length": [T.U32, 8],
    "llama.block_count": [T.U32, 1],
    "llama.feed_forward_length": [T.U32, 16],
    "llama.attention.head_count": [T.U32, 2],
    "llama.attention.head_count_kv": [T.U32, 1],
    "llama.attention.layer_norm_rms_epsilon": [T.F32, 1e-5],
    "llama.context_length": [T.U32, 64],
    "tokenizer.ggml.tokens": [T.ARR, [T.STR, ["<unk>", "<s>", "</s>", "a"]]],
    "tokenizer.ggml.bos_token_id": [T.U32, 1],
    "tokenizer.ggml.eos_token_id": [T.U32, 2],
  };
  for (const [k, v] of Object.entries(kv)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  const shapes = {
    "token_embd.weight": [8, 4], "output_norm.weight": [8], "output.weight": [8, 4],
    "blk.0.attn_norm.weight": [8], "blk.0.attn_q.weight": [8, 8], "blk.0.attn_k.weight": [8, 4],
    "blk.0.attn_v.weight": [8, 4], "blk.0.attn_output.weight": [8, 8], "blk.0.ffn_norm.weight": [8],
    "blk.0.ffn_gate.weight": [8, 16], "blk.0.ffn_up.weight": [8, 16], "blk.0.ffn_down.weight": [16, 8],
    ...dims,
  };
  const tensors = Object.entries(shapes).map(([name, d]) => {
    const type = tensorType[name] ?? 0;
    const elementBytes = { 0: 4, 1: 2, 30: 2, 8: 34 / 32 }[type] ?? 4;
    return { name, dims: d, type, bytes: d.reduce((a, b) => a * b, 1) * elementBytes };
  });
  return { kv: Object.entries(base).map(([k, [t, v]]) => [k, t, v]), tensors, ...rest };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "formats-gguf-"));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpFile = (name) => path.join(tmp, `${counter++}-${name}`);

/** Asserts `fn` throws an error of class `cls` whose message names `file` and matches `pattern`. */
function assertThrowsNaming(fn, cls, file, pattern) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err.name}: ${err.message}`);
    assert.ok(err.message.includes(file), `message does not name ${file}: ${err.message}`);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

test("stories260K.gguf: config, F32 tensors, offsets, tokenizer metadata", () => {
  const file = DEFAULT_MODEL;
  const m = parseGgufModel(file);
  assert.equal(m.format, "gguf");
  assert.deepEqual(m.files, [file]);
  const { ropeScaling, ...config } = m.config;
  assert.equal(ropeScaling, undefined);
  assert.deepEqual(config, {
    architecture: "llama", dim: 64, hiddenDim: 172, layers: 5, heads: 8, kvHeads: 4, headDim: 8, vocabSize: 512,
    contextLength: 2048, normEps: Math.fround(1e-5), ropeTheta: 10000, ropeLayout: "interleaved", tiedEmbeddings: false,
  });
  assert.equal(m.tensors.length, 48);
  assert.equal(m.weightType, "f32");
  assert.equal(m.bosId, 1);
  assert.deepEqual(m.eosIds, [2]);
  assert.equal(m.tokenizer.kind, "gguf");
  assert.equal(m.tokenizer.metadata.get("tokenizer.ggml.tokens").length, 512);
  assert.equal(m.tokenizer.metadata.get("tokenizer.ggml.scores").length, 512);
  const down = m.tensors.find((t) => t.name === "blk.4.ffn_down.weight");
  assert.deepEqual(down.shape, [64, 172]);
  assert.equal(down.byteLength, 64 * 172 * 4);
  for (const t of m.tensors) assert.equal(t.offset % 32, 0);
  assert.equal(m.metadata["general.architecture"], "llama");
  assert.equal(m.metadata["tokenizer.ggml.tokens"], undefined, "vocabulary arrays stay in the tokenizer source");
});

test("stories260K: GGUF and llama2.c .bin hold the same bytes at the offsets each parser gives", NEEDS_REFERENCE_MODELS, () => {
  // The .bin was rebuilt from the GGUF's weights, so every shared tensor must match byte for byte.
  const { parseLlama2cModel } = require("../dist/cjs/formats/llama2c.js");
  const g = parseGgufModel(DEFAULT_MODEL);
  const b = parseLlama2cModel(modelPath("tinystories", "stories260K.bin"));
  const gfd = fs.openSync(g.files[0], "r");
  const bfd = fs.openSync(b.files[0], "r");
  const read = (fd, t) => {
    const buf = Buffer.alloc(t.byteLength);
    fs.readSync(fd, buf, 0, t.byteLength, t.offset);
    return buf;
  };
  try {
    for (const t of b.tensors) {
      const gt = g.tensors.find((x) => x.name === t.name);
      assert.deepEqual(gt.shape, t.shape, t.name);
      assert.ok(read(gfd, gt).equals(read(bfd, t)), `${t.name} bytes differ`);
    }
    // The .bin shares its classifier with the embedding; the GGUF stores a copy.
    const output = g.tensors.find((x) => x.name === "output.weight");
    assert.ok(read(gfd, output).equals(read(bfd, b.tensors.find((x) => x.name === "token_embd.weight"))));
  } finally {
    fs.closeSync(gfd);
    fs.closeSync(bfd);
  }
});

test("llama-2-tiny-random.gguf: F16 weights with F32 norms, full Llama 2 vocab", NEEDS_REFERENCE_MODELS, () => {
  const m = parseGgufModel(modelPath("gguf", "llama-2-tiny-random.gguf"));
  assert.equal(m.config.dim, 8);
  assert.equal(m.config.vocabSize, 32000);
  assert.equal(m.config.headDim, 4);
  assert.equal(m.weightType, "f16");
  assert.equal(m.tensors.find((t) => t.name === "token_embd.weight").type, "f16");
  assert.equal(m.tensors.find((t) => t.name === "output_norm.weight").type, "f32");
  assert.deepEqual(m.tensors.find((t) => t.name === "blk.0.ffn_down.weight").shape, [8, 32]);
  assert.equal(m.metadata["general.file_type"], 1);
});

test("quantized GGUFs: readGguf lists them, parseGgufModel describes them with their types", NEEDS_REFERENCE_MODELS, () => {
  const expected = { "q4_0": "Q4_0", "q4_K_M": "Q4_K", "q6_K": "Q6_K", "q8_0": "Q8_0" };
  const hfNorm = (() => {
    // output_norm is F32 in the GGUFs, written from the same bf16 weights as the HF file (bf16 → f32 is exact).
    const { parseHfModel } = require("../dist/cjs/formats/hf.js");
    const hf = parseHfModel(modelPath("trained", "sotu-l2-23m"));
    const t = hf.tensors.find((x) => x.name === "output_norm.weight");
    const buf = Buffer.alloc(t.byteLength);
    const fd = fs.openSync(hf.files[t.file], "r");
    fs.readSync(fd, buf, 0, t.byteLength, t.offset);
    fs.closeSync(fd);
    return Array.from({ length: 256 }, (_, i) => {
      const f = Buffer.alloc(4);
      f.writeUInt16LE(buf.readUInt16LE(2 * i), 2);
      return f.readFloatLE(0);
    });
  })();
  for (const [suffix, typeName] of Object.entries(expected)) {
    const file = modelPath("trained", "sotu-l2-23m-gguf", `sotu-l2-23m-${suffix}.gguf`);
    const g = readGguf(file);
    assert.equal(g.tensors.length, 75);
    const q = g.tensors.find((t) => t.name === "blk.0.attn_q.weight");
    assert.deepEqual(q.dims, [256, 256]);
    const norm = g.tensors.find((t) => t.name === "output_norm.weight");
    assert.equal(norm.ggmlType, 0);
    const buf = Buffer.alloc(norm.byteLength);
    const fd = fs.openSync(file, "r");
    fs.readSync(fd, buf, 0, norm.byteLength, norm.offset);
    fs.closeSync(fd);
    assert.deepEqual(Array.from({ length: 256 }, (_, i) => buf.readFloatLE(4 * i)), hfNorm, `${suffix} output_norm`);
    const m = parseGgufModel(file);
    assert.equal(m.tensors.find((t) => t.name === "blk.1.attn_q.weight").type, typeName[0].toLowerCase() + typeName.slice(1));
    assert.equal(m.tensors.find((t) => t.name === "output_norm.weight").type, "f32");
  }
  const q8 = readGguf(modelPath("trained", "sotu-l2-23m-gguf", "sotu-l2-23m-q8_0.gguf"));
  assert.equal(q8.tensors.find((t) => t.name === "blk.0.attn_q.weight").byteLength, (256 * 256 / 32) * 34);
});

test("vocab-only GGUFs: readGguf reads the vocabulary, parseGgufModel says there are no weights", NEEDS_REFERENCE_MODELS, () => {
  for (const [name, count, tokenizerModel] of [["ggml-vocab-llama-spm.gguf", 32000, "llama"], ["ggml-vocab-deepseek-coder.gguf", 32256, "gpt2"]]) {
    const file = modelPath("vocab", name);
    const g = readGguf(file);
    assert.equal(g.version, 3);
    assert.equal(g.tensors.length, 0);
    assert.equal(g.metadata.get("tokenizer.ggml.tokens").length, count);
    assert.equal(g.metadata.get("tokenizer.ggml.model"), tokenizerModel);
    assertThrowsNaming(() => parseGgufModel(file), ModelFormatError, file, /no tensors/);
  }
  const merges = readGguf(modelPath("vocab", "ggml-vocab-deepseek-coder.gguf")).metadata.get("tokenizer.ggml.merges");
  assert.ok(merges.length > 1000 && typeof merges[0] === "string");
});

test("synthetic GGUF: every metadata value type, nested arrays, 64-bit values, v2", () => {
  const file = tmpFile("types.gguf");
  const big = 2n ** 60n;
  writeGguf(file, tinyLlama({
    version: 2,
    kv: {
      "t.u8": [T.U8, 200], "t.i8": [T.I8, -5], "t.u16": [T.U16, 60000], "t.i16": [T.I16, -30000],
      "t.u32": [T.U32, 4e9], "t.i32": [T.I32, -2e9], "t.f32": [T.F32, 0.5], "t.bool": [T.BOOL, true],
      "t.u64": [T.U64, 12345], "t.u64big": [T.U64, big], "t.i64": [T.I64, -7], "t.f64": [T.F64, 0.1],
      "t.nested": [T.ARR, [T.ARR, [[T.I32, [1, 2]], [T.I32, [3]]]]], "t.strs": [T.ARR, [T.STR, ["x", "é"]]],
      "llama.rope.freq_base": [T.F32, 500000],
      "llama.rope.scaling.type": [T.STR, "linear"], "llama.rope.scaling.factor": [T.F32, 4],
    },
  }));
  const g = readGguf(file);
  assert.equal(g.version, 2);
  const m = g.metadata;
  assert.deepEqual(
    ["t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.f32", "t.bool", "t.u64", "t.i64", "t.f64"].map((k) => m.get(k)),
    [200, -5, 60000, -30000, 4e9, -2e9, 0.5, true, 12345, -7, 0.1],
  );
  assert.equal(m.get("t.u64big"), big);
  assert.deepEqual(m.get("t.nested"), [[1, 2], [3]]);
  assert.deepEqual(m.get("t.strs"), ["x", "é"]);
  const model = parseGgufModel(file);
  assert.equal(model.config.ropeTheta, 500000);
  assert.deepEqual(model.config.ropeScaling, { type: "linear", factor: 4 });
  assert.equal(model.config.kvHeads, 1);
  assert.equal(model.config.vocabSize, 4);
  assert.deepEqual(model.tensors.find((t) => t.name === "blk.0.ffn_down.weight").shape, [8, 16]);
});

test("synthetic GGUF: tied embeddings, BF16, rope_freqs.weight, eot id", () => {
  const spec = tinyLlama({ kv: { "tokenizer.ggml.eot_token_id": [T.U32, 3] } });
  spec.tensors = spec.tensors.filter((t) => t.name !== "output.weight").map((t) => (t.dims.length === 2 ? { ...t, type: 30, bytes: t.bytes / 2 } : t));
  spec.tensors.push({ name: "rope_freqs.weight", dims: [2], type: 0, bytes: 8 });
  const file = writeGguf(tmpFile("tied.gguf"), spec);
  const freqs = readGguf(file).tensors.find((t) => t.name === "rope_freqs.weight");
  const fd = fs.openSync(file, "r+");
  fs.writeSync(fd, Buffer.from(new Float32Array([1, 8]).buffer), 0, 8, freqs.offset);
  fs.closeSync(fd);
  const m = parseGgufModel(file);
  assert.deepEqual([...m.config.ropeFreqFactors], [1, 8]);
  assert.equal(m.config.tiedEmbeddings, true);
  assert.equal(m.weightType, "bf16");
  assert.equal(m.config.ropeScaling, undefined);
  assert.ok(!m.tensors.some((t) => t.name === "rope_freqs.weight"));
  assert.deepEqual(m.metadata["rope_freqs.weight"].shape, [2]);
  assert.deepEqual(m.eosIds, [2, 3]);
});

test("GGUF corruptions give ModelFormatError naming the file", () => {
  const real = fs.readFileSync(DEFAULT_MODEL);
  const variant = (name, mutate) => {
    const buf = Buffer.from(real);
    const out = mutate(buf) ?? buf;
    const file = tmpFile(name);
    fs.writeFileSync(file, out);
    return file;
  };
  let f = variant("magic.gguf", (b) => { b.write("GGUX", 0); });
  assertThrowsNaming(() => readGguf(f), ModelFormatError, f, /not a GGUF file/);
  f = variant("header-cut.gguf", (b) => b.subarray(0, 3000));
  assertThrowsNaming(() => readGguf(f), ModelFormatError, f, /truncated/);
  f = variant("data-cut.gguf", (b) => b.subarray(0, b.length - 100));
  assertThrowsNaming(() => readGguf(f), ModelFormatError, f, /tensor \S+ data needs bytes/);
  f = variant("tensor-count.gguf", (b) => { b.writeBigUInt64LE(2n ** 40n, 8); });
  assertThrowsNaming(() => readGguf(f), ModelFormatError, f, /tensor count says 1099511627776 items, more than the rest of the file can hold/);
  f = variant("kv-count.gguf", (b) => { b.writeBigUInt64LE(2n ** 63n, 16); });
  assertThrowsNaming(() => readGguf(f), ModelFormatError, f, /count/);
  f = variant("string-length.gguf", (b) => { b.writeBigUInt64LE(2n ** 50n, 24); });
  assertThrowsNaming(() => readGguf(f), ModelFormatError, f, /more than the rest of the file can hold/);
  f = variant("v1.gguf", (b) => { b.writeUInt32LE(1, 4); });
  assertThrowsNaming(() => readGguf(f), UnsupportedModelError, f, /version 1/);
  f = variant("big-endian.gguf", (b) => { b.writeUInt32BE(3, 4); });
  assertThrowsNaming(() => readGguf(f), UnsupportedModelError, f, /big-endian/);
});

test("synthetic GGUF rule breaks", () => {
  const cases = [
    ["offset past EOF", tinyLlama({ patchOffset: { "output.weight": 2 ** 40 } }), ModelFormatError, /tensor output\.weight data needs bytes/],
    ["unaligned offset", tinyLlama({ patchOffset: { "output.weight": 4 } }), ModelFormatError, /not aligned to 32/],
    ["bad alignment", tinyLlama({ kv: { "general.alignment": [T.U32, 48] } }), ModelFormatError, /general\.alignment 48 is not a power of 2/],
    ["unknown architecture", tinyLlama({ kv: { "general.architecture": [T.STR, "mamba"] } }), UnsupportedModelError, /architecture mamba/],
    ["missing key", tinyLlama({ kv: { "llama.block_count": undefined } }), ModelFormatError, /llama\.block_count is missing/],
    ["unknown ggml type", tinyLlama({ tensorType: { "blk.0.attn_q.weight": 99 } }), ModelFormatError, /blk\.0\.attn_q\.weight has unknown ggml type 99/],
    ["unsupported quantized type", tinyLlama({ dims: { "blk.0.attn_q.weight": [32, 8] }, tensorType: { "blk.0.attn_q.weight": 9 } }), UnsupportedModelError, /blk\.0\.attn_q\.weight has type Q8_1, not supported \(supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, BF16/],
    ["quantized row not whole blocks", tinyLlama({ tensorType: { "blk.0.attn_q.weight": 8 } }), ModelFormatError, /blk\.0\.attn_q\.weight: row length 8 is not a multiple of the Q8_0 block size 32/],
    ["shape mismatch", tinyLlama({ dims: { "blk.0.ffn_up.weight": [8, 17] } }), ModelFormatError, /blk\.0\.ffn_up\.weight has shape \[17, 8\], but the config implies \[16, 8\]/],
    ["missing tensor", (() => { const s = tinyLlama(); s.tensors = s.tensors.filter((t) => t.name !== "blk.0.ffn_up.weight"); return s; })(), ModelFormatError, /blk\.0\.ffn_up\.weight is missing/],
    ["duplicate tensor", (() => { const s = tinyLlama(); s.tensors.push(s.tensors[1]); return s; })(), ModelFormatError, /appears twice/],
    ["heads mismatch", tinyLlama({ kv: { "llama.attention.head_count_kv": [T.U32, 3] } }), ModelFormatError, /not a multiple of 3/],
    ["valid control", tinyLlama({ kv: { "x.flag": [T.BOOL, 1] } }), null, null],
  ];
  for (const [name, spec, cls, pattern] of cases) {
    const file = writeGguf(tmpFile(`${name.replace(/ /g, "-")}.gguf`), spec);
    if (cls) assertThrowsNaming(() => parseGgufModel(file), cls, file, pattern);
    else parseGgufModel(file); // a valid control case
  }
});
