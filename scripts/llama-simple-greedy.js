#!/usr/bin/env node
"use strict";
// Greedy continuations against llama.cpp's llama-simple: for each GGUF given, the first 16 tokens after each public
// prompt of trained/sotu-l2-23m (reference-public.json), ours and llama-simple's. Where they part, prints our two
// most likely tokens at that step and their log-probabilities: llama-simple taking our second choice after a gap of
// a few hundredths is a near-tie that float rounding settles, not a kernel error.
//
// Usage: node scripts/llama-simple-greedy.js FILE.gguf...
//   env LLAMA_SIMPLE   the binary (default: ~/.cache/llama-napi-peers/llamacpp/build/bin/llama-simple, which
//                      ../shared/peers/build-llamacpp.sh builds)
// Needs `npm run build:ts` first.
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const ROOT = path.join(__dirname, "..");
const { loadModel } = require(path.join(ROOT, "dist/cjs/index.js"));
const MODELS = path.resolve(process.env.LLAMA_NAPI_TEST_MODELS ?? path.join(ROOT, "..", "shared", "models"));
const SIMPLE = process.env.LLAMA_SIMPLE ?? path.join(os.homedir(), ".cache", "llama-napi-peers", "llamacpp", "build", "bin", "llama-simple");
const TOKENS = 16;

function llamaSimple(file, prompt) {
  const r = spawnSync(SIMPLE, ["-m", file, "-n", String(TOKENS), prompt], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${SIMPLE} failed on ${file}: ${r.stderr.slice(-1000)}`);
  // It prints the prompt (after "<s> ") and then the continuation.
  const out = r.stdout.replace(/^<s> /, "");
  return (out.startsWith(prompt) ? out.slice(prompt.length) : out).trimEnd();
}

async function main() {
  const { cases } = JSON.parse(fs.readFileSync(path.join(MODELS, "trained", "sotu-l2-23m", "reference-public.json"), "utf8"));
  for (const file of process.argv.slice(2)) {
    const model = await loadModel(file, { threads: 2, contextSize: 128 });
    const partings = [];
    try {
      for (const { prompt } of cases) {
        const theirs = llamaSimple(file, prompt);
        let text = "";
        for await (const step of model.generate(prompt, { temperature: 0, maxTokens: TOKENS, logprobs: 2 })) {
          const next = text + step.piece;
          if (!theirs.startsWith(next.trimEnd())) {
            const [first, second] = step.topLogprobs;
            partings.push(`  ${JSON.stringify(prompt)} after ${JSON.stringify(text.slice(-24))}: ours ${JSON.stringify(first.text)} ` +
              `${first.logprob.toFixed(3)}, then ${JSON.stringify(second.text)} ${second.logprob.toFixed(3)}; llama-simple: ${JSON.stringify(theirs.slice(text.length, text.length + 16))}`);
            break;
          }
          text = next;
        }
      }
    } finally {
      await model.dispose();
    }
    console.log(`${path.basename(file)}: ${cases.length - partings.length}/${cases.length} identical over ${TOKENS} tokens`);
    for (const p of partings) console.log(p);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
