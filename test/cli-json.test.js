"use strict";
// --json on the commands a script drives: run, chat, quantize, convert print JSON and nothing else on stdout.
// (pull --json is in cli-hub.test.js, beside the local Hub it needs; bench, info, ls and perplexity have their own.)
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");

const CLI = path.resolve(__dirname, "..", "dist", "cjs", "cli", "main.js");
const STORIES = DEFAULT_MODEL;
const cli = (args, input) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", input });

const STATS_KEYS = ["decodeTps", "genTokens", "prefillTokens", "prefillTps", "promptTokens"];

test("run --json: one object with the text, tokens, finishReason and stats, the same text as streaming", () => {
  const args = ["run", "--model", STORIES, "--prompt", "Once upon a time", "--max-tokens", "12", "--temperature", "0", "--threads", "1"];
  const r = cli([...args, "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1, r.stdout);
  const out = JSON.parse(lines[0]);
  assert.equal(out.finishReason, "length");
  assert.equal(out.tokens.length, 12);
  assert.deepEqual(Object.keys(out.stats).sort(), STATS_KEYS);
  assert.equal(out.stats.genTokens, 12);
  const streamed = cli(args);
  assert.equal(streamed.stdout, `Once upon a time${out.text}\n`);
});

test("chat --json: one JSON line per answer from piped input; command messages go to stderr", () => {
  const r = cli(["chat", "--model", STORIES, "--temperature", "0", "--max-tokens", "5", "--threads", "1", "--json"], "Hello.\n/reset\nHello.\n/exit\n");
  assert.equal(r.status, 0, r.stderr);
  const answers = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(answers.length, 2, r.stdout);
  for (const a of answers) {
    assert.equal(typeof a.text, "string");
    assert.ok(a.tokens.length > 0 && a.tokens.length <= 5);
    assert.ok(["stop", "length"].includes(a.finishReason));
    assert.deepEqual(Object.keys(a.stats).sort(), STATS_KEYS);
  }
  assert.deepEqual(answers[1], { ...answers[0], stats: answers[1].stats }, "after /reset the same question gets the same answer");
  assert.match(r.stderr, /\(conversation reset\)/);
});

test("quantize --json and convert --json: a summary object", NEEDS_REFERENCE_MODELS, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-json-"));
  try {
    const q = cli(["quantize", STORIES, path.join(dir, "q8.gguf"), "--type", "q8_0", "--threads", "1", "--json"]);
    assert.equal(q.status, 0, q.stderr);
    const summary = JSON.parse(q.stdout);
    assert.equal(summary.path, path.join(dir, "q8.gguf"));
    assert.equal(summary.type, "q8_0");
    assert.equal(summary.fileType, 7); // llama.cpp's MOSTLY_Q8_0
    assert.ok(summary.bytesWritten > 0 && summary.bytesWritten < fs.statSync(summary.path).size, "weights, without the metadata");
    assert.equal(Object.values(summary.tensorTypes).reduce((a, b) => a + b, 0), summary.tensors);
    assert.ok(summary.tensorTypes.q8_0 > 0 && summary.tensorTypes.f32 > 0, JSON.stringify(summary.tensorTypes)); // norms stay f32
    assert.ok(Array.isArray(summary.notices));

    const c = cli(["convert", modelPath("trained", "sotu-l2-23m"), path.join(dir, "sotu.gguf"), "--json"]);
    assert.equal(c.status, 0, c.stderr);
    const converted = JSON.parse(c.stdout);
    assert.equal(converted.type, "bf16", "convert keeps the input's float type");
    assert.equal(converted.path, path.join(dir, "sotu.gguf"));
    assert.ok(converted.tensors > 0 && converted.bytesWritten > 40e6);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
