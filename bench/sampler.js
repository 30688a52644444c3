"use strict";
// The sampler's cost.
//  1. One sampling step, the engine's sampler (Sampler) against the TypeScript reference (ReferenceSampler), over
//     a 32,000-token vocabulary of random logits: µs per step for the chains generation uses.
//  2. With --model: one stream through model.complete, greedy against sampled (temperature 0.8, default chain),
//     sampled with the engine's sampler and with the reference swapped in: what the native sampler alone changes.
// Usage: npm run build:ts && node bench/sampler.js [--model PATH --threads 2 --tokens 128 --runs 3]
// (run on an idle machine: timings are wall-clock)
const { parseArgs } = require("node:util");
const { performance } = require("node:perf_hooks");
const sampling = require("../dist/cjs/sampling/sampler.js");
const { ReferenceSampler } = require("../dist/cjs/sampling/reference.js");
const { makeRandom } = require("../test/helpers/random.js");

const { Sampler, resolveSampling } = sampling;
const VOCAB = 32000;
const STEPS = 2000;

/** The engine's top-k of the logits (what a forward pass returns when the sampler asks for candidates). */
function engineTop(logits, k) {
  return Int32Array.from([...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k));
}

function microsecondsPerStep(sampler, inputs, history) {
  // Copies, reused step after step: the penalties change them in place, which does not change what a step costs.
  const copies = inputs.map(({ logits }) => logits.slice());
  const start = process.hrtime.bigint();
  for (let i = 0; i < STEPS; i++) {
    const { top } = inputs[i % inputs.length];
    sampler.sample(copies[i % copies.length], sampler.candidatesNeeded > 0 ? top : undefined, history);
  }
  return Number(process.hrtime.bigint() - start) / 1e3 / STEPS;
}

function stepCosts() {
  const random = makeRandom(1);
  const inputs = Array.from({ length: 16 }, () => {
    const logits = Float32Array.from({ length: VOCAB }, () => (random() + random() + random() - 1.5) * 8);
    return { logits, top: engineTop(logits, 40) };
  });
  const history = Array.from({ length: 64 }, () => Math.floor(random() * VOCAB));
  const chains = {
    "default chain (engine top-40)": {},
    "default chain, logprobs 5": { logprobs: 5 },
    "default chain + repeat penalty (ranks the logits itself)": { repeatPenalty: 1.1 },
    "top-k off (whole vocabulary ranked)": { topK: 0 },
    "temperature only (whole vocabulary, unranked)": { topK: 0, topP: 1, minP: 0 },
    "greedy + logprobs 5": { temperature: 0, logprobs: 5 },
  };
  console.log(`| one step, ${VOCAB} tokens (${STEPS} steps) | native µs | reference µs |`);
  console.log("|---|---|---|");
  for (const [name, options] of Object.entries(chains)) {
    const resolved = resolveSampling({ seed: 7, ...options }, VOCAB);
    const native = microsecondsPerStep(new Sampler(resolved, VOCAB), inputs, history);
    const reference = microsecondsPerStep(new ReferenceSampler(resolved, VOCAB), inputs, history);
    console.log(`| ${name} | ${native.toFixed(1)} | ${reference.toFixed(1)} |`);
  }
}

async function streams(modelPath, threads, tokens, runs) {
  const { loadModel } = require("../dist/cjs/index.js");
  const model = await loadModel(modelPath, { threads });
  const prompt = model.tokenize("Once upon a time, in a land far away,", { addBos: true });
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const kinds = {
    greedy: { options: { temperature: 0 }, sampler: Sampler },
    "sampled, engine's sampler": { options: { temperature: 0.8, seed: 1 }, sampler: Sampler },
    "sampled, TypeScript reference": { options: { temperature: 0.8, seed: 1 }, sampler: ReferenceSampler },
  };
  const rates = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]));
  await model.complete({ tokens: prompt }, { maxTokens: 8, ignoreEos: true }); // warm up
  for (let r = 0; r < runs; r++) {
    for (const [name, { options, sampler }] of Object.entries(kinds)) {
      // model.ts constructs sampling.Sampler per call: the reference takes its place for its rows.
      sampling.Sampler = sampler;
      // A first token of its own per run and kind, so that each does a full prefill rather than reuse a cache.
      const ids = [100 + r * 10 + Object.keys(kinds).indexOf(name), ...prompt.slice(1)];
      const done = await model.complete({ tokens: ids }, { ...options, maxTokens: tokens, ignoreEos: true });
      rates[name].push(done.stats.decodeTps);
    }
  }
  sampling.Sampler = Sampler;
  const greedy = median(rates.greedy);
  console.log(`\n| one stream, ${modelPath}, ${threads} threads, ${tokens} tokens, median of ${runs} | decode tok/s | vs greedy |`);
  console.log("|---|---|---|");
  for (const name of Object.keys(kinds)) console.log(`| ${name} | ${median(rates[name]).toFixed(1)} | ${((median(rates[name]) / greedy) * 100).toFixed(0)}% |`);
  await model.dispose();
}

async function main() {
  const { values } = parseArgs({
    options: { model: { type: "string" }, threads: { type: "string", default: "2" }, tokens: { type: "string", default: "128" }, runs: { type: "string", default: "3" } },
  });
  stepCosts();
  if (values.model) await streams(values.model, Number(values.threads), Number(values.tokens), Number(values.runs));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
