#!/usr/bin/env node
"use strict";
// `llama-napi bench` once per CPU kernel set this machine runs (LLAMA_NAPI_KERNELS forced in turn: avx512-vnni,
// avx512, avx2-vnni, avx2), so that a table covers the CPUs without VNNI or AVX-512 too; with --repack-ab, each set
// also with LLAMA_NAPI_REPACK=0 (the weights multiplied from the mapped file instead of the load-time repacked copy).
// Every other argument goes to `llama-napi bench` unchanged; each run prints its own table under its "cpu kernels"
// line.
// Usage: node bench/kernel-sets.js [--repack-ab] -- <llama-napi bench arguments>
//   e.g. node bench/kernel-sets.js --repack-ab -- --model F --threads 1,2 --pp 64 --tg 64 -r 3 --peer PATH/llama-bench
const path = require("node:path");
const { spawnSync } = require("node:child_process");

const SETS = ["avx512-vnni", "avx512", "avx2-vnni", "avx2"];
const CLI = path.join(__dirname, "..", "dist", "cjs", "cli", "main.js");
const ADDON_ROOT = path.join(__dirname, "..");

const separator = process.argv.indexOf("--");
const own = separator < 0 ? process.argv.slice(2) : process.argv.slice(2, separator);
const benchArgs = separator < 0 ? [] : process.argv.slice(separator + 1);
const unknown = own.filter((a) => a !== "--repack-ab");
if (unknown.length > 0 || benchArgs.length === 0) {
  console.error("usage: node bench/kernel-sets.js [--repack-ab] -- <llama-napi bench arguments>");
  process.exit(2);
}
const repackAb = own.includes("--repack-ab");

/** The set the addon picks when LLAMA_NAPI_KERNELS names `set`: the set itself where the CPU has it. */
function pickedSet(set) {
  const probe = spawnSync(process.execPath, ["-e", `console.log(require("node-gyp-build")(${JSON.stringify(ADDON_ROOT)}).cpuFeatures())`], {
    encoding: "utf8",
    env: { ...process.env, LLAMA_NAPI_KERNELS: set },
  });
  return probe.status === 0 ? probe.stdout.trim() : undefined;
}

let failed = false;
for (const set of SETS) {
  if (pickedSet(set) !== set) {
    console.log(`\n## ${set}: not on this CPU (or this build), skipped`);
    continue;
  }
  for (const repack of repackAb ? ["1", "0"] : ["1"]) {
    console.log(`\n## LLAMA_NAPI_KERNELS=${set}${repackAb ? ` LLAMA_NAPI_REPACK=${repack}` : ""}`);
    const run = spawnSync(process.execPath, [CLI, "bench", ...benchArgs], {
      stdio: "inherit",
      env: { ...process.env, LLAMA_NAPI_KERNELS: set, LLAMA_NAPI_REPACK: repack },
    });
    if (run.status !== 0) failed = true;
  }
}
process.exit(failed ? 1 : 0);
