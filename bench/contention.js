#!/usr/bin/env node
"use strict";
// Decode speed with and without a busy neighbour: another process spinning on one core, as on a shared machine.
// A thread pool whose loops wait for a descheduled worker collapses there (2 threads far slower than 1); this
// bench shows whether it does. Each round measures every thread count quiet and then beside the neighbour,
// back to back, through `llama-napi bench --json` (one run each); medians over the rounds.
//
// Usage: node bench/contention.js --model FILE [--threads 1,2,4] [--tg 128] [--rounds 5] [--neighbours 1]
const { spawn, execFileSync } = require("node:child_process");
const path = require("node:path");
const { parseArgs } = require("node:util");

const { values: o } = parseArgs({
  options: {
    model: { type: "string" },
    threads: { type: "string", default: "1,2,4" },
    tg: { type: "string", default: "128" },
    rounds: { type: "string", default: "5" },
    neighbours: { type: "string", default: "1" },
  },
});
if (!o.model) {
  console.error("usage: node bench/contention.js --model FILE [--threads 1,2,4] [--tg 128] [--rounds 5] [--neighbours 1]");
  process.exit(2);
}
const cli = path.join(__dirname, "..", "dist", "cjs", "cli", "main.js");
const threadCounts = o.threads.split(",").map(Number);

function decodeTokensPerSecond(threads) {
  const out = execFileSync(process.execPath, [cli, "bench", "--model", o.model, "--threads", String(threads), "--pp", "0", "--tg", o.tg, "-r", "1", "--json"], { encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop()).tokensPerSecond;
}

/** Runs fn while `count` processes spin, each on a core of its own choosing. */
function besideNeighbours(count, fn) {
  const spinners = Array.from({ length: count }, () => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
  try {
    execFileSync("sleep", ["0.2"]); // let them start spinning
    return fn();
  } finally {
    for (const s of spinners) s.kill("SIGKILL");
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const runs = new Map(threadCounts.flatMap((t) => [[`${t} quiet`, []], [`${t} busy`, []]]));
for (let round = 0; round < Number(o.rounds); round++) {
  for (const t of threadCounts) {
    runs.get(`${t} quiet`).push(decodeTokensPerSecond(t));
    runs.get(`${t} busy`).push(besideNeighbours(Number(o.neighbours), () => decodeTokensPerSecond(t)));
  }
}
console.log(`${path.basename(o.model)}, tg${o.tg}, ${o.neighbours} busy-loop neighbour(s), medians of ${o.rounds} rounds`);
console.log(`| threads | quiet tok/s | beside the neighbour tok/s | busy ÷ busy at ${threadCounts[0]} thread(s) |`);
console.log("|---|---|---|---|");
const busyOne = median(runs.get(`${threadCounts[0]} busy`));
for (const t of threadCounts) {
  const quiet = median(runs.get(`${t} quiet`)), busy = median(runs.get(`${t} busy`));
  console.log(`| ${t} | ${quiet.toFixed(1)} | ${busy.toFixed(1)} | ${(busy / busyOne).toFixed(2)}× |`);
}
