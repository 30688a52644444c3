"use strict";
// model.embed: the engine's final-norm hidden states pooled per text. A tiny model whose layers are all zero has
// hidden states the test computes itself (rmsnorm(embedding) × output norm), which checks the rows of every text in
// a batch; the trained model checks determinism and that a batch equals one text at a time.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { loadModel } = require("../dist/cjs/index.js");
const { writeTinyModel, randomValues } = require("./helpers/tiny-model.js");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");

const DIM = 16;

/** A model whose blocks are zero: each token's hidden state is its embedding, rms-normed and scaled by output_norm. */
function zeroLayerModel() {
  const weights = {};
  const file = writeTinyModel({
    dim: DIM,
    fill: (name, rows, cols) => {
      if (name !== "token_embd.weight" && name !== "output_norm.weight" && name !== "output.weight") return undefined;
      return (weights[name] = randomValues(rows * cols, name.length));
    },
  });
  return { file, weights };
}

function expectedState(weights, token) {
  const e = weights["token_embd.weight"].subarray(token * DIM, (token + 1) * DIM);
  let squares = 0;
  for (const v of e) squares += v * v;
  const scale = 1 / Math.sqrt(squares / DIM + 1e-5);
  return Array.from(e, (v, i) => v * scale * weights["output_norm.weight"][i]);
}

test("hidden states: each text's rows in a batch, pooled mean / last / cls, normalized or not", async () => {
  const { file, weights } = zeroLayerModel();
  const model = await loadModel(file, { threads: 1, device: "cpu" });
  try {
    const prompts = [{ tokens: [1, 5, 9] }, { tokens: [1, 300] }, { tokens: [1, 7, 7, 7, 40] }];
    for (const pooling of ["mean", "last", "cls"]) {
      const vectors = await model.embed(prompts, { pooling, normalize: false });
      prompts.forEach(({ tokens }, i) => {
        const states = tokens.map((t) => expectedState(weights, t));
        const rows = pooling === "mean" ? states : pooling === "last" ? [states.at(-1)] : [states[0]];
        const expected = Array.from({ length: DIM }, (_, d) => rows.reduce((sum, row) => sum + row[d], 0) / rows.length);
        assert.equal(vectors[i].length, DIM);
        vectors[i].forEach((v, d) => assert.ok(Math.abs(v - expected[d]) < 1e-5, `${pooling} text ${i} [${d}]: ${v} vs ${expected[d]}`));
      });
    }
    const [unit] = await model.embed([{ tokens: [1, 5, 9] }]);
    assert.ok(Math.abs(unit.reduce((s, v) => s + v * v, 0) - 1) < 1e-5, "normalized by default");
  } finally {
    await model.dispose();
  }
});

test("bad input: typed errors naming the option", async () => {
  const { file } = zeroLayerModel();
  const model = await loadModel(file, { threads: 1, device: "cpu" });
  try {
    await assert.rejects(model.embed("text"), { name: "InvalidArgumentError" });
    await assert.rejects(model.embed(["a"], { pooling: "max" }), { name: "InvalidArgumentError", option: "pooling" });
    await assert.rejects(model.embed(["a"], { normalize: "yes" }), { name: "InvalidArgumentError", option: "normalize" });
    await assert.rejects(model.embed(["a"], { pool: "mean" }), { name: "UnknownOptionError" });
    await assert.rejects(model.embed([{ tokens: [] }]), { name: "InvalidArgumentError" });
    await assert.rejects(model.embed([{ tokens: [1, 99999] }]), { name: "InvalidArgumentError" });
    await assert.rejects(model.embed(["word ".repeat(100)]), { name: "ContextOverflowError" });
    assert.deepEqual(await model.embed([]), []);
  } finally {
    await model.dispose();
  }
});

test("trained model: the same text twice is identical; a batch equals one text at a time within 1e-5", { skip: skipFileWithoutReferenceModels() }, async () => {
  const model = await loadModel(modelPath("trained", "sotu-l3-26m"), { threads: 1, device: "cpu", contextSize: 256 });
  try {
    const texts = [
      "The state of the union is strong.",
      "Call me Ishmael.",
      "The state of the union is strong.",
      "A long sentence about the economy, the budget, taxes and the future of the nation's schools and roads.",
    ];
    const batch = await model.embed(texts);
    assert.equal(batch.length, texts.length);
    assert.equal(batch[0].length, model.info.dim);
    assert.deepEqual(batch[0], batch[2]);
    for (const [i, text] of texts.entries()) {
      const [alone] = await model.embed([text]);
      const diff = Math.max(...alone.map((v, d) => Math.abs(v - batch[i][d])));
      assert.ok(diff < 1e-5, `text ${i}: batch and alone differ by ${diff}`);
    }
    const [again] = await model.embed([texts[1]]);
    assert.deepEqual(again, (await model.embed([texts[1]]))[0]);
    const cosine = batch[0].reduce((s, v, d) => s + v * batch[1][d], 0);
    assert.ok(cosine < 0.9999, "different texts give different vectors");
  } finally {
    await model.dispose();
  }
});

test("the engine's hidden-state mode: n × dim per sequence, no top k with it, named in the logits option's error", async () => {
  const { file, weights } = zeroLayerModel();
  const model = await loadModel(file, { threads: 1, device: "cpu" });
  const context = model.engine.createContext(8);
  try {
    const [{ logits: states }] = await model.engine.decodeBatch([{ context, tokens: Int32Array.of(1, 5), pos: 0, logits: "hidden" }]);
    assert.equal(states.length, 2 * DIM);
    expectedState(weights, 5).forEach((v, d) => assert.ok(Math.abs(states[DIM + d] - v) < 1e-5));
    await assert.rejects(model.engine.decodeBatch([{ context, tokens: Int32Array.of(1), pos: 0, logits: "hidden", topK: 3 }]), { name: "InvalidArgumentError", option: "topK" });
    await assert.rejects(context.decode([1], 0, { logits: "bogus" }), /"none", "last", "all" or "hidden"/);
  } finally {
    context.close();
    await model.dispose();
  }
});
