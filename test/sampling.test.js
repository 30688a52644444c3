"use strict";
// Each stage of the sampler chain on hand-made distributions: exact surviving sets and probabilities, read
// through the logprobs report (which describes the distribution actually drawn from).
const test = require("node:test");
const assert = require("node:assert/strict");
const { Sampler, resolveSampling } = require("../dist/cjs/sampling/sampler.js");
const { InvalidArgumentError } = require("../dist/cjs/errors.js");

/** Every stage off, T = 1: what the tests switch on one at a time. */
const PLAIN = { temperature: 1, topK: 0, topP: 1, minP: 0, typicalP: 1, seed: 1 };

function makeSampler(options, vocabSize) {
  return new Sampler(resolveSampling({ ...PLAIN, ...options }, vocabSize), vocabSize);
}

/** The distribution the sampler draws from: id → probability, via the logprobs report (≤ 20 survivors). */
function survivors(options, logits, tokens = []) {
  const sampled = makeSampler({ ...options, logprobs: 20 }, logits.length).sample(Float32Array.from(logits), undefined, tokens);
  return new Map(sampled.topLogprobs.map(({ id, logprob }) => [id, Math.exp(logprob)]));
}

function assertDistribution(actual, expected, tolerance) {
  assert.deepEqual([...actual.keys()].sort((a, b) => a - b), Object.keys(expected).map(Number).sort((a, b) => a - b));
  for (const [id, p] of Object.entries(expected)) {
    assert.ok(Math.abs(actual.get(Number(id)) - p) < tolerance, `p(${id}) = ${actual.get(Number(id))}, expected ${p}`);
  }
}

/** log-softmax in float64 of (float32) logits: what the sampler must report for an untruncated distribution. */
function logSoftmax(logits) {
  const max = Math.max(...logits);
  const lse = max + Math.log(logits.reduce((s, l) => s + Math.exp(l - max), 0));
  return logits.map((l) => l - lse);
}

// Probabilities 0.5 / 0.25 / 0.125 / 0.125, deliberately not in id order: id 2 is the most likely, and ids 1
// and 3 tie. Float32 logits make these exact to ~1e-7 only.
const HALVES = [Math.log(0.25), Math.log(0.125), Math.log(0.5), Math.log(0.125)];

test("top_k keeps the k largest logits, ties by lower id", () => {
  assertDistribution(survivors({ topK: 2 }, [1, 3, 2, 0, 3]), { 1: 0.5, 4: 0.5 }, 1e-12);
  assertDistribution(survivors({ topK: 2 }, [3, 1, 3, 3]), { 0: 0.5, 2: 0.5 }, 1e-12);
  const p = 1 / (1 + Math.exp(-1));
  assertDistribution(survivors({ topK: 2 }, [0, 2, 1, -5]), { 1: p, 2: 1 - p }, 1e-12);
});

test("top_p keeps the shortest prefix whose probability reaches p", () => {
  assertDistribution(survivors({ topP: 0.7 }, HALVES), { 2: 2 / 3, 0: 1 / 3 }, 1e-6);
  // 0.875 ≥ 0.8 with the first of the two tied 0.125 tokens: the one with the lower id.
  assertDistribution(survivors({ topP: 0.8 }, HALVES), { 2: 0.5 / 0.875, 0: 0.25 / 0.875, 1: 0.125 / 0.875 }, 1e-6);
  assertDistribution(survivors({ topP: 0.4 }, HALVES), { 2: 1 }, 1e-12);
  assertDistribution(survivors({ topP: 0.99 }, HALVES), { 2: 0.5, 0: 0.25, 1: 0.125, 3: 0.125 }, 1e-6);
});

test("min_p drops tokens below minP × the top probability", () => {
  assertDistribution(survivors({ minP: 0.3 }, HALVES), { 2: 2 / 3, 0: 1 / 3 }, 1e-6);
  assertDistribution(survivors({ minP: 0.2 }, HALVES), { 2: 0.5, 0: 0.25, 1: 0.125, 3: 0.125 }, 1e-6);
  assertDistribution(survivors({ minP: 0.6 }, HALVES), { 2: 1 }, 1e-12);
  assertDistribution(survivors({ minP: 1 }, [2, 1, 2]), { 0: 0.5, 2: 0.5 }, 1e-12);
});

test("typical_p keeps the tokens whose surprisal is closest to the entropy", () => {
  // H = 1.75 ln 2. Distances |−ln p − H|: p=0.25 → 0.25 ln 2, p=0.5 → 0.75 ln 2, p=0.125 → 1.25 ln 2.
  // So the order is id 0 (0.25), id 2 (0.5), then ids 1 and 3 (0.125, ties in rank order: lower id first).
  assertDistribution(survivors({ typicalP: 0.2 }, HALVES), { 0: 1 }, 1e-12);
  assertDistribution(survivors({ typicalP: 0.5 }, HALVES), { 0: 1 / 3, 2: 2 / 3 }, 1e-6);
  assertDistribution(survivors({ typicalP: 0.8 }, HALVES), { 0: 0.25 / 0.875, 2: 0.5 / 0.875, 1: 0.125 / 0.875 }, 1e-6);
  // The most likely token is not kept at 0.2, so the draw is always id 0.
  const sampler = makeSampler({ typicalP: 0.2 }, 4);
  for (let i = 0; i < 50; i++) assert.equal(sampler.sample(Float32Array.from(HALVES), undefined, []).id, 0);
});

test("typical_p matches a direct computation on a larger distribution", () => {
  const logits = [2.5, -1, 0.3, 1.7, 0.9, -0.4, 3.1, 0.05, -2.2, 1.2];
  const f32 = Array.from(Float32Array.from(logits));
  const logp = logSoftmax(f32);
  const entropy = -logp.reduce((s, lp) => s + Math.exp(lp) * lp, 0);
  const byDistance = logp.map((lp, id) => ({ id, d: Math.abs(-lp - entropy), p: Math.exp(lp) })).sort((a, b) => a.d - b.d);
  for (const typicalP of [0.3, 0.6, 0.9]) {
    const expected = {};
    let mass = 0;
    for (const { id, p } of byDistance) {
      expected[id] = p;
      mass += p;
      if (mass >= typicalP) break;
    }
    for (const id of Object.keys(expected)) expected[id] /= mass;
    assertDistribution(survivors({ typicalP }, logits), expected, 1e-9);
  }
});

test("temperature divides the logits before the softmax", () => {
  const logits = [1, 0, -1, 0.5];
  for (const temperature of [0.5, 2]) {
    const expected = logSoftmax(Array.from(Float32Array.from(logits)).map((l) => l / temperature));
    const got = survivors({ temperature }, logits);
    expected.forEach((lp, id) => assert.ok(Math.abs(Math.log(got.get(id)) - lp) < 1e-12));
  }
  // T = 2 on 0.5/0.25/0.125/0.125 gives probabilities ∝ √p.
  const roots = [0.5, Math.SQRT1_2, 0.5 ** 1.5, 0.5 ** 1.5];
  const sum = roots.reduce((a, b) => a + b);
  assertDistribution(survivors({ temperature: 2 }, HALVES), { 2: roots[1] / sum, 0: roots[0] / sum, 1: roots[2] / sum, 3: roots[3] / sum }, 1e-6);
});

test("the samplers order changes the result where the stages do not commute", () => {
  // top_p first keeps 0.5 + 0.25; T = 4 first flattens to ∝ p^¼ (0.307, 0.258, 0.217, 0.217): top_p needs three.
  assert.equal(survivors({ topP: 0.7, temperature: 4, samplers: ["top_p", "temperature"] }, HALVES).size, 2);
  assert.equal(survivors({ topP: 0.7, temperature: 4, samplers: ["temperature", "top_p"] }, HALVES).size, 3);
  // min_p 0.3 keeps ratios ≥ 0.3: 1 and 0.5 at T = 1, all four at T = 4 (ratios 1, 0.84, 0.71, 0.71).
  assert.equal(survivors({ minP: 0.3, temperature: 4, samplers: ["min_p", "temperature"] }, HALVES).size, 2);
  assert.equal(survivors({ minP: 0.3, temperature: 4, samplers: ["temperature", "min_p"] }, HALVES).size, 4);
  // top_k 2 first renormalises to 2/3, 1/3, and top_p 0.6 then keeps one; top_p first keeps two.
  assertDistribution(survivors({ topK: 2, topP: 0.6, samplers: ["top_k", "top_p"] }, HALVES), { 2: 1 }, 1e-12);
  assertDistribution(survivors({ topK: 2, topP: 0.6, samplers: ["top_p", "top_k"] }, HALVES), { 2: 2 / 3, 0: 1 / 3 }, 1e-6);
  // A stage left out of the order is not applied.
  assert.equal(survivors({ topP: 0.4, samplers: ["temperature"] }, HALVES).size, 4);
});

test("top_k behind temperature and min_p gives the same result as in front (so it can stay native)", () => {
  const logits = Float32Array.from({ length: 200 }, (_, i) => Math.sin(i * 12.9898) * 4);
  const engineTop = Int32Array.from([...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b).slice(0, 10));
  const options = { topK: 10, minP: 0.2, temperature: 0.6, logprobs: 20 };
  const behind = makeSampler({ ...options, samplers: ["temperature", "min_p", "top_k"] }, 200);
  const front = makeSampler({ ...options, samplers: ["top_k", "temperature", "min_p"] }, 200);
  assert.equal(behind.candidatesNeeded, 10);
  for (let i = 0; i < 20; i++) {
    assert.deepEqual(behind.sample(logits.slice(), engineTop, []), front.sample(logits.slice(), undefined, []));
  }
});

/** The processed logits seen through a greedy sampler's T = 1 logprobs (the vocabulary here has ≤ 20 tokens). */
function processedLogprobs(options, logits, tokens) {
  const sampled = makeSampler({ ...options, temperature: 0, logprobs: 20 }, logits.length).sample(Float32Array.from(logits), undefined, tokens);
  return new Map(sampled.topLogprobs.map(({ id, logprob }) => [id, logprob]));
}

function assertProcessed(options, logits, tokens, expectedLogits) {
  const expected = logSoftmax(Array.from(Float32Array.from(expectedLogits)));
  const got = processedLogprobs(options, logits, tokens);
  expected.forEach((lp, id) => {
    if (lp === -Infinity) assert.equal(got.has(id), false, `banned id ${id} reported`);
    else assert.ok(Math.abs(got.get(id) - lp) < 1e-9, `logprob(${id}) = ${got.get(id)}, expected ${lp}`);
  });
}

test("repeat, frequency and presence penalties follow llama.cpp over the last repeatLastN tokens", () => {
  const logits = [2, -1, 0.5, -3, 1, 0];
  const tokens = [0, 1, 1, 3, 0, 0, 5];
  const penalties = { repeatPenalty: 1.5, frequencyPenalty: 0.25, presencePenalty: 0.5 };
  // Window of 5: 1, 3, 0, 0, 5 → counts 0:2, 1:1, 3:1, 5:1. Positive logits are divided, others multiplied.
  assertProcessed({ ...penalties, repeatLastN: 5 }, logits, tokens, [2 / 1.5 - 2 * 0.25 - 0.5, -1 * 1.5 - 0.25 - 0.5, 0.5, -3 * 1.5 - 0.25 - 0.5, 1, 0 - 0.25 - 0.5]);
  // -1: the whole history → counts 0:3, 1:2, 3:1, 5:1.
  assertProcessed({ ...penalties, repeatLastN: -1 }, logits, tokens, [2 / 1.5 - 0.75 - 0.5, -1.5 - 0.5 - 0.5, 0.5, -4.5 - 0.25 - 0.5, 1, -0.75]);
  // Each penalty alone; frequency counts occurrences, presence counts once.
  assertProcessed({ frequencyPenalty: 1, repeatLastN: -1 }, logits, tokens, [2 - 3, -1 - 2, 0.5, -3 - 1, 1, -1]);
  assertProcessed({ presencePenalty: 1, repeatLastN: -1 }, logits, tokens, [1, -2, 0.5, -4, 1, -1]);
  assertProcessed({ repeatPenalty: 2, repeatLastN: 3 }, logits, tokens, [1, -1, 0.5, -3, 1, 0]);
  // repeatLastN 0 disables them all.
  assertProcessed({ ...penalties, repeatLastN: 0 }, logits, tokens, logits);
});

test("logitBias adds to the logits and -Infinity bans", () => {
  const logits = [1, 2, 3, 0];
  assertProcessed({ logitBias: { 0: 1.5, 2: -Infinity } }, logits, [], [2.5, 2, -Infinity, 0]);
  assertProcessed({ logitBias: new Map([[3, -0.5]]) }, logits, [], [1, 2, 3, -0.5]);
  const banned = makeSampler({ logitBias: { 2: -Infinity, 1: -Infinity } }, 4);
  for (let i = 0; i < 200; i++) assert.ok([0, 3].includes(banned.sample(Float32Array.from(logits), undefined, []).id));
  const greedy = makeSampler({ temperature: 0, logitBias: { 2: -Infinity } }, 4);
  assert.equal(greedy.sample(Float32Array.from(logits), undefined, []).id, 1);
});

test("banning every token is an InvalidArgumentError", () => {
  const logitBias = { 0: -Infinity, 1: -Infinity };
  for (const options of [{ temperature: 0 }, { topK: 1 }, { topP: 0.5 }, {}]) {
    assert.throws(() => makeSampler({ ...options, logitBias }, 2).sample(Float32Array.from([1, 2]), undefined, []), InvalidArgumentError);
  }
});

test("the logitsProcessor hook sees the raw logits and the tokens, and its changes are honoured", () => {
  const seen = [];
  const sampler = makeSampler(
    {
      temperature: 0,
      logitBias: { 1: -Infinity },
      repeatPenalty: 1.5,
      logitsProcessor(logits, tokens) {
        seen.push({ logits: Array.from(logits), tokens: [...tokens] });
        logits[3] = 10; // becomes the argmax...
        logits[1] = 20; // ...as the bias then bans this one
      },
    },
    10,
  );
  const logits = [1, 2, 3, 4, 5, 0, 0, 0, 0, 0];
  assert.equal(sampler.candidatesNeeded, 0);
  assert.equal(sampler.needsLogits, true);
  assert.equal(sampler.sample(Float32Array.from(logits), undefined, [7, 8]).id, 3);
  assert.deepEqual(seen, [{ logits, tokens: [7, 8] }]);
  // The penalties come after the hook: token 3 was generated, so its 10 becomes 10 / 1.5 — still above 5.
  assert.equal(sampler.sample(Float32Array.from(logits), undefined, [7, 8, 3]).id, 3);
  assert.deepEqual(seen[1].tokens, [7, 8, 3]);
  const penalised = makeSampler({ temperature: 0, repeatPenalty: 2.5, logitsProcessor: (l) => void (l[0] = 12) }, 3);
  assert.equal(penalised.sample(Float32Array.from([1, 11, 2]), undefined, [0]).id, 1);
});

test("greedy takes the lowest id among tied maxima, natively or in TypeScript", () => {
  const logits = [1, 5, 2, 5, 5];
  const native = makeSampler({ temperature: 0 }, 5);
  assert.equal(native.sample(undefined, Int32Array.from([1, 3, 4, 2, 0]), []).id, 1);
  const inTs = makeSampler({ temperature: 0, logitBias: { 0: 1 } }, 5);
  assert.equal(inTs.sample(Float32Array.from(logits), undefined, []).id, 1);
  const hooked = makeSampler({ temperature: 0, logitsProcessor: (l) => void (l[1] = 0) }, 5);
  assert.equal(hooked.sample(Float32Array.from(logits), undefined, []).id, 3);
});

test("logprobs: the chosen token and alternatives come from the truncated, tempered distribution", () => {
  const logits = [0.5, 2, -1, 1.5, 2, 0];
  const f32 = Array.from(Float32Array.from(logits));
  // top_k 3 keeps ids 1, 4 (tie, 2) and 3 (1.5); T = 0.5 doubles the logits.
  const expected = logSoftmax([f32[1] * 2, f32[4] * 2, f32[3] * 2]);
  const sampler = makeSampler({ topK: 3, temperature: 0.5, logprobs: 5, seed: 3 }, 6);
  for (let i = 0; i < 30; i++) {
    const { id, logprob, topLogprobs } = sampler.sample(Float32Array.from(logits), undefined, []);
    assert.deepEqual(topLogprobs.map((t) => t.id), [1, 4, 3]);
    topLogprobs.forEach((t, j) => assert.ok(Math.abs(t.logprob - expected[j]) < 1e-12));
    assert.equal(logprob, topLogprobs.find((t) => t.id === id).logprob);
    assert.ok(Math.abs(topLogprobs.reduce((s, t) => s + Math.exp(t.logprob), 0) - 1) < 1e-12);
  }
  // At most n alternatives; 0 reports only the chosen token's logprob.
  const two = makeSampler({ topK: 3, temperature: 0.5, logprobs: 2 }, 6).sample(Float32Array.from(logits), undefined, []);
  assert.deepEqual(two.topLogprobs.map((t) => t.id), [1, 4]);
  const none = makeSampler({ topK: 3, temperature: 0.5, logprobs: 0 }, 6).sample(Float32Array.from(logits), undefined, []);
  assert.deepEqual(none.topLogprobs, []);
  assert.ok(Math.abs(none.logprob - expected[[1, 4, 3].indexOf(none.id)]) < 1e-12);
  // Without the option, nothing is reported.
  assert.deepEqual(Object.keys(makeSampler({}, 6).sample(Float32Array.from(logits), undefined, [])), ["id"]);
});

test("logprobs over the untruncated vocabulary report the top n of the whole tempered softmax", () => {
  const logits = Array.from({ length: 50 }, (_, i) => Math.cos(i * 7.3) * 3);
  const f32 = Array.from(Float32Array.from(logits));
  const expected = logSoftmax(f32.map((l) => l / 0.7));
  const order = expected.map((lp, id) => ({ id, lp })).sort((a, b) => b.lp - a.lp || a.id - b.id);
  const { id, logprob, topLogprobs } = makeSampler({ temperature: 0.7, logprobs: 4 }, 50).sample(Float32Array.from(logits), undefined, []);
  assert.deepEqual(topLogprobs.map((t) => t.id), order.slice(0, 4).map((o) => o.id));
  topLogprobs.forEach((t) => assert.ok(Math.abs(t.logprob - expected[t.id]) < 1e-12));
  assert.ok(Math.abs(logprob - expected[id]) < 1e-12);
});

test("logprobs alternatives: ties by id, only survivors, banned tokens never", () => {
  const sampled = makeSampler({ topP: 0.85, logprobs: 20, logitBias: { 4: -Infinity } }, 6).sample(Float32Array.from([1, 3, 1, 3, 5, 1]), undefined, []);
  // After the ban: 3, 3 (ids 1, 3), then three 1s. 2e²/(2e² + 3) ≈ 0.831 < 0.85, so id 0 (the lowest of the
  // tied 1s) joins, which reaches 0.888.
  assert.deepEqual(sampled.topLogprobs.map((t) => t.id), [1, 3, 0]);
  assert.equal(sampled.topLogprobs[0].logprob, sampled.topLogprobs[1].logprob);
  assert.ok(Math.abs(sampled.topLogprobs.reduce((s, t) => s + Math.exp(t.logprob), 0) - 1) < 1e-12);
});

test("greedy logprobs are the temperature-1 softmax of the processed logits over the whole vocabulary", () => {
  const logits = [0.5, 2, -1, 1.5, 2, 0];
  const expected = logSoftmax(Array.from(Float32Array.from(logits)));
  // Truncation options do not apply to greedy; the engine's candidates are used as they are.
  const sampler = makeSampler({ temperature: 0, topK: 1, topP: 0.1, logprobs: 3 }, 6);
  assert.equal(sampler.candidatesNeeded, 3);
  assert.equal(sampler.needsLogits, true);
  const native = sampler.sample(Float32Array.from(logits), Int32Array.from([1, 4, 3]), []);
  const inTs = makeSampler({ temperature: 0, logprobs: 3, logitsProcessor() {} }, 6).sample(Float32Array.from(logits), undefined, []);
  for (const { id, logprob, topLogprobs } of [native, inTs]) {
    assert.equal(id, 1);
    assert.ok(Math.abs(logprob - expected[1]) < 1e-12);
    assert.deepEqual(topLogprobs.map((t) => t.id), [1, 4, 3]);
    topLogprobs.forEach((t) => assert.ok(Math.abs(t.logprob - expected[t.id]) < 1e-12));
  }
  assert.ok(Math.abs(expected.reduce((s, lp) => s + Math.exp(lp), 0) - 1) < 1e-12);
});
