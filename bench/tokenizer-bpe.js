"use strict";
// Byte-level BPE tokenizer throughput: load time, tokenize MB/s on held-out English, detokenize MB/s.
// Usage: npx tsc -p tsconfig.json && node bench/tokenizer-bpe.js   (run on an idle machine: timings are wall-clock)
const fs = require("node:fs");
const { loadBpeTokenizer } = require("../dist/cjs/tokenizer/bpe.js");
const { modelPath } = require("../test/helpers/models.js");

const MB = 1024 * 1024;

function time(fn) {
  const start = process.hrtime.bigint();
  const result = fn();
  return { result, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}

async function main() {
  const heldout = fs.readFileSync(modelPath("trained", "heldout.txt"), "utf8");
  // 1 MB of English: the held-out text (about 250 KB) repeated, so later copies hit the piece cache.
  const oneMb = heldout.repeat(Math.ceil(MB / Buffer.byteLength(heldout)));
  const sources = {
    "tokenizer.json": { kind: "hf-json", path: modelPath("llama3", "tokenizer.json"), configPath: modelPath("llama3", "tokenizer_config.json") },
    "tokenizer.model": { kind: "tiktoken", path: modelPath("llama3", "tokenizer.model") },
  };
  for (const [name, source] of Object.entries(sources)) {
    const t0 = process.hrtime.bigint();
    const tokenizer = await loadBpeTokenizer(source);
    const loadSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cold = time(() => tokenizer.tokenize(heldout));
    const fresh = await loadBpeTokenizer(source);
    const big = time(() => fresh.tokenize(oneMb));
    const detok = time(() => fresh.detokenize(big.result));
    const mbOf = (s) => Buffer.byteLength(s) / MB;
    console.log(
      `${name}: load ${loadSeconds.toFixed(2)} s; ` +
        `tokenize ${(mbOf(heldout) / cold.seconds).toFixed(2)} MB/s cold (${mbOf(heldout).toFixed(2)} MB, ${cold.result.length} tokens), ` +
        `${(mbOf(oneMb) / big.seconds).toFixed(2)} MB/s over ${mbOf(oneMb).toFixed(2)} MB (${big.seconds.toFixed(3)} s); ` +
        `detokenize ${(mbOf(oneMb) / detok.seconds).toFixed(1)} MB/s`,
    );
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
