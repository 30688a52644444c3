"use strict";
// The engine's sampler (native/engine/sampler.c, behind Sampler) against the TypeScript reference that was the
// library's sampler before it (ReferenceSampler): the same tokens for the same seed and logits, over many seeds
// and option mixes, with and without the engine's ranked top-k; the penalty history kept natively; its errors.
const test = require("node:test");
const assert = require("node:assert/strict");
const { Sampler, resolveSampling } = require("../dist/cjs/sampling/sampler.js");
const { ReferenceSampler } = require("../dist/cjs/sampling/reference.js");
const { InvalidArgumentError } = require("../dist/cjs/errors.js");
const { makeRandom } = require("./helpers/random.js");

function pair(options, vocabSize) {
  const resolved = resolveSampling(options, vocabSize);
  return { native: new Sampler(resolved, vocabSize), reference: new ReferenceSampler(resolved, vocabSize) };
}

/** Random logits on a 1/8 grid (many ties: the tie rule is part of what is compared), a few of them banned. */
function randomLogits(random, vocabSize) {
  const logits = Float32Array.from({ length: vocabSize }, () => Math.round((random() + random() + random() - 1.5) * 32) / 8);
  for (let i = 0; i < 3; i++) logits[Math.floor(random() * vocabSize)] = -Infinity;
  return logits;
}

/** The engine's top-k: logit descending, ties by lower id, NaN last. */
function engineTop(logits, k) {
  const rank = (v) => (Number.isNaN(v) ? -Infinity : v);
  return Int32Array.from([...logits.keys()].sort((a, b) => rank(logits[b]) - rank(logits[a]) || a - b).slice(0, k));
}

/** Same id, same alternatives; log-probabilities equal up to the last bits of exp and log (C library vs V8). */
function assertSameToken(actual, expected, context) {
  assert.equal(actual.id, expected.id, context);
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), context);
  const close = (a, b) => Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b));
  if (expected.logprob !== undefined) assert.ok(close(actual.logprob, expected.logprob), `${context}: logprob ${actual.logprob} vs ${expected.logprob}`);
  if (!expected.topLogprobs) return;
  assert.deepEqual(actual.topLogprobs.map((t) => t.id), expected.topLogprobs.map((t) => t.id), context);
  actual.topLogprobs.forEach((t, i) => assert.ok(close(t.logprob, expected.topLogprobs[i].logprob), context));
}

/** Runs both samplers over `steps` random steps, feeding each pick back into the history as generation does. */
function compare(options, vocabSize, steps, random, context) {
  const { native, reference } = pair(options, vocabSize);
  assert.equal(native.candidatesNeeded, reference.candidatesNeeded, `${context}: candidatesNeeded`);
  assert.equal(native.needsLogits, reference.needsLogits, `${context}: needsLogits`);
  const history = Array.from({ length: 12 }, () => Math.floor(random() * 64));
  for (let step = 0; step < steps; step++) {
    const logits = randomLogits(random, vocabSize);
    const top = native.candidatesNeeded > 0 ? engineTop(logits, native.candidatesNeeded) : undefined;
    const expected = reference.sample(logits.slice(), top, history);
    const actual = native.sample(native.needsLogits ? logits.slice() : undefined, top, history);
    assertSameToken(actual, expected, `${context}, step ${step}`);
    history.push(actual.id);
  }
}

const CHAINS = [
  {},
  { temperature: 0 },
  { temperature: 1.3, topK: 7, topP: 0.8 },
  { topK: 0 },
  { topK: 0, topP: 1, minP: 0, temperature: 0.9 },
  { topK: 0, topP: 1, minP: 0, temperature: 1 },
  { typicalP: 0.7, topK: 100 },
  { topK: 0, typicalP: 0.5, minP: 0 },
  { samplers: ["temperature", "top_p", "top_k", "min_p"], temperature: 1.7, topK: 20 },
  { samplers: ["min_p", "temperature", "top_k"], minP: 0.01, topK: 300, temperature: 0.5 },
  { samplers: ["top_p", "top_k", "temperature"], topP: 0.6, topK: 5 },
  { samplers: [] },
];
const MODIFIERS = [
  {},
  { logprobs: 0 },
  { logprobs: 6 },
  { logitBias: { 0: 2, 17: -Infinity, 42: 1.25, 1999: -3 }, logprobs: 20 },
  { repeatPenalty: 1.3, frequencyPenalty: 0.2, presencePenalty: 0.4, repeatLastN: 16 },
  { repeatPenalty: 0.8, repeatLastN: -1, logprobs: 3 },
  { frequencyPenalty: -0.5, repeatLastN: 3 },
  { logitsProcessor: (logits, tokens) => void (logits[tokens.length % logits.length] += 1.5) },
];

test("native and reference give the same tokens over seeds, chains and modifiers (with the engine's top-k where asked)", () => {
  const random = makeRandom(77);
  for (const [c, chain] of CHAINS.entries()) {
    for (const [m, modifier] of MODIFIERS.entries()) {
      for (const seed of [c * 100 + m, -1 - c * 100 - m, 2 ** 40 + c * 7 + m]) {
        compare({ seed, ...chain, ...modifier }, 2000, 6, random, `chain ${c}, modifier ${m}, seed ${seed}`);
      }
    }
  }
});

test("native and reference agree over a 32000-token vocabulary for a long run of the default chain", () => {
  const random = makeRandom(5);
  compare({ seed: 12345 }, 32000, 200, random, "default chain");
  compare({ seed: 6789, topK: 0, logprobs: 5, repeatPenalty: 1.1 }, 32000, 40, random, "whole vocabulary, penalties");
});

test("seeds fold like the reference's: 0, negative, beyond 2^32 and the safe-integer extremes", () => {
  const logits = Float32Array.from({ length: 300 }, (_, i) => Math.sin(i * 1.7) * 3);
  for (const seed of [0, 1, -1, 2 ** 32, 2 ** 32 + 1, -(2 ** 33) - 5, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) {
    const { native, reference } = pair({ seed, topK: 0, topP: 1, minP: 0, temperature: 1 }, 300);
    const draws = (s) => Array.from({ length: 100 }, () => s.sample(logits.slice(), undefined, []).id);
    assert.deepEqual(draws(native), draws(reference), `seed ${seed}`);
  }
});

test("the penalty history: appended when the same array grows, replaced by any other array", () => {
  const V = 50;
  const options = { temperature: 0, logprobs: 20, repeatPenalty: 3, frequencyPenalty: 0.5, repeatLastN: 4 };
  const logits = Float32Array.from({ length: V }, (_, i) => (i % 7) - 3);
  const { native, reference } = pair(options, V);
  const check = (tokens, context) => assertSameToken(native.sample(logits.slice(), undefined, tokens), reference.sample(logits.slice(), undefined, tokens), context);
  const history = [1, 2, 3];
  check(history, "initial");
  history.push(3, 4, 5);
  check(history, "grown by three, beyond the window");
  history.push(6);
  check(history, "grown by one");
  history[history.length - 1] = 2;
  check(history, "the same array with its last token changed");
  history.length = 2;
  check(history, "the same array shortened");
  history.push(...Array.from({ length: 100 }, (_, i) => i % V));
  check(history, "a long stretch appended");
  check([6, 6, 6], "another array");
});

test("every draw of a chain fed the engine's top-k follows the reference's distribution, draw for draw", () => {
  // 20,000 draws of the default chain at T = 1.5 from ranked candidates: identical to the reference's sequence, so
  // the statistics tests of the reference (sampling-statistics) hold for these draws too.
  const logits = Float32Array.from({ length: 1000 }, (_, i) => Math.cos(i * 0.37) * 4 - i / 300);
  const { native, reference } = pair({ seed: 99, temperature: 1.5 }, 1000);
  const top = engineTop(logits, native.candidatesNeeded);
  const counts = new Map();
  for (let i = 0; i < 20000; i++) {
    const id = native.sample(logits.slice(), top, []).id;
    assert.equal(id, reference.sample(logits.slice(), top, []).id, `draw ${i}`);
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  assert.ok(counts.size > 5, `only ${counts.size} distinct tokens drawn`);
});

test("NaN logits count as -Infinity, in the draw and in greedy logprobs", () => {
  const logits = [1, NaN, 2, -Infinity, 0.5];
  for (const options of [{ temperature: 0, logprobs: 5 }, { seed: 3, logprobs: 5 }, { seed: 4, topK: 0, logprobs: 5 }, { seed: 5, topK: 0, topP: 1, minP: 0, logprobs: 5 }]) {
    const { native, reference } = pair(options, 5);
    const expected = reference.sample(Float32Array.from(logits), undefined, []);
    const actual = native.sample(Float32Array.from(logits), undefined, []);
    assertSameToken(actual, expected, JSON.stringify(options));
    assert.ok(Number.isFinite(actual.logprob));
    assert.deepEqual(actual.topLogprobs.map((t) => t.id).sort(), [0, 2, 4]);
  }
  assert.throws(() => pair({ temperature: 0 }, 3).native.sample(Float32Array.from([NaN, NaN, -Infinity]), undefined, []), InvalidArgumentError);
});

test("bad input to sample() is an InvalidArgumentError, not a crash", () => {
  const sampler = pair({ seed: 1, repeatPenalty: 1.2 }, 10).native;
  assert.throws(() => sampler.sample(new Float32Array(9), undefined, []), (e) => e instanceof InvalidArgumentError && /9 logits for a vocabulary of 10/.test(e.message));
  assert.throws(() => sampler.sample(new Float32Array(10), undefined, [3, 10]), (e) => e instanceof InvalidArgumentError && /token id 10 is outside the vocabulary/.test(e.message));
  assert.throws(() => sampler.sample(new Float32Array(10), undefined, [-1]), InvalidArgumentError);
  const greedy = pair({ temperature: 0 }, 10).native;
  assert.throws(() => greedy.sample(undefined, Int32Array.from([12]), []), (e) => e instanceof InvalidArgumentError && /ranked id 12/.test(e.message));
  assert.throws(() => greedy.sample(undefined, undefined, []), (e) => e instanceof InvalidArgumentError && /needs the logits/.test(e.message));
  assert.throws(() => pair({ seed: 1 }, 10).native.sample(undefined, Int32Array.from([1]), []), InvalidArgumentError);
  // The sampler still works after each of those.
  assert.equal(greedy.sample(Float32Array.from([0, 1, 9, 2, 0, 0, 0, 0, 0, 0]), undefined, []).id, 2);
});
