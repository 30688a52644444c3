#!/usr/bin/env node
"use strict";
// Load-to-first-token of a model as given against its serialized file (model.saveSerialized). Each measurement runs
// in a fresh Node process (nothing parsed or compiled carries over), after one unmeasured run of each that warms
// the page cache, so both read their files from memory: what is compared is the preparation work, not the disk.
// Also checks that both give the same greedy tokens.
//
// Usage: node bench/serialized-load.js MODEL [--device cpu|cuda|auto] [--runs N] [--threads N] [--out FILE]
//   MODEL   a model path loadModel takes (e.g. ../shared/models/trained/sotu-l3-26m, a 7B GGUF)
//   --out   where the serialized file goes (default: the temp folder; it is removed afterwards unless --out is given)
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { parseArgs } = require("node:util");

const LIB = path.join(__dirname, "..", "dist", "cjs", "index.js");
const PROMPT = "The history of the";
const GREEDY_TOKENS = 16;

/** In a child: loads the model, generates greedily, prints one JSON line of timings (ms) and the tokens. */
async function child(modelPath, device, threads) {
  const { performance } = require("node:perf_hooks");
  const start = performance.now();
  const { loadModel } = require(LIB);
  const model = await loadModel(modelPath, { device, threads });
  const loaded = performance.now();
  const it = model.generate(PROMPT, { maxTokens: GREEDY_TOKENS, temperature: 0 });
  const tokens = [];
  let firstToken;
  for await (const t of it) {
    firstToken ??= performance.now();
    tokens.push(t.id);
  }
  await model.dispose();
  process.stdout.write(`${JSON.stringify({ loadMs: loaded - start, firstTokenMs: firstToken - start, tokens, device: model.info.device })}\n`);
}

function measure(modelPath, device, threads) {
  const args = [__filename, "--child", modelPath, "--device", device, ...(threads ? ["--threads", String(threads)] : [])];
  const r = spawnSync(process.execPath, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`measuring ${modelPath} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      child: { type: "boolean" },
      device: { type: "string", default: "auto" },
      runs: { type: "string", default: "5" },
      threads: { type: "string" },
      out: { type: "string" },
    },
  });
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (values.child) return child(positionals[0], values.device, threads);
  if (positionals.length !== 1) {
    console.error("usage: node bench/serialized-load.js MODEL [--device cpu|cuda|auto] [--runs N] [--threads N] [--out FILE]");
    process.exitCode = 2;
    return;
  }
  const modelPath = path.resolve(positionals[0]);
  const runs = Number(values.runs);
  const file = path.resolve(values.out ?? path.join(os.tmpdir(), `serialized-load-${process.pid}.llnm`));
  try {
    const { loadModel } = require(LIB);
    const model = await loadModel(modelPath, { device: values.device, threads });
    const { bytes } = await model.saveSerialized(file);
    const { device } = model.info;
    await model.dispose();
    console.log(`${modelPath} -> ${file} (${(bytes / 2 ** 20).toFixed(1)} MiB), device ${device}, ${runs} runs each, ${os.cpus()[0].model}`);
    const results = {};
    for (const [name, p] of [["original", modelPath], ["serialized", file]]) {
      measure(p, device, threads); // warms the page cache
      results[name] = Array.from({ length: runs }, () => measure(p, device, threads));
    }
    const same = JSON.stringify(results.original[0].tokens) === JSON.stringify(results.serialized[0].tokens);
    for (const name of ["original", "serialized"]) {
      const r = results[name];
      console.log(
        `${name.padEnd(11)} load ${median(r.map((x) => x.loadMs)).toFixed(1).padStart(9)} ms   load-to-first-token ${median(r.map((x) => x.firstTokenMs)).toFixed(1).padStart(9)} ms  (median)`,
      );
    }
    const speedup = median(results.original.map((x) => x.firstTokenMs)) / median(results.serialized.map((x) => x.firstTokenMs));
    console.log(`load-to-first-token: serialized is ${speedup.toFixed(2)}x faster; greedy ${GREEDY_TOKENS} tokens ${same ? "identical" : "DIFFER"}`);
    if (!same) process.exitCode = 1;
  } finally {
    if (values.out === undefined) fs.rmSync(file, { force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
