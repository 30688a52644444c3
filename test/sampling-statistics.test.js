"use strict";
// The draws themselves: reproducible from the seed, and distributed as the chain says. Every test uses a fixed
// seed, so the statistical bounds (chosen at a 0.1% false-alarm level) either always pass or always fail.
const test = require("node:test");
const assert = require("node:assert/strict");
const { Sampler, resolveSampling } = require("../dist/cjs/sampling/sampler.js");

const PLAIN = { temperature: 1, topK: 0, topP: 1, minP: 0 };
const DRAWS = 20000;

function makeSampler(options, vocabSize) {
  return new Sampler(resolveSampling(options, vocabSize), vocabSize);
}

function draw(options, logits, count = DRAWS) {
  const sampler = makeSampler(options, logits.length);
  return Array.from({ length: count }, () => sampler.sample(Float32Array.from(logits), undefined, []).id);
}

function histogram(ids, vocabSize) {
  const counts = new Array(vocabSize).fill(0);
  for (const id of ids) counts[id]++;
  return counts;
}

function softmax(logits) {
  const max = Math.max(...logits);
  const w = logits.map((l) => Math.exp(l - max));
  const total = w.reduce((a, b) => a + b);
  return w.map((x) => x / total);
}

/** Pearson's statistic over the tokens of non-zero probability; tokens of zero probability must never appear. */
function chiSquare(counts, probabilities) {
  const n = counts.reduce((a, b) => a + b);
  let statistic = 0;
  probabilities.forEach((p, id) => {
    if (p === 0) assert.equal(counts[id], 0, `token ${id} has probability 0 but was drawn`);
    else statistic += (counts[id] - n * p) ** 2 / (n * p);
  });
  return statistic;
}

/** The 99.9% quantile of χ² by degrees of freedom. */
const CHI2_999 = { 1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 9: 27.88 };

const HALVES = [Math.log(0.25), Math.log(0.125), Math.log(0.5), Math.log(0.125)];
const TEN = [3, 2.5, 2, 1, 0.5, 0, -0.5, -1, -2, -3];

test("the same seed gives the same tokens; different seeds do not", () => {
  const logits = Array.from({ length: 300 }, (_, i) => Math.sin(i * 1.7) * 3);
  const a = draw({ seed: 42 }, logits, 200);
  assert.deepEqual(draw({ seed: 42 }, logits, 200), a);
  assert.notDeepEqual(draw({ seed: 43 }, logits, 200), a);
  assert.notDeepEqual(draw({ seed: 0 }, logits, 200), draw({ seed: 2 ** 40 }, logits, 200));
  // Without a seed, each sampler picks its own.
  assert.notDeepEqual(draw({}, logits, 200), draw({}, logits, 200));
});

test("empirical frequencies match the probabilities", () => {
  const halves = histogram(draw({ ...PLAIN, seed: 1 }, HALVES), 4);
  assert.ok(chiSquare(halves, [0.25, 0.125, 0.5, 0.125]) < CHI2_999[3], `counts ${halves}`);
  // Top-k 3 at T = 0.7: softmax of the three largest logits / 0.7, nothing else.
  const truncated = histogram(draw({ ...PLAIN, topK: 3, temperature: 0.7, seed: 2 }, TEN), 10);
  const expected = [...softmax([3 / 0.7, 2.5 / 0.7, 2 / 0.7]), ...new Array(7).fill(0)];
  assert.ok(chiSquare(truncated, expected) < CHI2_999[2], `counts ${truncated}`);
  // The whole vocabulary (no truncation: drawn in id order, without a sort).
  const whole = histogram(draw({ ...PLAIN, temperature: 1.5, seed: 3 }, TEN), 10);
  assert.ok(chiSquare(whole, softmax(TEN.map((l) => l / 1.5))) < CHI2_999[9], `counts ${whole}`);
});

test("a higher temperature raises the empirical entropy", () => {
  const entropy = (counts) => -counts.reduce((s, c) => (c ? s + (c / DRAWS) * Math.log(c / DRAWS) : s), 0);
  const entropies = [0.3, 0.7, 1, 1.5, 3].map((temperature) => entropy(histogram(draw({ ...PLAIN, temperature, seed: 7 }, TEN), 10)));
  for (let i = 1; i < entropies.length; i++) assert.ok(entropies[i] > entropies[i - 1] + 0.05, `entropies ${entropies}`);
  assert.ok(entropies.at(-1) < Math.log(10));
});

test("top_p and min_p shrink the support exactly", () => {
  const support = (options) => [...new Set(draw({ ...PLAIN, seed: 9, ...options }, HALVES))].sort();
  assert.deepEqual(support({}), [0, 1, 2, 3]);
  assert.deepEqual(support({ topP: 0.7 }), [0, 2]);
  assert.deepEqual(support({ topP: 0.8 }), [0, 1, 2]);
  assert.deepEqual(support({ topP: 0.3 }), [2]);
  assert.deepEqual(support({ minP: 0.3 }), [0, 2]);
  // And within the support, the renormalised probabilities.
  const counts = histogram(draw({ ...PLAIN, topP: 0.8, seed: 10 }, HALVES), 4);
  assert.ok(chiSquare(counts, [0.25 / 0.875, 0.125 / 0.875, 0.5 / 0.875, 0]) < CHI2_999[2], `counts ${counts}`);
});
