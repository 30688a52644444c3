#!/usr/bin/env node
"use strict";
// The greedy continuation of a small model, with the kernel set and the addon binary that computed it, as one JSON
// line: scripts/build-arm64.sh runs it under qemu-aarch64 through Debian's arm64 node and compares the text with the
// x86 build's. The kernel set is the dispatch's (LLAMA_NAPI_KERNELS forces one).
//
// Usage: node scripts/greedy-check.js MODEL.gguf
const path = require("node:path");

const ROOT = path.join(__dirname, "..");
const PROMPT = "Once upon a time";
const TOKENS = 60;

async function main(file) {
  const { loadModel } = require(path.join(ROOT, "dist/cjs/index.js"));
  const { cpuFeatures } = require(path.join(ROOT, "dist/cjs/native/engine.js"));
  const { loadedBinary } = require(path.join(ROOT, "dist/cjs/native/binding.js"));
  const model = await loadModel(file, { threads: 1 });
  const { text } = await model.complete(PROMPT, { temperature: 0, maxTokens: TOKENS, ignoreEos: true });
  await model.dispose();
  const binary = path.relative(ROOT, loadedBinary().path);
  process.stdout.write(`${JSON.stringify({ model: path.basename(file), arch: process.arch, kernels: cpuFeatures(), binary, text })}\n`);
}

if (process.argv.length !== 3) {
  process.stderr.write("usage: node scripts/greedy-check.js MODEL.gguf\n");
  process.exit(2);
}
main(process.argv[2]).catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
