"use strict";
// perplexity(): the windows of both modes, the float64 scores against direct formulas, the whole computation
// against position-by-position evaluate() calls, KL against the model itself, and the CLI.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { spawnSync } = require("node:child_process");
const { DEFAULT_MODEL } = require("./helpers/models.js");
const { writeTinyModel } = require("./helpers/tiny-model.js");
const { loadModel, perplexity, InvalidArgumentError } = require("../dist/cjs/index.js");
const { evalWindows } = require("../dist/cjs/eval/windows.js");
const { negativeLogLikelihood, klDivergence } = require("../dist/cjs/eval/token-scores.js");

const CLI = path.resolve(__dirname, "..", "dist", "cjs", "cli", "main.js");
const TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ".repeat(8);
let model;
before(async () => {
  model = await loadModel(DEFAULT_MODEL, { threads: 1, contextSize: 64 });
});
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "perplexity-"));
after(async () => {
  await model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("windows: every token predicted once by default; llama.cpp's: BOS first, the second half of whole windows", () => {
  const tokens = Array.from({ length: 10 }, (_, i) => 100 + i);
  const all = evalWindows(tokens, 4, 1, "all");
  assert.deepEqual(all.map((w) => [...w.ids]), [[100, 101, 102, 103, 104], [104, 105, 106, 107, 108], [108, 109]]);
  assert.deepEqual(all.map((w) => [w.firstScored, w.lastScored]), [[0, 3], [0, 3], [0, 0]]);
  const cpp = evalWindows(tokens, 4, 1, "llama-cpp");
  assert.deepEqual(cpp.map((w) => [...w.ids]), [[1, 101, 102, 103], [1, 105, 106, 107]]);
  assert.deepEqual(cpp.map((w) => [w.firstScored, w.lastScored]), [[2, 2], [2, 2]]);
  assert.equal(evalWindows(tokens.slice(0, 9), 4, 1, "all").length, 2, "every token after the first predicted once");
  assert.throws(() => evalWindows(tokens.slice(0, 7), 4, 1, "llama-cpp"), /need at least 8 tokens/);
});

test("scores: log-softmax NLL and KL in float64 agree with the direct formulas", () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 30 - 15;
  const a = Float32Array.from({ length: 5000 }, rand);
  const b = Float32Array.from({ length: 5000 }, rand);
  const logZ = (row) => Math.log(row.reduce((s, x) => s + Math.exp(x), 0));
  assert.ok(Math.abs(negativeLogLikelihood(a, 17) - (logZ(a) - a[17])) < 1e-11);
  let kl = 0;
  for (let i = 0; i < a.length; i++) kl += Math.exp(a[i] - logZ(a)) * (a[i] - logZ(a) - (b[i] - logZ(b)));
  assert.ok(Math.abs(klDivergence(a, b) - kl) < 1e-10 * Math.max(1, kl));
  assert.ok(Math.abs(klDivergence(a, a)) < 1e-12);
});

test("perplexity equals the mean NLL of position-by-position evaluate() calls; KL against itself is 0", async () => {
  const r = await perplexity(model, TEXT, { contextSize: 16, maxWindows: 2, base: model });
  assert.equal(r.windows, 2);
  assert.equal(r.scored, 32);
  const tokens = model.tokenize(TEXT, { addBos: true });
  let sum = 0;
  for (const start of [0, 16]) {
    const ids = tokens.slice(start, start + 17);
    for (let i = 0; i < 16; i++) sum += negativeLogLikelihood(await model.evaluate(ids.slice(0, i + 1)), ids[i + 1]);
  }
  assert.ok(Math.abs(r.nll - sum / 32) < 1e-5, `${r.nll} vs ${sum / 32}`);
  assert.ok(Math.abs(r.ppl - Math.exp(r.nll)) < 1e-9);
  assert.ok(r.pplError > 0);
  assert.ok(Math.abs(r.kl.mean) < 1e-9);
  assert.equal(r.kl.top1Agreement, 1);
  assert.ok(Math.abs(r.kl.basePpl - r.ppl) < 1e-9);
  await assert.rejects(perplexity(model, TEXT, { contextSize: 64 }), InvalidArgumentError, "65 tokens do not fit a context of 64");
  await assert.rejects(perplexity(model, TEXT, { contextSize: 15 }), InvalidArgumentError);
  for (const maxWindows of [0, -1, 1.5]) {
    await assert.rejects(perplexity(model, TEXT, { contextSize: 16, maxWindows }), /maxWindows must be a positive integer/);
  }
});

test("CLI: perplexity --json with --chunks, text report with llama.cpp windows, usage and file errors", () => {
  const file = path.join(tmp, "text.txt");
  fs.writeFileSync(file, TEXT);
  const cli = (...args) => spawnSync(process.execPath, [CLI, "perplexity", ...args], { encoding: "utf8" });
  const json = cli("--model", DEFAULT_MODEL, "--file", file, "--ctx", "32", "--chunks", "2", "--json", "-t", "1");
  assert.equal(json.status, 0, json.stderr);
  const r = JSON.parse(json.stdout);
  assert.deepEqual([r.windows, r.scored, r.mode], [2, 64, "all"]);
  const text = cli("-m", DEFAULT_MODEL, "-f", file, "-c", "32", "--llama-cpp-windows", "-t", "1");
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /scored \(second half of each window \(llama\.cpp\)\)/);
  assert.match(text.stdout, /Final estimate: PPL = \d+\.\d{4} \+\/- \d+\.\d{5}/);
  assert.equal(cli("--model", "x").status, 2);
  const missing = cli("--model", DEFAULT_MODEL, "--file", "/nonexistent/text.txt");
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /\/nonexistent\/text\.txt/);
});

test("CLI: --ctx equal to the model's trained context says the default windows need one position more, and what to pass", () => {
  const file = writeTinyModel({ contextLength: 64 });
  const textFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-ppl-")), "text.txt");
  fs.writeFileSync(textFile, TEXT);
  const run = (...args) => spawnSync(process.execPath, [CLI, "perplexity", "--model", file, "--file", textFile, "--threads", "1", ...args], { encoding: "utf8" });
  const refused = run("--ctx", "64");
  assert.equal(refused.status, 1, refused.stderr);
  assert.match(refused.stderr, /--ctx 64: each window is BOS \+ 64 tokens, 65 positions, and contextSize 65 is more than .* allows: 64/);
  assert.match(refused.stderr, /--llama-cpp-windows/);
  // Both ways out it names work.
  assert.equal(run("--ctx", "62").status, 0);
  assert.equal(run("--ctx", "64", "--llama-cpp-windows").status, 0, run("--ctx", "64", "--llama-cpp-windows").stderr);
});
