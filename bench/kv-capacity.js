#!/usr/bin/env node
"use strict";
// Many long sequences in one paged KV pool: loads the model with a pool of --streams × --ctx positions, prints
// info.kvCache (and what it reserves), then runs --streams generations at once, each with its own prompt of
// --ctx − --tokens positions (no shared prefix) and --tokens new tokens, so the pool ends up full. Reports the
// pool's peak occupancy, the aggregate prefill and decode rates (decode timed from each stream's first token to its
// last), and the GPU's memory in use at the peak when nvidia-smi is there.
// Usage: node bench/kv-capacity.js --model FILE [--streams 64] [--ctx 4096] [--tokens 64] [--kv-type f16|f32|q8_0]
//        [--device cuda|cpu]
const { execFileSync } = require("node:child_process");
const { parseArgs } = require("node:util");
const { loadModel } = require("../dist/cjs/index.js");
const { positiveOption, usageError } = require("./usage.js");

const USAGE = "usage: node bench/kv-capacity.js --model FILE [--streams 64] [--ctx 4096] [--tokens 64] [--kv-type TYPE] [--device cuda|cpu]";
const { values } = parseArgs({
  options: {
    model: { type: "string" }, streams: { type: "string", default: "64" }, ctx: { type: "string", default: "4096" },
    tokens: { type: "string", default: "64" }, "kv-type": { type: "string", default: "f16" },
    device: { type: "string", default: "cuda" },
  },
});
const positive = (name) => positiveOption(values, name, USAGE);
if (!values.model) usageError(USAGE);
const STREAMS = positive("streams");
const CTX = positive("ctx");
const TOKENS = positive("tokens");
if (TOKENS >= CTX) usageError(USAGE, "--tokens must be below --ctx");

function gpuMemoryUsedMiB() {
  try {
    return Number(execFileSync("nvidia-smi", ["--query-gpu=memory.used", "--format=csv,noheader,nounits"]).toString().split("\n")[0]);
  } catch {
    return undefined;
  }
}

(async () => {
  const model = await loadModel(values.model, {
    device: values.device, contextSize: CTX, kvCacheType: values["kv-type"], kvCacheTokens: STREAMS * CTX,
  });
  try {
    const { kvCache } = model.info;
    const gib = (bytes) => (bytes / 2 ** 30).toFixed(2);
    console.log(`kvCache ${JSON.stringify(kvCache)}: ${gib(kvCache.capacityTokens * kvCache.bytesPerToken)} GiB reserved` +
      ` for ${STREAMS} × ${CTX} positions; GPU memory in use after load: ${gpuMemoryUsedMiB() ?? "n/a"} MiB`);
    const promptLength = CTX - TOKENS;
    // Distinct prompts: each stream's first token differs, so no block is shared and the pool holds them all.
    const ordinaryIds = model.info.vocabSize - 3; // past the usual unk / bos / eos ids
    const prompts = Array.from({ length: STREAMS }, (_, s) =>
      Array.from({ length: promptLength }, (_, i) => 3 + ((s * 104729 + i * 7919) % ordinaryIds)));
    let peakBlocks = 0;
    let peakGpuMiB;
    const firstTokenAt = [];
    const start = performance.now();
    const results = await Promise.all(prompts.map(async (tokens, s) => {
      let n = 0;
      for await (const _ of model.generate({ tokens }, { temperature: 0.8, seed: s, maxTokens: TOKENS, ignoreEos: true })) {
        if (n++ === 0) firstTokenAt[s] = performance.now();
        if (n === TOKENS) {
          peakBlocks = Math.max(peakBlocks, model.kvCacheUsage().usedBlocks);
          if (s === 0) peakGpuMiB = gpuMemoryUsedMiB();
        }
      }
      return { n, end: performance.now() };
    }));
    const end = Math.max(...results.map((r) => r.end));
    const lastFirst = Math.max(...firstTokenAt);
    const generated = results.reduce((sum, r) => sum + r.n, 0);
    console.log(`${STREAMS} streams × (${promptLength} prompt + ${TOKENS} new) positions: all ${generated} tokens generated;` +
      ` peak ${peakBlocks} of ${model.kvCacheUsage().totalBlocks} blocks in use; GPU memory at the peak: ${peakGpuMiB ?? "n/a"} MiB`);
    console.log(`prefill ${((STREAMS * promptLength) / ((lastFirst - start) / 1000)).toFixed(0)} tok/s aggregate` +
      ` (until every stream had its first token); whole run ${(generated / ((end - start) / 1000)).toFixed(1)} new tok/s,` +
      ` ${((end - start) / 1000).toFixed(1)} s`);
  } finally {
    await model.dispose();
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
