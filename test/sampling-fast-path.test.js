"use strict";
// What the sampler asks of the engine (the native fast paths), and that the TypeScript paths used once the logits
// are modified give the same results as a slow, obviously-correct reference on random logits.
const test = require("node:test");
const assert = require("node:assert/strict");
const { Sampler, resolveSampling } = require("../dist/cjs/sampling/sampler.js");
const { Rng } = require("../dist/cjs/sampling/rng.js");
const { CandidateList, rankVocabulary } = require("../dist/cjs/sampling/candidates.js");
const { RadixSorter } = require("../dist/cjs/sampling/radix-sort.js");
const { selectTopK } = require("../dist/cjs/sampling/top-k.js");
const { makeRandom } = require("./helpers/random.js");

function makeSampler(options, vocabSize) {
  return new Sampler(resolveSampling(options, vocabSize), vocabSize);
}

/** Random logits on a 1/8 grid, so that many tie (the tie rule is part of what is compared). */
function randomLogits(random, vocabSize) {
  return Float32Array.from({ length: vocabSize }, () => Math.round((random() + random() + random() - 1.5) * 32) / 8);
}

/** NaN ranks as -Infinity. */
const rankValue = (v) => (Number.isNaN(v) ? -Infinity : v);

/** Rank order: logit descending, ties by id ascending. */
function rankedIds(values) {
  return [...values.keys()].sort((a, b) => rankValue(values[b]) - rankValue(values[a]) || a - b);
}

test("fast paths: what the engine is asked for", () => {
  const V = 32000;
  const flags = (options) => {
    const s = makeSampler(options, V);
    return [s.candidatesNeeded, s.needsLogits];
  };
  assert.deepEqual(flags({ temperature: 0 }), [1, false]);
  assert.deepEqual(flags({}), [40, true]);
  assert.deepEqual(flags({ temperature: 0, logprobs: 0 }), [1, true]);
  assert.deepEqual(flags({ temperature: 0, logprobs: 5 }), [5, true]);
  assert.deepEqual(flags({ logprobs: 5 }), [40, true]);
  for (const modifier of [{ logitsProcessor() {} }, { logitBias: { 5: 1 } }, { repeatPenalty: 1.1 }, { frequencyPenalty: 0.5 }, { presencePenalty: -0.5 }]) {
    assert.deepEqual(flags({ temperature: 0, ...modifier }), [0, true]);
    assert.deepEqual(flags(modifier), [0, true]);
  }
  // Penalties with an empty window change nothing, so they do not cost the fast path.
  assert.deepEqual(flags({ repeatPenalty: 1.1, repeatLastN: 0 }), [40, true]);
  // Top-k disabled, or behind a stage that needs the whole distribution: ranked in TypeScript.
  assert.deepEqual(flags({ topK: 0 }), [0, true]);
  assert.deepEqual(flags({ topK: V }), [0, true]);
  assert.deepEqual(flags({ samplers: ["top_p", "top_k", "temperature"] }), [0, true]);
  assert.deepEqual(flags({ samplers: ["typical_p", "top_k"], typicalP: 0.9 }), [0, true]);
  // ...but a disabled stage in front does not count, and temperature / min-p in front commute with top-k.
  assert.deepEqual(flags({ samplers: ["typical_p", "top_k"] }), [40, true]);
  assert.deepEqual(flags({ samplers: ["temperature", "min_p", "top_k", "top_p"] }), [40, true]);
});

/**
 * The sampler chain written the slow, direct way: full comparator sorts and arrays of objects. Same RNG and
 * the same conventions (draw in rank order, or id order when nothing truncates; disabled stages skipped).
 */
function referenceSampler(options, vocabSize) {
  const o = resolveSampling(options, vocabSize);
  const rng = new Rng(o.seed);
  const enabled = o.samplers.filter(
    (s) => ({ top_k: o.topK > 0 && o.topK < vocabSize, typical_p: o.typicalP < 1, top_p: o.topP < 1, min_p: o.minP > 0, temperature: o.temperature !== 1 })[s],
  );
  const softmax = (list) => {
    const max = Math.max(...list.map((e) => e.l));
    const weights = list.map((e) => Math.exp(e.l - max));
    const total = weights.reduce((a, b) => a + b, 0);
    return { weights, total, lse: max + Math.log(total) };
  };
  const stages = {
    top_k: (list) => list.slice(0, o.topK),
    top_p: (list) => {
      const { weights, total } = softmax(list);
      let mass = 0;
      const end = weights.findIndex((w) => (mass += w) >= o.topP * total);
      return end < 0 ? list : list.slice(0, end + 1);
    },
    min_p: (list) => list.filter((e) => e.l >= list[0].l + Math.log(o.minP)),
    typical_p: (list) => {
      const { lse } = softmax(list);
      const entropy = -list.reduce((s, e) => s + (Math.exp(e.l - lse) > 0 ? Math.exp(e.l - lse) * (e.l - lse) : 0), 0);
      const byDistance = list.map((e, rank) => ({ e, rank, d: Math.fround(Math.abs(lse - e.l - entropy)) })).sort((a, b) => a.d - b.d || a.rank - b.rank);
      let mass = 0;
      const end = byDistance.findIndex(({ e }) => (mass += Math.exp(e.l - lse)) >= o.typicalP);
      return (end < 0 ? byDistance : byDistance.slice(0, end + 1)).sort((a, b) => a.rank - b.rank).map(({ e }) => e);
    },
    temperature: (list) => list.map((e) => ({ id: e.id, l: e.l / o.temperature })),
  };
  return (input, tokens) => {
    const logits = Float32Array.from(input);
    o.logitsProcessor?.(logits, tokens);
    for (const [id, bias] of o.logitBias) logits[id] += bias;
    const window = o.repeatLastN < 0 ? tokens : tokens.slice(Math.max(0, tokens.length - o.repeatLastN));
    const counts = new Map();
    if (o.repeatLastN !== 0) for (const t of window) counts.set(t, (counts.get(t) ?? 0) + 1);
    for (const [id, count] of counts) {
      const l = logits[id];
      logits[id] = (l <= 0 ? l * o.repeatPenalty : l / o.repeatPenalty) - count * o.frequencyPenalty - o.presencePenalty;
    }
    let list = Array.from(logits, (l, id) => ({ id, l })).filter((e) => e.l > -Infinity);
    if (o.temperature === 0) {
      const id = rankedIds(logits)[0];
      const { lse } = softmax(list);
      const top = list.sort((a, b) => b.l - a.l || a.id - b.id).slice(0, o.logprobs);
      return { id, logprob: logits[id] - lse, topLogprobs: top.map((e) => ({ id: e.id, logprob: e.l - lse })) };
    }
    if (enabled.some((s) => s !== "temperature")) list.sort((a, b) => b.l - a.l || a.id - b.id);
    for (const s of enabled) list = stages[s](list);
    const { weights, total, lse } = softmax(list);
    const target = rng.nextFloat() * total;
    let mass = 0;
    const chosen = list[weights.findIndex((w) => target < (mass += w))];
    const top = [...list].sort((a, b) => b.l - a.l || a.id - b.id).slice(0, o.logprobs);
    return { id: chosen.id, logprob: chosen.l - lse, topLogprobs: top.map((e) => ({ id: e.id, logprob: e.l - lse })) };
  };
}

function assertSameToken(actual, expected, context) {
  assert.equal(actual.id, expected.id, context);
  assert.ok(Math.abs(actual.logprob - expected.logprob) < 1e-9, `${context}: logprob ${actual.logprob} vs ${expected.logprob}`);
  assert.deepEqual(actual.topLogprobs.map((t) => t.id), expected.topLogprobs.map((t) => t.id), context);
  actual.topLogprobs.forEach((t, i) => assert.ok(Math.abs(t.logprob - expected.topLogprobs[i].logprob) < 1e-9, context));
}

test("a no-op hook (TypeScript top-k) gives exactly what the engine's top-k gives", () => {
  const V = 5000;
  const random = makeRandom(11);
  for (const options of [{ seed: 5, logprobs: 5 }, { seed: 6, topK: 7, temperature: 1.3, topP: 0.8, logprobs: 3 }, { seed: 7, temperature: 0, logprobs: 4 }]) {
    const native = makeSampler(options, V);
    const inTs = makeSampler({ ...options, logitsProcessor() {} }, V);
    assert.equal(inTs.candidatesNeeded, 0);
    for (let step = 0; step < 30; step++) {
      const logits = randomLogits(random, V);
      const top = Int32Array.from(rankedIds(logits).slice(0, native.candidatesNeeded));
      assert.deepEqual(inTs.sample(logits.slice(), undefined, []), native.sample(logits.slice(), top, []));
    }
  }
});

test("modified logits: the sampler matches the slow reference on random logits", () => {
  const V = 3000;
  const random = makeRandom(2024);
  const bias = { 0: 2, 17: -Infinity, 42: 1.25, 2999: -3 };
  const hook = (logits, tokens) => {
    logits[tokens.length % V] += 1.5;
    logits[100] = -Infinity;
  };
  const chains = [
    {},
    { topK: 0 },
    { topK: 0, topP: 1, minP: 0, temperature: 0.9 },
    { typicalP: 0.7, topK: 100 },
    { topK: 0, typicalP: 0.5, minP: 0 },
    { samplers: ["temperature", "top_p", "top_k", "min_p"], temperature: 1.7, topK: 20 },
    { samplers: ["min_p", "temperature", "top_k"], minP: 0.01, topK: 300, temperature: 0.5 },
    { temperature: 0 },
  ];
  const modifiers = [
    { logitBias: bias },
    { repeatPenalty: 1.3, frequencyPenalty: 0.2, presencePenalty: 0.4, repeatLastN: 16 },
    { logitsProcessor: hook, repeatPenalty: 0.8, repeatLastN: -1 },
  ];
  for (const [c, chain] of chains.entries()) {
    for (const [m, modifier] of modifiers.entries()) {
      const options = { seed: 100 * c + m, logprobs: 6, ...chain, ...modifier };
      const sampler = makeSampler(options, V);
      const reference = referenceSampler(options, V);
      assert.equal(sampler.candidatesNeeded, 0);
      const tokens = Array.from({ length: 20 }, () => Math.floor(random() * 50));
      for (let step = 0; step < 8; step++) {
        const logits = randomLogits(random, V);
        const expected = reference(logits, tokens);
        const actual = sampler.sample(logits.slice(), undefined, tokens);
        assertSameToken(actual, expected, `chain ${c}, modifier ${m}, step ${step}`);
        tokens.push(actual.id);
      }
    }
  }
});

test("TypeScript top-k selection equals a full sort, with ties, NaN and -Infinity", () => {
  const random = makeRandom(3);
  for (const [n, k] of [[1, 1], [10, 10], [100, 1], [1000, 40], [32000, 40], [2000, 2000]]) {
    const values = randomLogits(random, n);
    for (let i = 0; i < n; i += 7) values[i] = random() < 0.5 ? NaN : -Infinity;
    const out = new CandidateList(k);
    selectTopK(values, k, out);
    const expected = rankedIds(values).slice(0, k);
    assert.equal(out.size, Math.min(k, n));
    assert.deepEqual(Array.from(out.ids.subarray(0, out.size)), expected.slice(0, out.size));
    assert.deepEqual(Array.from(out.logits.subarray(0, out.size)), expected.slice(0, out.size).map((id) => rankValue(values[id])));
  }
});

test("ranking the whole vocabulary (radix sort) equals a comparator sort and drops impossible tokens", () => {
  const random = makeRandom(4);
  const special = [0, -0, Infinity * -1, NaN, 3.4e38, -3.4e38, 1e-45, -1e-45, 0.5, -0.5];
  for (const n of [1, 37, 4096, 32000]) {
    const logits = randomLogits(random, n);
    for (let i = 0; i < n; i += 5) logits[i] = special[Math.floor(random() * special.length)];
    const list = new CandidateList(n);
    rankVocabulary(list, logits, new RadixSorter(n));
    const expected = rankedIds(logits).filter((id) => logits[id] > -Infinity);
    assert.deepEqual(Array.from(list.ids.subarray(0, list.size)), expected);
    assert.deepEqual(Array.from(list.logits.subarray(0, list.size)), expected.map((id) => logits[id]));
  }
});
