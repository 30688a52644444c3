#!/usr/bin/env node
// Times one model on the GPU: pp512 (one batched evaluation of 512 prompt tokens) and tg128 (128 greedy tokens,
// one decode step each: the engine's own loop, whose argmax runs on the device, and the JavaScript generation
// loop), medians of --runs, with the decode roofline: the weights' bytes read once per token at --bandwidth.
// --depth N adds tgN128: 128 greedy tokens after an N-token prompt (as llama-bench -d N -n 128 measures), timed
// from the first generated token to the last, so that the prompt's evaluation is left out.
// Prints one JSON line. Usage: node bench/cuda/bench.js --model FILE [--runs 3] [--bandwidth 3.0e12] [--depth N]
"use strict";
const fs = require("node:fs");
const { parseArgs } = require("node:util");
const { loadModel } = require("../../dist/cjs/index.js");

const { values } = parseArgs({
  options: { model: { type: "string" }, runs: { type: "string", default: "3" }, bandwidth: { type: "string", default: "3.0e12" },
    depth: { type: "string", default: "0" } },
});
if (!values.model) {
  console.error("usage: bench.js --model FILE [--runs 3] [--bandwidth BYTES_PER_S] [--depth N]");
  process.exit(2);
}
const runs = Number(values.runs);
const depth = Number(values.depth);
if (!Number.isInteger(depth) || depth < 0) {
  console.error("--depth takes a whole number of tokens");
  process.exit(2);
}
const contextSize = Math.max(1024, depth + 129); // the prompt, then 129 tokens (the first is not timed)

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function timed(fn) {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

(async () => {
  const loadStart = process.hrtime.bigint();
  const model = await loadModel(values.model, { device: "cuda", contextSize });
  const loadSeconds = Number(process.hrtime.bigint() - loadStart) / 1e9;
  try {
    const engine = model.engine; // internal: the native contexts, without the generation loop
    const context = engine.createContext(1024);
    const prompt = Int32Array.from({ length: 512 }, (_, i) => 100 + ((i * 7919) % 30000));
    await context.decode(prompt.subarray(0, 16), 0, { logits: "none" }); // warm-up: module load, first allocations
    const pp = [];
    for (let r = 0; r < runs; r++) pp.push(512 / (await timed(() => context.decode(prompt, 0, { logits: "last" }))));
    context.close();

    await model.nativeGreedy({ tokens: [1] }, 8); // warm-up: captures the decode graph
    const tg = [];
    for (let r = 0; r < runs; r++) tg.push(128 / (await timed(() => model.nativeGreedy({ tokens: [1] }, 128))));
    const tgJs = [];
    for (let r = 0; r < runs; r++) {
      let n = 0;
      const seconds = await timed(async () => {
        n = (await model.complete({ tokens: [1] }, { temperature: 0, maxTokens: 128, ignoreEos: true })).tokens.length;
      });
      tgJs.push(n / seconds);
    }
    const tgDeep = [];
    if (depth > 0) {
      const tokens = Array.from({ length: depth }, (_, i) => 100 + ((i * 7919) % 30000));
      for (let r = 0; r < runs; r++) {
        let first = 0n;
        let n = 0;
        for await (const _ of model.generate({ tokens }, { temperature: 0, maxTokens: 129, ignoreEos: true })) {
          if (n++ === 0) first = process.hrtime.bigint();
        }
        tgDeep.push((n - 1) / (Number(process.hrtime.bigint() - first) / 1e9));
      }
    }
    const weightBytes = fs.statSync(values.model).size;
    const roofline = Number(values.bandwidth) / weightBytes;
    console.log(JSON.stringify({
      model: values.model, gpu: model.info.gpu?.name, weightType: model.info.weightType, bytes: weightBytes,
      loadSeconds: +loadSeconds.toFixed(1), pp512: +median(pp).toFixed(1), tg128: +median(tg).toFixed(1),
      tg128Js: +median(tgJs).toFixed(1), ...(depth > 0 ? { depth, tg128AtDepth: +median(tgDeep).toFixed(1) } : {}),
      rooflineTokS: +roofline.toFixed(1),
      tgOfRoofline: +(median(tg) / roofline).toFixed(3), runs: { pp, tg, tgJs, tgDeep },
    }));
  } finally {
    await model.dispose();
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
