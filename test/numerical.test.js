"use strict";
// Weights holding NaN or infinity: the tensor scan (loadModel's checkTensors, info --check) names the first bad
// tensor for every stored type, and without the scan the first evaluation fails with a NumericalError naming the
// model instead of sampling garbage.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { loadModel, NumericalError, ModelFormatError } = require("../dist/cjs/index.js");
const { loadBinding } = require("../dist/cjs/native/binding.js");
const { readGguf } = require("../dist/cjs/formats/gguf.js");
const { modelWithNaN, randomValues, writeTinyModel } = require("./helpers/tiny-model.js");
const { DEFAULT_MODEL } = require("./helpers/models.js");

const CLI = path.resolve(__dirname, "..", "dist", "cjs", "cli", "main.js");
const F16_NAN = 0x7e00;
const F16_INF = 0x7c00;


function assertNumerical(err, file, tensor, index) {
  assert.ok(err instanceof NumericalError, `expected a NumericalError, got ${err.name}: ${err.message}`);
  assert.ok(err instanceof ModelFormatError);
  assert.equal(err.model, file);
  assert.ok(err.message.includes(file), err.message);
  assert.equal(err.tensor, tensor);
  assert.equal(err.index, index);
  if (tensor !== undefined) assert.ok(err.message.includes(tensor), err.message);
  return true;
}

test("a NaN weight: generation and evaluate fail with a NumericalError naming the model, not a sampling error", async () => {
  const file = modelWithNaN(5);
  const model = await loadModel(file, { threads: 1 });
  try {
    for (const temperature of [0, 0.8]) {
      await assert.rejects(model.complete("Once upon", { temperature, maxTokens: 4 }), (err) => assertNumerical(err, file, undefined, undefined));
    }
    await assert.rejects(model.evaluate([1, 2, 3]), (err) => {
      assertNumerical(err, file, undefined, undefined);
      return /not finite/.test(err.message);
    });
  } finally {
    await model.dispose();
  }
  // The same model without the NaN generates.
  const clean = await loadModel(modelWithNaN(undefined), { threads: 1, checkTensors: true });
  try {
    assert.equal((await clean.complete("Once upon", { temperature: 0, maxTokens: 4, ignoreEos: true })).tokens.length, 4);
  } finally {
    await clean.dispose();
  }
});

test("checkTensors names the tensor and element of a NaN in f32 weights", async () => {
  const at = 16 * 3 + 5;
  const file = modelWithNaN(at);
  await assert.rejects(loadModel(file, { threads: 2, checkTensors: true }), (err) => assertNumerical(err, file, "blk.0.ffn_gate.weight", at));
});

// dim 256: one K-quant block (256 values) per row of the [hidden, dim] matrices.
const DIM = 256;
const HIDDEN = 32;
const STORED_TYPES = [
  // name, ggml type number, what to spoil: an element's bits (f16, bf16) or a block's f16 scale at a byte offset
  { type: "f16", ggml: 1, element: 1000, bits: F16_INF },
  { type: "bf16", ggml: 30, element: 4321, bits: 0x7fc0 },
  { type: "q8_0", ggml: 8, block: 37, scaleOffset: 0, bits: F16_NAN },
  { type: "q4_0", ggml: 2, block: 100, scaleOffset: 0, bits: F16_INF },
  { type: "q4_K", ggml: 12, block: 9, scaleOffset: 2, bits: F16_NAN }, // dmin
  { type: "q6_K", ggml: 14, block: 20, scaleOffset: 208, bits: F16_NAN }, // d, after ql, qh and the scales
  { type: "q4_1", ggml: 3, block: 50, scaleOffset: 2, bits: F16_INF }, // m
  { type: "q5_0", ggml: 6, block: 70, scaleOffset: 0, bits: F16_NAN },
  { type: "q5_1", ggml: 7, block: 3, scaleOffset: 2, bits: F16_NAN }, // m
  { type: "q2_K", ggml: 10, block: 11, scaleOffset: 82, bits: F16_NAN }, // dmin, after scales, qs and d
  { type: "q3_K", ggml: 11, block: 12, scaleOffset: 108, bits: F16_INF }, // d, after hmask, qs and the scales
  { type: "q5_K", ggml: 13, block: 13, scaleOffset: 0, bits: F16_NAN }, // d
  { type: "iq4_nl", ggml: 20, block: 90, scaleOffset: 0, bits: F16_NAN },
  { type: "iq4_xs", ggml: 23, block: 5, scaleOffset: 0, bits: F16_INF },
];

async function storedTensor(kind, rows, cols, spoil) {
  const bytes = await loadBinding().quantize(kind.ggml, randomValues(rows * cols, 3), rows, cols);
  if (spoil) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const { blockBytes } = loadBinding().typeInfo().find((t) => t.code === kind.ggml);
    if (kind.element !== undefined) view.setUint16(kind.element * blockBytes, kind.bits, true);
    else view.setUint16(kind.block * blockBytes + kind.scaleOffset, kind.bits, true);
  }
  return { ggmlType: kind.ggml, bytes };
}

for (const kind of STORED_TYPES) {
  test(`checkTensors finds a non-finite ${kind.element !== undefined ? "value" : "block scale"} in ${kind.type} weights`, async () => {
    const tensors = new Map();
    for (const spoil of [false, true]) {
      for (const name of ["blk.0.ffn_up.weight", "blk.0.ffn_gate.weight"]) tensors.set(name, await storedTensor(kind, HIDDEN, DIM, spoil));
      const file = writeTinyModel({ dim: DIM, heads: 2, kvHeads: 1, hidden: HIDDEN, fill: (name) => tensors.get(name) });
      const loading = loadModel(file, { threads: 2, checkTensors: true });
      if (!spoil) {
        await (await loading).dispose();
        continue;
      }
      // Both tensors are spoilt: the first in the file's order is named.
      const first = readGguf(file).tensors.map((t) => t.name).find((n) => tensors.has(n));
      await assert.rejects(loading, (err) => {
        assertNumerical(err, file, first, kind.element ?? kind.block);
        assert.match(err.message, kind.element !== undefined ? /element/ : /scale of block/);
        return true;
      });
    }
  });
}

test("checkTensors finds the first bad value past the first chunk of a large tensor", async () => {
  // token_embd: 512 × 1024 f32 = 2 MiB, several chunks of the parallel scan; a second NaN in a later tensor.
  const at = 400 * 1024 + 17;
  const file = writeTinyModel({
    dim: 1024,
    heads: 8,
    kvHeads: 8,
    hidden: 32,
    fill: (name, rows, cols) => {
      if (name !== "token_embd.weight" && name !== "output.weight") return undefined;
      const values = new Float32Array(rows * cols);
      values[name === "output.weight" ? 3 : at] = name === "output.weight" ? NaN : -Infinity;
      return values;
    },
  });
  await assert.rejects(loadModel(file, { threads: 2, checkTensors: true }), (err) => assertNumerical(err, file, "token_embd.weight", at));
});

test("info --check prints OK for a sound model, and names the bad tensor with exit status 1", () => {
  const ok = spawnSync(process.execPath, [CLI, "info", DEFAULT_MODEL, "--check"], { encoding: "utf8" });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^check +OK/m);
  const json = spawnSync(process.execPath, [CLI, "info", DEFAULT_MODEL, "--check", "--json"], { encoding: "utf8" });
  assert.equal(JSON.parse(json.stdout).check, "ok");

  const file = modelWithNaN(40);
  const bad = spawnSync(process.execPath, [CLI, "info", file, "--check"], { encoding: "utf8" });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /NumericalError: .*tensor blk\.0\.ffn_gate\.weight holds NaN or infinity \(element 40\)/);
  // Without --check the model is only described.
  assert.equal(spawnSync(process.execPath, [CLI, "info", file], { encoding: "utf8" }).status, 0);
});
