"use strict";
// The command line: run streams text and prints speed; help and usage errors; typed errors as exit codes.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");

const CLI = path.resolve(__dirname, "..", "dist", "cjs", "cli", "main.js");
const cli = (...args) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });

test("run streams the greedy continuation and prints prefill/decode speed", () => {
  const r = cli("run", "--model", DEFAULT_MODEL, "--prompt", "Once upon a time",
    "--max-tokens", "20", "--temperature", "0", "--threads", "1");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Once upon a time, there was a little girl named Lily/);
  assert.match(r.stderr, /prefill: \d+ tokens, [\d.]+ tok\/s \| decode: 20 tokens, [\d.]+ tok\/s/);
});

test("run with a separate llama2.c tokenizer", NEEDS_REFERENCE_MODELS, () => {
  const r = cli("run", "-m", modelPath("tinystories", "stories260K.bin"), "--tokenizer", modelPath("tinystories", "tok512.bin"),
    "-p", "The cat", "-n", "8", "--temp", "0", "--seed", "1", "--top-k", "40", "--top-p", "0.9", "--min-p", "0.05");
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^The cat/);
});

test("--help documents every option", () => {
  const r = cli("run", "--help");
  assert.equal(r.status, 0);
  for (const opt of ["--model", "--prompt", "--max-tokens", "--temperature", "--top-k", "--top-p", "--min-p", "--seed", "--threads"]) {
    assert.ok(r.stdout.includes(opt), opt);
  }
  assert.equal(cli("--help").status, 0);
});

test("usage errors exit 2; model errors exit 1 with the typed error", () => {
  assert.equal(cli("run", "--bogus").status, 2);
  assert.equal(cli("run", "-m", "x", "--max-tokens", "lots").status, 2);
  assert.equal(cli("frobnicate").status, 2);
  const missing = cli("run", "--model", "/nonexistent/model.gguf", "--prompt", "hi");
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /ModelFormatError: .*\/nonexistent\/model\.gguf/);
});

test("bench prints pp and tg figures", () => {
  const r = cli("bench", "--model", DEFAULT_MODEL, "--pp", "16", "--tg", "8", "-r", "1", "--json");
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((x) => x.test), ["pp16", "tg8"]);
  assert.ok(rows.every((x) => x.tokensPerSecond > 0));
});

test("bench --peer runs llama-bench once after each of our runs and prints both medians", () => {
  // A stand-in for llama-bench: logs its arguments, prints llama-bench's JSON with a different speed each call.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-peer-"));
  const log = path.join(dir, "calls.log");
  const fake = path.join(dir, "llama-bench");
  fs.writeFileSync(fake, `#!${process.execPath}
const fs = require("fs");
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify(args) + "\\n");
const calls = fs.readFileSync(${JSON.stringify(log)}, "utf8").trim().split("\\n").length;
const arg = (flag) => Number(args[args.indexOf(flag) + 1]);
console.log(JSON.stringify([
  { n_prompt: arg("-p"), n_gen: 0, avg_ts: 100 * calls },
  { n_prompt: 0, n_gen: arg("-n"), avg_ts: 10 * calls },
]));
`, { mode: 0o755 });
  const model = DEFAULT_MODEL;
  const r = cli("bench", "--model", model, "--pp", "16", "--tg", "8", "-r", "3", "--threads", "1", "--peer", fake, "--json");
  assert.equal(r.status, 0, r.stderr);
  const calls = fs.readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(calls.length, 3);
  for (const args of calls) assert.deepEqual(args, ["-m", model, "-t", "1", "-p", "16", "-n", "8", "-r", "1", "-o", "json"]);
  const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((x) => [x.test, x.runs.length, x.peerRuns, x.peerTokensPerSecond]), [
    ["pp16", 3, [100, 200, 300], 200],
    ["tg8", 3, [10, 20, 30], 20],
  ]);

  fs.writeFileSync(fake, `#!/bin/sh\necho "not json"\n`, { mode: 0o755 });
  const bad = cli("bench", "--model", model, "--pp", "16", "--tg", "0", "-r", "1", "--peer", fake);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--peer: .* did not print llama-bench's JSON/);
  fs.rmSync(dir, { recursive: true, force: true });
});
