#!/usr/bin/env node
"use strict";
// Many streams at once: aggregate tok/s of N concurrent generations through model.complete (the engine's decode
// loop), greedy and sampled (temperature 0.8, the default chain), beside the engine alone (context.greedy: one
// sequence per call, no JavaScript between tokens; its calls are not batched with each other). Prints a markdown
// table. Each stream has a 4-token prompt of its own (no cached prefix) and generates exactly --tokens tokens.
// Usage: node bench/concurrency.js --model PATH [--streams 1,4,16,64] [--tokens 128] [--ctx 512] [--runs 1]
//        [--device cpu|cuda] [--threads N]
const { parseArgs } = require("node:util");
const { performance } = require("node:perf_hooks");
const { loadModel } = require("../dist/cjs/index.js");
const { positiveOption, usageError } = require("./usage.js");

const USAGE =
  "usage: node bench/concurrency.js --model PATH [--streams 1,4,16,64] [--tokens 128] [--ctx 512] [--runs 1] [--device cpu|cuda] [--threads N]";
const { values } = parseArgs({
  options: {
    model: { type: "string" }, streams: { type: "string", default: "1,4,16,64" }, tokens: { type: "string", default: "128" },
    ctx: { type: "string", default: "512" }, runs: { type: "string", default: "1" }, device: { type: "string", default: "cpu" },
    threads: { type: "string" },
  },
});
const positive = (name) => positiveOption(values, name, USAGE);
if (!values.model) usageError(USAGE);
const TOKENS = positive("tokens");
const RUNS = positive("runs");
const CTX = positive("ctx");
const STREAMS = values.streams.split(",").map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) usageError(USAGE, "--streams takes positive integers separated by commas");
  return n;
});
if (4 + TOKENS > CTX) {
  console.error(`--ctx ${CTX} cannot hold a 4-token prompt and ${TOKENS} tokens`);
  process.exit(2);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A 4-token prompt no other stream or run shares (BOS, then ids from the stream and run numbers). */
let promptCounter = 0;
function freshPrompt(vocabSize) {
  const k = promptCounter++;
  return { tokens: [1, 3 + (k % (vocabSize - 3)), 3 + ((k * 7 + 11) % (vocabSize - 3)), 3 + ((k * 13 + 5) % (vocabSize - 3))] };
}

/** Aggregate tok/s of `n` concurrent runs of `one` (each returns how many tokens it generated), median of RUNS. */
async function aggregate(n, one) {
  const rates = [];
  for (let r = 0; r < RUNS; r++) {
    const t = performance.now();
    const generated = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
    const total = generated.reduce((a, b) => a + b, 0);
    if (total !== n * TOKENS) throw new Error(`${n} streams generated ${total} tokens, expected ${n * TOKENS}`);
    rates.push(total / ((performance.now() - t) / 1000));
  }
  return median(rates);
}

async function main() {
  const model = await loadModel(values.model, {
    contextSize: CTX,
    // Room for every stream's whole context at once (the default pool holds 8 contexts).
    kvCacheTokens: Math.max(8, ...STREAMS) * CTX,
    device: values.device,
    ...(values.threads && { threads: Number(values.threads) }),
  });
  const vocab = model.info.vocabSize;
  const greedy = { temperature: 0, maxTokens: TOKENS, ignoreEos: true };
  const sampled = (seed) => ({ temperature: 0.8, seed, maxTokens: TOKENS, ignoreEos: true });
  const modes = [
    ["model.complete, greedy", () => model.complete(freshPrompt(vocab), greedy).then((c) => c.tokens.length)],
    ["model.complete, sampled (temperature 0.8)", (i) => model.complete(freshPrompt(vocab), sampled(i)).then((c) => c.tokens.length)],
    ["engine alone, context.greedy() per stream (not batched)", () => model.nativeGreedy(freshPrompt(vocab), TOKENS).then((ids) => ids.length)],
  ];
  try {
    await model.complete(freshPrompt(vocab), { ...greedy, maxTokens: 8 }); // warm-up (a CUDA backend captures its graphs)
    const device = model.info.device === "cuda" ? `cuda (${model.info.gpu.name})` : `cpu, ${model.info.threads} threads`;
    console.log(`${values.model}: ${device}, context ${CTX}, 4-token prompts, ${TOKENS} tokens per stream, median of ${RUNS} run(s)\n`);
    console.log(`| aggregate tok/s | ${STREAMS.map((n) => `${n} stream${n > 1 ? "s" : ""}`).join(" | ")} |`);
    console.log(`|---|${STREAMS.map(() => "---").join("|")}|`);
    for (const [name, one] of modes) {
      const cells = [];
      for (const n of STREAMS) cells.push((await aggregate(n, one)).toFixed(1));
      console.log(`| ${name} | ${cells.join(" | ")} |`);
    }
  } finally {
    await model.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
