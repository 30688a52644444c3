#!/usr/bin/env node
"use strict";
// Constrained decoding speed: decode tok/s (Completion.stats.decodeTps, after the first token) of the same sampled
// generation unconstrained and under grammars whose masks cost the most: free text (every token allowed, the trie
// walked whole once), a JSON string that never closes (a mask per escape state), and JSON (`json: true`, many states;
// it ends when the value is complete, so it generates fewer tokens). Each run has a prompt of its own; the median of
// --runs. Prints a markdown table with each case's ratio to unconstrained (the target: >= 90%).
// Usage: node bench/constrained.js --model PATH [--tokens 128] [--runs 3] [--ctx 512] [--device cpu|cuda] [--threads N]
const { parseArgs } = require("node:util");
const { loadModel } = require("../dist/cjs/index.js");
const { positiveOption, usageError } = require("./usage.js");

const USAGE = "usage: node bench/constrained.js --model PATH [--tokens 128] [--runs 3] [--ctx 512] [--device cpu|cuda] [--threads N]";
const { values } = parseArgs({
  options: {
    model: { type: "string" }, tokens: { type: "string", default: "128" }, runs: { type: "string", default: "3" },
    ctx: { type: "string", default: "512" }, device: { type: "string", default: "cpu" }, threads: { type: "string" },
  },
});
const positive = (name) => positiveOption(values, name, USAGE);
if (!values.model) usageError(USAGE);
const TOKENS = positive("tokens");
const RUNS = positive("runs");
const CTX = positive("ctx");

const CASES = [
  ["unconstrained", {}],
  ["free text (every token)", { grammar: "root ::= [^\\x00]*" }],
  ["JSON string, never closed", { grammar: 'root ::= "\\"" ( [^"\\\\\\x00-\\x1f] | "\\\\" ["\\\\/bfnrt] )*' }],
  ["json: true", { json: true }],
];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const model = await loadModel(values.model, {
    contextSize: CTX, device: values.device, ...(values.threads ? { threads: positive("threads") } : {}),
  });
  try {
    const rows = [];
    let baseline;
    for (const [name, constraint] of CASES) {
      const speeds = [];
      const lengths = [];
      for (let run = 0; run < RUNS; run++) {
        // A prompt per case and run, so that no run adopts another's cached prefix.
        const prompt = `Run ${run} of ${name}: the state of the union`;
        const { stats } = await model.complete(prompt, { ...constraint, maxTokens: TOKENS, seed: run, temperature: 0.8, ignoreEos: true });
        speeds.push(stats.decodeTps);
        lengths.push(stats.genTokens);
      }
      const tps = median(speeds);
      baseline ??= tps;
      rows.push(`| ${name} | ${median(lengths)} | ${tps.toFixed(1)} | ${((100 * tps) / baseline).toFixed(0)}% |`);
    }
    console.log(`model ${values.model}, ${model.info.device}, ${model.info.threads} threads, vocabulary ${model.info.vocabSize}, median of ${RUNS}\n`);
    console.log("| case | tokens | decode tok/s | vs unconstrained |\n|---|---|---|---|");
    for (const row of rows) console.log(row);
  } finally {
    await model.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
