"use strict";
// The model run, chat and serve use without --model: stories260K, shipped in the repository and the package, so a
// fresh clone (or install) works with no network and no cache.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync, spawn, spawnSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL: EMBEDDED } = require("./helpers/models.js");

const ROOT = path.resolve(__dirname, "..");
const CLI = path.join(ROOT, "dist", "cjs", "cli", "main.js");
const NPX = process.platform === "win32" ? "npx.cmd" : "npx";
const GREEDY_STORY = /^Once upon a time, there was a little girl named Lily/;

/**
 * The CLI as on a machine with no network and an empty cache: the Hub endpoint is a closed port, offline mode is
 * on, and the working directory is elsewhere, so that nothing is found relative to it.
 */
function offlineEnvironment() {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-empty-cache-"));
  const env = { ...process.env, LLAMA_NAPI_CACHE: cache, HF_ENDPOINT: "http://127.0.0.1:1", HF_HUB_OFFLINE: "1", HF_TOKEN: "" };
  return { cache, env, cwd: os.tmpdir() };
}

test("the embedded model is stories260K's published bytes, tracked by git, with its license", () => {
  const sha256 = crypto.createHash("sha256").update(fs.readFileSync(EMBEDDED)).digest("hex");
  assert.equal(sha256, "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
  // In the repository, not just on this disk: a fresh clone has it.
  execFileSync("git", ["ls-files", "--error-unmatch", "models/stories260K.gguf", "models/LICENSE-stories260K"], { cwd: ROOT, stdio: "ignore" });
  assert.match(fs.readFileSync(path.join(ROOT, "models", "LICENSE-stories260K"), "utf8"), /MIT License[\s\S]*Andrej Karpathy/);
});

test("`npx llama-napi run` without --model generates from the embedded model with no network and an empty cache", () => {
  const { cache, env, cwd } = offlineEnvironment();
  const args = ["run", "--prompt", "Once upon a time", "-n", "20", "--temp", "0", "-t", "1"];
  // As a user types it in a clone: npx finds this package's own bin (npm itself offline too).
  const npx = spawnSync(NPX, ["--offline", "llama-napi", ...args], { cwd: ROOT, env: { ...env, npm_config_offline: "true" }, encoding: "utf8" });
  assert.equal(npx.status, 0, npx.stderr);
  assert.match(npx.stdout, GREEDY_STORY);
  // From another directory: the model is found from the package, not from the working directory.
  const elsewhere = spawnSync(process.execPath, [CLI, ...args], { cwd, env, encoding: "utf8" });
  assert.equal(elsewhere.status, 0, elsewhere.stderr);
  assert.equal(elsewhere.stdout, npx.stdout);
  assert.deepEqual(fs.readdirSync(cache), [], "nothing was downloaded");
  fs.rmSync(cache, { recursive: true, force: true });
});

test("chat without --model answers from the embedded model offline", () => {
  const { cache, env, cwd } = offlineEnvironment();
  const r = spawnSync(process.execPath, [CLI, "chat", "--temp", "0", "-n", "5", "-t", "1", "--json"], { cwd, env, input: "Hello.\n", encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const answer = JSON.parse(r.stdout);
  assert.ok(answer.tokens.length > 0 && answer.tokens.length <= 5, r.stdout);
  fs.rmSync(cache, { recursive: true, force: true });
});

test("serve without --model serves the embedded model offline, named after its file", async () => {
  const { cache, env, cwd } = offlineEnvironment();
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", "-t", "1"], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on("close", resolve));
  const url = await new Promise((resolve, reject) => {
    let stdout = "";
    child.stdout.on("data", (d) => {
      stdout += d;
      const m = /at (http:\/\/\S+\/v1)/.exec(stdout);
      if (m) resolve(m[1]);
    });
    child.on("close", () => reject(new Error(`serve exited: ${stderr}`)));
  });
  const models = await (await fetch(`${url}/models`)).json();
  assert.deepEqual(models.data.map((m) => m.id), ["stories260K.gguf"]);
  child.kill("SIGTERM");
  assert.equal(await exited, 0, stderr);
  fs.rmSync(cache, { recursive: true, force: true });
});
