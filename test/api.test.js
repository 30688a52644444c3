"use strict";
// Behaviour of the public API: streaming, stop conditions, sampling options, the event loop, dispose, errors.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync } = require("node:child_process");
const path = require("node:path");
const api = require("../dist/cjs/index.js");
const { DEFAULT_MODEL, modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;
const { writeConstantOutputModel } = require("./helpers/tiny-model.js");

const { loadModel, DisposedError, ContextOverflowError, InvalidArgumentError } = api;
let model;

before(async () => {
  model = await loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 2 });
});
after(async () => {
  await model.dispose();
});

test("require and import expose the same API", () => {
  const root = path.resolve(__dirname, "..");
  const out = execFileSync(
    process.execPath,
    ["--input-type=module", "-e", `import * as m from "llama-napi"; import d from "llama-napi"; console.log(Object.keys(m).sort().join(","), typeof d.loadModel)`],
    { cwd: root, env: { ...process.env, NODE_PATH: "" } },
  ).toString().trim();
  const cjsKeys = Object.keys(api).filter((k) => k !== "__esModule").sort();
  assert.equal(out, `${["default", ...cjsKeys].sort().join(",")} function`);
});

test("model.info describes the model", () => {
  const i = model.info;
  assert.equal(i.format, "hf");
  assert.equal(i.architecture, "llama");
  assert.deepEqual([i.vocabSize, i.dim, i.layers, i.heads, i.kvHeads, i.headDim, i.hiddenDim], [32000, 256, 8, 8, 4, 32, 768]);
  assert.equal(i.contextLength, 1024);
  assert.equal(i.weightType, "bf16");
  assert.equal(i.tokenizer, "spm");
  assert.deepEqual(i.eosIds, [2]);
  assert.equal(i.bosId, 1);
  assert.equal(i.parameters, 22679808);
});

test("streamed text deltas concatenate to the full decode", async () => {
  const ids = [];
  let text = "";
  for await (const t of model.generate("The President said that", { maxTokens: 40, temperature: 0.9, seed: 7 })) {
    ids.push(t.id);
    text += t.text;
  }
  const prompt = model.tokenize("The President said that", { addBos: true });
  assert.equal(model.detokenize(prompt) + text, model.detokenize([...prompt, ...ids]));
});

test("same seed gives the same tokens; another seed differs", async () => {
  const opts = { maxTokens: 24, temperature: 1.0, topK: 0, topP: 1, minP: 0 };
  const a = await model.complete("Call me Ishmael.", { ...opts, seed: 42 });
  const b = await model.complete("Call me Ishmael.", { ...opts, seed: 42 });
  const c = await model.complete("Call me Ishmael.", { ...opts, seed: 43 });
  assert.deepEqual(a.tokens, b.tokens);
  assert.notDeepEqual(a.tokens, c.tokens);
});

test("complete() reports finish reason and stats", async () => {
  const r = await model.complete("Once upon a time", { maxTokens: 5, temperature: 0 });
  assert.equal(r.finishReason, "length");
  assert.equal(r.tokens.length, 5);
  assert.equal(r.stats.promptTokens, 5);
  assert.equal(r.stats.genTokens, 5);
  assert.ok(r.stats.prefillTps > 0 && r.stats.decodeTps > 0);
  assert.equal(typeof r.text, "string");
});

test("generation stops at EOS (finishReason stop) unless ignoreEos", async () => {
  // A model whose next token is always EOS (id 2).
  const m = await loadModel(writeConstantOutputModel({ 2: 10 }));
  try {
    const r = await m.complete("Once", { temperature: 0, maxTokens: 5 });
    assert.equal(r.finishReason, "stop");
    assert.deepEqual(r.tokens, []);
    const ignored = await m.complete("Once", { temperature: 0, maxTokens: 3, ignoreEos: true });
    assert.equal(ignored.finishReason, "length");
    assert.deepEqual(ignored.tokens, [2, 2, 2]);
  } finally {
    await m.dispose();
  }
});

test("sampling follows the distribution the options define", async () => {
  // Logits ln(0.5), ln(0.3), ln(0.2) on tokens 10, 11, 12; everything else far below.
  const logits = new Array(512).fill(-30);
  [logits[10], logits[11], logits[12]] = [Math.log(0.5), Math.log(0.3), Math.log(0.2)];
  const m = await loadModel(writeConstantOutputModel(logits));
  const histogram = async (opts, n = 400) => {
    const counts = {};
    for (let s = 0; s < n; s++) {
      const { tokens } = await m.complete({ tokens: [1] }, { maxTokens: 1, seed: s, ...opts });
      counts[tokens[0]] = (counts[tokens[0]] ?? 0) + 1;
    }
    return counts;
  };
  try {
    assert.deepEqual(await histogram({ temperature: 0 }, 3), { 10: 3 });
    assert.deepEqual(Object.keys(await histogram({ temperature: 1, topK: 1 }, 20)), ["10"]);
    assert.deepEqual(Object.keys(await histogram({ temperature: 1, topK: 0, topP: 0.45, minP: 0 }, 20)), ["10"]);
    assert.deepEqual(Object.keys(await histogram({ temperature: 1, topK: 0, topP: 0.75, minP: 0 }, 60)).sort(), ["10", "11"]);
    assert.deepEqual(Object.keys(await histogram({ temperature: 1, topK: 0, topP: 1, minP: 0.5 }, 60)).sort(), ["10", "11"]);
    const plain = await histogram({ temperature: 1, topK: 0, topP: 1, minP: 0 });
    assert.ok(Math.abs(plain[10] / 400 - 0.5) < 0.08 && Math.abs(plain[12] / 400 - 0.2) < 0.08, JSON.stringify(plain));
    const hot = await histogram({ temperature: 3, topK: 3, topP: 1, minP: 0 });
    assert.ok(hot[12] > plain[12] && hot[10] < plain[10], `temperature flattens: ${JSON.stringify(hot)}`);
  } finally {
    await m.dispose();
  }
});

test("abort signal stops generation with finishReason abort", async () => {
  const ac = new AbortController();
  const it = model.generate("The whale swam toward the ship", { temperature: 0, maxTokens: 100, signal: ac.signal });
  let n = 0;
  let step;
  while (!(step = await it.next()).done) {
    if (++n === 3) ac.abort();
  }
  assert.equal(step.value.finishReason, "abort");
  assert.equal(step.value.tokens.length, 3);
});

test("breaking out of the loop stops generation and frees the context for reuse", async () => {
  let n = 0;
  for await (const _ of model.generate("In the year 1850 the Congress", { temperature: 0, maxTokens: 100 })) {
    if (++n === 2) break;
  }
  assert.equal(n, 2);
  const again = await model.complete("In the year 1850 the Congress", { temperature: 0, maxTokens: 2 });
  assert.equal(again.tokens.length, 2);
});

test("the event loop keeps running during a long prefill and generation", async () => {
  let ticks = 0;
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  try {
    const ids = [1, ...Array.from({ length: 900 }, (_, i) => 100 + (i % 5000))];
    const start = performance.now();
    await model.evaluate(ids);
    await model.complete("Fellow citizens", { temperature: 0, maxTokens: 64 });
    const elapsed = performance.now() - start;
    assert.ok(elapsed > 50, "the work should take a while for this test to mean something");
    assert.ok(ticks >= elapsed / 50, `timer fired ${ticks} times in ${elapsed.toFixed(0)} ms`);
    assert.ok(maxGap < 250, `longest gap between timer ticks: ${maxGap.toFixed(0)} ms`);
  } finally {
    clearInterval(timer);
  }
});

test("invalid arguments raise typed errors", async () => {
  await assert.rejects(model.evaluate([1, 32000]), (e) => e instanceof InvalidArgumentError && /32000/.test(e.message));
  await assert.rejects(model.evaluate([1, -1]), InvalidArgumentError);
  await assert.rejects(model.evaluate([1, 1.5]), InvalidArgumentError);
  await assert.rejects(model.evaluate([]), InvalidArgumentError);
  assert.throws(() => model.detokenize([99999]), InvalidArgumentError);
  for (const bad of [{ topP: 0 }, { topP: 1.5 }, { topK: -1 }, { temperature: -1 }, { minP: 2 }, { maxTokens: 0 }, { seed: 1.5 }]) {
    await assert.rejects(model.complete("x", bad), InvalidArgumentError, JSON.stringify(bad));
  }
  await assert.rejects(model.complete(42), InvalidArgumentError);
  await assert.rejects(loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 0 }), InvalidArgumentError);
});

test("a prompt longer than the context is a ContextOverflowError naming both sizes", async () => {
  const small = await loadModel(modelPath("trained", "sotu-l2-23m"), { contextSize: 8 });
  try {
    await assert.rejects(
      small.complete({ tokens: [1, 2, 3, 4, 5, 6, 7, 8, 9] }),
      (e) => e instanceof ContextOverflowError && e.tokens === 9 && e.contextSize === 8 && /9.*8/.test(e.message),
    );
    // Filling the context exactly still yields one token, then stops with "length".
    const r = await small.complete({ tokens: [1, 2, 3, 4, 5, 6, 7] }, { temperature: 0, maxTokens: 10 });
    assert.equal(r.tokens.length, 2);
    assert.equal(r.finishReason, "length");
  } finally {
    await small.dispose();
  }
});

test("dispose: waits for the step in flight, then every use throws DisposedError", async () => {
  const m = await loadModel(DEFAULT_MODEL);
  const it = m.generate("Once upon a time", { temperature: 0, maxTokens: 50 });
  await it.next();
  const pending = m.evaluate([1, 2, 3]);
  await m.dispose();
  await pending; // the evaluation that was in flight completes
  await assert.rejects(it.next(), DisposedError);
  assert.throws(() => m.tokenize("x"), DisposedError);
  await assert.rejects(m.evaluate([1]), DisposedError);
  await assert.rejects(m.complete("x"), DisposedError);
  await m.dispose(); // idempotent
});

test("Symbol.asyncDispose disposes the model", async () => {
  const m = await loadModel(DEFAULT_MODEL);
  await m[Symbol.asyncDispose]();
  assert.throws(() => m.tokenize("x"), DisposedError);
});
