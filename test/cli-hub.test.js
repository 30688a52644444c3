"use strict";
// The cache commands (pull, ls, rm) and info, against the local imitation of the Hub.
const { test, before, after, beforeEach, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { FakeHub } = require("./helpers/fake-hub.js");
const { DEFAULT_MODEL: STORIES } = require("./helpers/models.js");

const CLI = path.resolve(__dirname, "..", "dist", "cjs", "cli", "main.js");

const hub = new FakeHub();
let cache;

/** Runs the CLI without blocking this process, which serves the Hub it talks to. */
function cli(args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, LLAMA_NAPI_CACHE: cache, HF_ENDPOINT: hub.endpoint, HF_TOKEN: "", HF_HUB_OFFLINE: "", ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

before(async () => {
  await hub.start();
  hub.addRepo("acme/tiny", { "model.gguf": Buffer.alloc(600_000, 7) });
  hub.addRepo("acme/stories", { "stories260K.gguf": fs.readFileSync(STORIES) });
});

after(() => hub.stop());

beforeEach(() => {
  cache = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-cache-"));
  hub.requests.length = 0;
});

afterEach(() => fs.rmSync(cache, { recursive: true, force: true }));

test("pull fetches into the cache, ls lists it, rm removes it; exit codes say how it went", async () => {
  const pulled = await cli(["pull", "hf:acme/tiny/model.gguf"]);
  assert.equal(pulled.status, 0, pulled.stderr);
  const file = path.join(cache, "hf", "acme", "tiny", "main", "model.gguf");
  assert.equal(pulled.stdout, `hf:acme/tiny/model.gguf: 600.0 kB at ${file}\n`);
  assert.equal(pulled.stderr, "", "no progress bar when stderr is not a terminal");

  const pulledJson = await cli(["pull", "hf:acme/tiny/model.gguf", "--json"]);
  assert.equal(pulledJson.status, 0, pulledJson.stderr);
  assert.deepEqual(JSON.parse(pulledJson.stdout), { spec: "hf:acme/tiny/model.gguf", path: file, files: 1, bytes: 600_000, complete: true });

  const listed = await cli(["ls"]);
  assert.equal(listed.status, 0);
  assert.match(listed.stdout, /^MODEL +SIZE +FILES +PATH\nhf:acme\/tiny\/model\.gguf +600\.0 kB +1 +\S+model\.gguf\n$/);
  const json = await cli(["ls", "--json"]);
  assert.deepEqual(JSON.parse(json.stdout), { spec: "hf:acme/tiny/model.gguf", path: file, files: 1, bytes: 600_000, complete: true });

  const removed = await cli(["rm", "hf:acme/tiny/model.gguf"]);
  assert.equal(removed.status, 0, removed.stderr);
  assert.equal(removed.stdout, "removed hf:acme/tiny/model.gguf (600.0 kB)\n");
  assert.match((await cli(["ls"])).stdout, /^no models in the cache/);
  const again = await cli(["rm", "hf:acme/tiny/model.gguf"]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /InvalidArgumentError: hf:acme\/tiny\/model\.gguf is not in the cache/);
});

test("pull errors: usage is exit 2, a missing file or a local path exit 1 naming it", async () => {
  assert.equal((await cli(["pull"])).status, 2);
  assert.equal((await cli(["rm"])).status, 2);
  const missing = await cli(["pull", "hf:acme/tiny/missing.gguf"]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /DownloadError: hf:acme\/tiny\/missing\.gguf: not found \(404/);
  const local = await cli(["pull", "models/x.gguf"]);
  assert.equal(local.status, 1);
  assert.match(local.stderr, /InvalidArgumentError: models\/x\.gguf: not a Hub model/);
});

test("info --json reports stories260K's shape, weight types, tokenizer and memory", async () => {
  const r = await cli(["info", STORIES, "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.deepEqual(
    { format: report.format, architecture: report.architecture, parameters: report.parameters, weightType: report.weightType },
    { format: "gguf", architecture: "llama", parameters: 292_800, weightType: "f32" },
  );
  assert.deepEqual(report.shape, {
    dim: 64, layers: 5, heads: 8, kvHeads: 4, headDim: 8, hiddenDim: 172, vocabSize: 512, contextLength: 2048, ropeTheta: 10000, tiedEmbeddings: false,
  });
  assert.deepEqual(report.tensorTypes, { f32: 48 });
  assert.deepEqual(report.tokenizer, { kind: "spm", bosId: 1, eosIds: [2] });
  assert.equal(report.chatTemplate, "builtin");
  // Weights: 292,800 f32s. KV pool (f16 by default, 8 contexts of 2048): keys + values, 5 layers × 16384 positions ×
  // 4 KV heads × 8 halves.
  assert.deepEqual(report.memory, {
    contextSize: 2048, weightBytes: 1_171_200, repackedBytes: 0, kvCacheType: "f16", kvCacheTokens: 16384, kvCacheBytes: 10_485_760, totalBytes: 11_656_960,
  });
  assert.equal(report.tensors, undefined);

  const small = JSON.parse((await cli(["info", STORIES, "--json", "--ctx-size", "256", "--tensors"])).stdout);
  assert.equal(small.memory.kvCacheBytes, 1_310_720);
  // 5 layers x 32 kv values x 2 (keys, values) x 4 bytes per position of f32.
  const f32 = JSON.parse((await cli(["info", STORIES, "--json", "--kv-type", "f32", "--kv-tokens", "4096"])).stdout);
  assert.deepEqual([f32.memory.kvCacheType, f32.memory.kvCacheTokens, f32.memory.kvCacheBytes], ["f32", 4096, 4096 * 1280]);
  assert.equal(small.tensors.length, 48);
  assert.deepEqual(small.tensors.find((t) => t.name === "blk.0.ffn_down.weight"), { name: "blk.0.ffn_down.weight", type: "f32", shape: [64, 172], bytes: 44_032 });
});

test("info prints a readable summary, and --tensors every tensor", async () => {
  const r = await cli(["info", STORIES, "--tensors"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^architecture +llama, 292\.8K parameters \(292800\)$/m);
  assert.match(r.stdout, /^weights +f32 × 48$/m);
  assert.match(r.stdout, /^memory +1\.2 MB weights \+ 10\.5 MB KV cache \(f16, 16384 positions for contexts of 2048\) = 11\.7 MB$/m);
  assert.match(r.stdout, /^ {2}blk\.4\.attn_k\.weight +f32 +32 × 64 +8\.2 kB$/m);
  assert.equal(r.stdout.split("\n").filter((l) => l.startsWith("  ")).length, 48);
  assert.equal((await cli(["info"])).status, 2);
});


test("run --model hf:... fetches the model once, then runs it --offline", async () => {
  const args = ["run", "-m", "hf:acme/stories/stories260K.gguf", "-p", "Once upon a time", "-n", "20", "--temp", "0", "-t", "1"];
  const first = await cli(args);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /^Once upon a time, there was a little girl named Lily/);
  assert.ok(hub.requestsTo("hub", "/acme/stories/resolve/main/stories260K.gguf").length > 0);

  hub.requests.length = 0;
  const offline = await cli([...args, "--offline"], { HF_ENDPOINT: "http://127.0.0.1:1" });
  assert.equal(offline.status, 0, offline.stderr);
  assert.equal(offline.stdout, first.stdout);
  assert.equal(hub.requests.length, 0);
});

test("a Hub model that cannot be fetched is a runtime error (exit 1) naming it", async () => {
  const offline = await cli(["run", "-m", "hf:acme/stories/stories260K.gguf", "-p", "hi", "--offline"]);
  assert.equal(offline.status, 1);
  assert.match(offline.stderr, /DownloadError: hf:acme\/stories.* is not in the cache/);

  const server = net.createServer();
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  const unreachable = await cli(["chat", "-m", "hf:acme/stories/stories260K.gguf"], { HF_ENDPOINT: `http://127.0.0.1:${port}` });
  assert.equal(unreachable.status, 1);
  assert.match(unreachable.stderr, /cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);

  const missing = await cli(["run", "-m", "hf:acme/tiny/missing.gguf", "-p", "hi"]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /missing\.gguf/);
});
