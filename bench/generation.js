#!/usr/bin/env node
"use strict";
// Generation-level benchmarks on one model file:
//  1. The cost of generate() (the engine's decode loop, streaming its tokens through the detokenizer) against the
//     engine's own greedy loop (context.greedy: no return to JavaScript between tokens).
//  2. Continuous batching: aggregate greedy decode tok/s with 1, 2, 4, 8 concurrent sequences.
// Usage: node bench/generation.js --model PATH [--threads N] [--tokens 128] [--runs 3] [--sequences 1,2,4,8]
const { parseArgs } = require("node:util");
const { performance } = require("node:perf_hooks");
const { loadModel } = require("../dist/cjs/index.js");

const { values } = parseArgs({
  options: {
    model: { type: "string" }, threads: { type: "string" }, tokens: { type: "string", default: "128" },
    runs: { type: "string", default: "3" }, sequences: { type: "string", default: "1,2,4,8" },
  },
});
if (!values.model) {
  console.error("usage: node bench/generation.js --model PATH [--threads N] [--tokens 128] [--runs 3] [--sequences 1,2,4,8]");
  process.exit(2);
}
const TOKENS = Number(values.tokens);
const RUNS = Number(values.runs);
const PROMPTS = [
  "The President said that",
  "Once upon a time, in a land far away,",
  "The Congress of the United States",
  "It was a dark and stormy night;",
  "Call me Ishmael.",
  "In the year of our Lord",
  "The state of the Union is",
  "We the people",
];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * The prompt's ids with a first token of its own for each run: the model reuses the cached prefix of an earlier
 * prompt, and every run must do the same work (a full prefill).
 */
const fresh = (ids, run) => ({ tokens: [100 + run, ...ids.slice(1)] });

async function main() {
  const model = await loadModel(values.model, { threads: values.threads ? Number(values.threads) : undefined });
  const greedy = { temperature: 0, maxTokens: TOKENS, ignoreEos: true };
  const prompt = model.tokenize(PROMPTS[0], { addBos: true });
  console.log(`model ${values.model}, ${model.info.threads} threads, ${TOKENS} tokens per sequence, median of ${RUNS} runs\n`);

  // 1. Greedy: both paths time the same work (prefill, then TOKENS - 1 single-token steps), runs interleaved.
  await model.complete(fresh(prompt, 0), { ...greedy, maxTokens: 8 }); // warm up
  const native = [];
  const js = [];
  for (let r = 1; r <= RUNS; r++) {
    let t = performance.now();
    const ids = await model.nativeGreedy(fresh(prompt, r), TOKENS);
    native.push(TOKENS / ((performance.now() - t) / 1000));
    t = performance.now();
    const done = await model.complete(fresh(prompt, r), greedy);
    js.push(TOKENS / ((performance.now() - t) / 1000));
    if (done.tokens.join() !== ids.join()) throw new Error("generate() and the native loop disagree");
  }
  const ratio = median(js) / median(native);
  console.log("| greedy decode | tok/s |");
  console.log("|---|---|");
  console.log(`| native loop (context.greedy) | ${median(native).toFixed(1)} |`);
  console.log(`| generate() (decode loop + detokenizer) | ${median(js).toFixed(1)} (${(ratio * 100).toFixed(1)}%) |\n`);

  // 2. Concurrent sequences.
  const counts = values.sequences.split(",").map(Number);
  const rows = [];
  let single;
  for (const n of counts) {
    const rates = [];
    for (let r = 0; r < RUNS; r++) {
      const run = RUNS + 1 + counts.indexOf(n) * RUNS + r;
      const t = performance.now();
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) => model.complete(fresh(model.tokenize(PROMPTS[i % PROMPTS.length], { addBos: true }), run), greedy)),
      );
      const generated = results.reduce((sum, c) => sum + c.tokens.length, 0);
      rates.push(generated / ((performance.now() - t) / 1000));
    }
    const rate = median(rates);
    single ??= rate;
    rows.push(`| ${n} | ${rate.toFixed(1)} | ${(rate / single).toFixed(2)}x |`);
  }
  console.log("| concurrent sequences | aggregate tok/s | vs 1 |");
  console.log("|---|---|---|");
  for (const row of rows) console.log(row);
  await model.dispose();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
