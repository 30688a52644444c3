#!/usr/bin/env node
"use strict";
// Decode and prefill speed of the native engine on a random f32 model shaped like stories110M (llama2.c):
// dim 768, 12 layers, 12 heads, hidden 2048, vocab 32000, tied embeddings. The weights file (~420 MB) is made
// once in the temp folder and reused. Usage: node bench/native-decode.js [threads...]   (default: 1 2)
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const binding = require("node-gyp-build")(path.join(__dirname, ".."));

const CONFIG = { dim: 768, hiddenDim: 2048, layers: 12, heads: 12, kvHeads: 12, headDim: 64, vocabSize: 32000, normEps: 1e-5 };
const DECODE_TOKENS = 64;
const PREFILL_TOKENS = 128;
const RUNS = 3;

function tensorList(c) {
  const list = [["token_embd.weight", [c.vocabSize, c.dim]]];
  for (let l = 0; l < c.layers; l++) {
    const p = `blk.${l}.`;
    list.push(
      [p + "attn_norm.weight", [c.dim]],
      [p + "attn_q.weight", [c.heads * c.headDim, c.dim]],
      [p + "attn_k.weight", [c.kvHeads * c.headDim, c.dim]],
      [p + "attn_v.weight", [c.kvHeads * c.headDim, c.dim]],
      [p + "attn_output.weight", [c.dim, c.heads * c.headDim]],
      [p + "ffn_norm.weight", [c.dim]],
      [p + "ffn_gate.weight", [c.hiddenDim, c.dim]],
      [p + "ffn_up.weight", [c.hiddenDim, c.dim]],
      [p + "ffn_down.weight", [c.dim, c.hiddenDim]],
    );
  }
  list.push(["output_norm.weight", [c.dim]]);
  return list;
}

/** Lays the tensors out back to back and writes random weights unless a file of the right size exists. */
function makeModelFile(file) {
  let offset = 0;
  const tensors = tensorList(CONFIG).map(([name, shape]) => {
    const t = { name, file: 0, offset, type: 0, shape };
    offset += shape.reduce((a, b) => a * b, 1) * 4;
    return t;
  });
  if (!fs.existsSync(file) || fs.statSync(file).size !== offset) {
    console.log(`writing ${(offset / 2 ** 20).toFixed(0)} MiB of random weights to ${file}`);
    const fd = fs.openSync(file, "w");
    const chunk = new Float32Array(1 << 20);
    let seed = 12345;
    for (let written = 0; written < offset; written += chunk.byteLength) {
      for (let i = 0; i < chunk.length; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        chunk[i] = (seed / 4294967296 - 0.5) * 0.05;
      }
      fs.writeSync(fd, Buffer.from(chunk.buffer, 0, Math.min(chunk.byteLength, offset - written)));
    }
    fs.closeSync(fd);
  }
  return tensors;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function bench(file, tensors, threads) {
  const ropeFreqs = new Float32Array(CONFIG.headDim / 2).map((_, i) => 1 / Math.pow(10000, (2 * i) / CONFIG.headDim));
  const model = new binding.Model({ files: [file], tensors, threads, config: { ...CONFIG, ropeInterleaved: true, ropeFreqs } });
  const ctx = model.createContext(PREFILL_TOKENS + DECODE_TOKENS);
  const tokens = Int32Array.from({ length: PREFILL_TOKENS }, (_, i) => (i * 7919) % CONFIG.vocabSize);
  await ctx.decode(tokens.subarray(0, 8), 0); // warm up: page in the weights

  const decodeRates = [];
  const prefillRates = [];
  for (let run = 0; run < RUNS; run++) {
    let start = process.hrtime.bigint();
    await ctx.decode(tokens, 0);
    prefillRates.push(PREFILL_TOKENS / (Number(process.hrtime.bigint() - start) / 1e9));

    start = process.hrtime.bigint();
    for (let i = 0; i < DECODE_TOKENS; i++) await ctx.decode(tokens.subarray(i, i + 1), i);
    decodeRates.push(DECODE_TOKENS / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  ctx.close();
  model.close();
  console.log(
    `threads ${threads}: decode ${median(decodeRates).toFixed(1)} tok/s, prefill ${median(prefillRates).toFixed(1)} tok/s` +
      ` (median of ${RUNS}; decode ${DECODE_TOKENS} tokens, prefill ${PREFILL_TOKENS})`,
  );
}

async function main() {
  const threadCounts = process.argv.slice(2).map(Number);
  const file = path.join(os.tmpdir(), "llama-napi-bench-stories110m-f32.bin");
  const tensors = makeModelFile(file);
  console.log(`kernels: ${binding.cpuFeatures()}, physical cores: ${binding.physicalCores()}, load: ${os.loadavg()[0].toFixed(2)}`);
  for (const threads of threadCounts.length ? threadCounts : [1, 2]) await bench(file, tensors, threads);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
