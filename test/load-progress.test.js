"use strict";
// loadModel's onProgress: the bytes of tensor data read so far, strictly rising from 0 to the total; and the CLI's
// load bar, drawn on a terminal only.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { loadModel, InvalidArgumentError } = require("../dist/cjs/index.js");
const { parseModel } = require("../dist/cjs/formats/detect.js");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");

const CLI = path.resolve(__dirname, "..", "dist", "cjs", "cli", "main.js");

test("onProgress reports rising loaded bytes from 0 to the total of the tensor data, then the model works", NEEDS_REFERENCE_MODELS, async () => {
  const dir = modelPath("trained", "sotu-l2-23m"); // 45 MB of bf16 weights: several 8 MiB reads
  const desc = await parseModel(dir);
  const tensorBytes = desc.tensors.reduce((n, t) => n + t.byteLength, 0);
  const events = [];
  const model = await loadModel(dir, { threads: 1, onProgress: (p) => events.push(p) });
  try {
    assert.ok(events.length >= 3, `${events.length} reports`);
    assert.equal(events[0].loadedBytes, 0);
    for (const e of events) assert.equal(e.totalBytes, tensorBytes);
    for (let i = 1; i < events.length; i++) assert.ok(events[i].loadedBytes > events[i - 1].loadedBytes, JSON.stringify(events));
    assert.equal(events.at(-1).loadedBytes, tensorBytes);
    const r = await model.complete("The state of the union", { temperature: 0, maxTokens: 4 });
    assert.equal(r.tokens.length, 4);
  } finally {
    await model.dispose();
  }
});

test("onProgress must be a function; a file cut short fails the read with a ModelFormatError naming it", async () => {
  await assert.rejects(loadModel(DEFAULT_MODEL, { onProgress: 5 }), InvalidArgumentError);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-progress-"));
  try {
    // Parsed before the cut, read after: the native read checks the file's size itself.
    const file = path.join(dir, "cut.gguf");
    fs.copyFileSync(DEFAULT_MODEL, file);
    const events = [];
    await assert.rejects(
      loadModel(file, { onProgress: (p) => (events.push(p), events.length === 1 && fs.truncateSync(file, fs.statSync(file).size - 4096)) }),
      (err) => err.name === "ModelFormatError" && err.message.includes("cut.gguf") && /past the end of the file/.test(err.message),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the CLI draws a load bar on a terminal only", () => {
  const args = ["run", "--model", DEFAULT_MODEL, "--prompt", "Once", "-n", "4", "--temperature", "0", "--threads", "1"];
  const piped = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
  assert.equal(piped.status, 0, piped.stderr);
  assert.doesNotMatch(piped.stderr, /loading|\r/);
  // A terminal as far as the CLI can tell: stderr claims to be a TTY (the bar is then written to the pipe).
  const preload = path.join(os.tmpdir(), `llama-napi-fake-tty-${process.pid}.js`);
  fs.writeFileSync(preload, "Object.assign(process.stderr, { isTTY: true, columns: 120 });\n");
  try {
    const tty = spawnSync(process.execPath, ["--require", preload, CLI, ...args], { encoding: "utf8" });
    assert.equal(tty.status, 0, tty.stderr);
    assert.match(tty.stderr, /\r\x1b\[2K\[#{30}\] 1\.\d MB\/1\.\d MB [\d.]+ MB\/s loading stories260K\.gguf/);
    assert.match(tty.stderr, /loading stories260K\.gguf\r\x1b\[2K/, "the bar is cleared before the output goes on");
  } finally {
    fs.rmSync(preload, { force: true });
  }
});
