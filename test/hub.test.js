"use strict";
// Models from the Hub and URLs through the cache, against a local imitation of the Hub (helpers/fake-hub.js):
// where files land, resume after a cut connection, checksums, HTTP errors, tokens, offline mode, model
// directories through the tree API, locking, pull / ls / rm.
const { test, before, after, beforeEach, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { FakeHub, sha256 } = require("./helpers/fake-hub.js");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { makeRandom } = require("./helpers/random.js");
const {
  resolveModelPath, pullModel, listCachedModels, removeCachedModel, loadModel, DownloadError, InvalidArgumentError,
} = require("../dist/cjs/index.js");

function randomBytes(n, seed) {
  const random = makeRandom(seed);
  return Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
}

const GGUF = randomBytes(600_000, 1);
const README = Buffer.from("# tiny\nA model card: small enough to live in git, not LFS.\n");
const SOTU = "trained/sotu-l2-23m";

const hub = new FakeHub();
let cache;

before(async () => {
  await hub.start();
  hub.addRepo("acme/tiny", { "model.gguf": GGUF, "README.md": README, "sub/dir/weights.gguf": randomBytes(5000, 2) });
  hub.addRepo("acme/tiny", { "model.gguf": randomBytes(2000, 3) }, { revision: "v1.0" });
  hub.addRepo("acme/private", { "model.gguf": GGUF }, { token: "hf_secret" });
  hub.addRepo("acme/corrupt", { "model.gguf": GGUF });
  hub.announceWrongChecksum("acme/corrupt", "model.gguf");
  hub.renamed.set("acme/old-name", "acme/tiny");
  if (!NEEDS_REFERENCE_MODELS.skip) {
    const sotu = {};
    for (const f of ["config.json", "generation_config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"]) {
      sotu[f] = fs.readFileSync(modelPath(SOTU, f));
    }
    hub.addRepo("acme/sotu", { ...sotu, "README.md": README, "pytorch_model.bin": randomBytes(3000, 4), "onnx/model.onnx": README });
  }
  hub.plain.set("model.gguf", GGUF);
});

after(() => hub.stop());

beforeEach(() => {
  cache = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-cache-"));
  process.env.LLAMA_NAPI_CACHE = cache;
  process.env.HF_ENDPOINT = hub.endpoint;
  delete process.env.HF_TOKEN;
  delete process.env.HF_HUB_OFFLINE;
  hub.requests.length = 0;
  hub.cuts.clear();
});

afterEach(() => fs.rmSync(cache, { recursive: true, force: true }));

const cdnGets = () => hub.requestsTo("cdn").filter((r) => r.method === "GET");
const cached = (...parts) => path.join(cache, "hf", ...parts);

function downloadError(pattern, status) {
  return (err) => {
    assert.ok(err instanceof DownloadError, `expected a DownloadError, got ${err}`);
    assert.match(err.message, pattern);
    if (status !== undefined) assert.equal(err.status, status);
    return true;
  };
}

test("a local path is returned as it is", async () => {
  assert.equal(await resolveModelPath("models/x.gguf"), "models/x.gguf");
  assert.equal(await resolveModelPath("/abs/dir"), "/abs/dir");
  assert.equal(hub.requests.length, 0);
});

test("an hf: file is downloaded once into hf/OWNER/REPO/REVISION/PATH and then served from the cache", async () => {
  const p = await resolveModelPath("hf:acme/tiny/model.gguf");
  assert.equal(p, cached("acme", "tiny", "main", "model.gguf"));
  assert.ok(fs.readFileSync(p).equals(GGUF));
  const record = JSON.parse(fs.readFileSync(cached("acme", "tiny", "main", ".meta", "files", "model.gguf.json"), "utf8"));
  assert.deepEqual(
    { state: record.state, size: record.size, sha256: record.sha256, etag: record.etag, commit: record.commit },
    { state: "complete", size: GGUF.length, sha256: sha256(GGUF), etag: sha256(GGUF), commit: hub.repos.get("acme/tiny").commit },
  );
  assert.equal(cdnGets().length, 1);
  assert.equal(fs.existsSync(`${p}.partial`), false);

  const requests = hub.requests.length;
  assert.equal(await resolveModelPath("hf:acme/tiny/model.gguf"), p);
  assert.equal(hub.requests.length, requests, "a cached file needs no request");
});

test("a file kept in git (not LFS) is checked by its git blob id; nested paths and revisions keep their place", async () => {
  const readme = await resolveModelPath("hf:acme/tiny/README.md");
  assert.ok(fs.readFileSync(readme).equals(README));
  assert.equal(hub.requestsTo("cdn").length, 0, "served by the Hub itself");
  const nested = await resolveModelPath("hf:acme/tiny/sub/dir/weights.gguf");
  assert.equal(nested, cached("acme", "tiny", "main", "sub", "dir", "weights.gguf"));
  const tagged = await resolveModelPath("hf:acme/tiny@v1.0/model.gguf");
  assert.equal(tagged, cached("acme", "tiny", "v1.0", "model.gguf"));
  assert.equal(fs.statSync(tagged).size, 2000);
});

test("a connection cut mid-body is resumed with a Range request, and the whole matches the sha256", async () => {
  hub.cutConnection("acme/tiny", "model.gguf", 100_000);
  const p = await resolveModelPath("hf:acme/tiny/model.gguf");
  assert.ok(fs.readFileSync(p).equals(GGUF));
  const ranges = cdnGets().map((r) => r.range);
  assert.equal(ranges.length, 2);
  assert.equal(ranges[0], undefined);
  // From wherever the client's copy ended: the server wrote 100,000 bytes, a reset may lose the last of them.
  const resumedAt = Number(/^bytes=(\d+)-$/.exec(ranges[1])[1]);
  assert.ok(resumedAt > 0 && resumedAt <= 100_000, ranges[1]);
  assert.equal(fs.existsSync(`${p}.partial`), false);
});

test("an interrupted download stays partial (never complete-looking) and the next call resumes it", async () => {
  const abort = new AbortController();
  const interrupted = resolveModelPath("hf:acme/tiny/model.gguf", {
    signal: abort.signal,
    onProgress: (p) => p.bytes > 0 && abort.abort(),
  });
  await assert.rejects(interrupted, { name: "AbortError" });
  const file = cached("acme", "tiny", "main", "model.gguf");
  assert.equal(fs.existsSync(file), false);
  const partialBytes = fs.statSync(`${file}.partial`).size;
  assert.ok(partialBytes > 0 && partialBytes < GGUF.length, `partial ${partialBytes}`);
  const [listed] = listCachedModels();
  assert.deepEqual({ spec: listed.spec, complete: listed.complete, bytes: listed.bytes }, { spec: "hf:acme/tiny/model.gguf", complete: false, bytes: partialBytes });

  const progress = [];
  assert.equal(await resolveModelPath("hf:acme/tiny/model.gguf", { onProgress: (p) => progress.push(p) }), file);
  assert.ok(fs.readFileSync(file).equals(GGUF));
  assert.equal(cdnGets().at(-1).range, `bytes=${partialBytes}-`);
  assert.deepEqual(progress[0], { spec: "hf:acme/tiny/model.gguf", file: "model.gguf", bytes: partialBytes, totalBytes: GGUF.length });
  assert.equal(progress.at(-1).bytes, GGUF.length);
});

test("a checksum mismatch is an error and leaves nothing that looks complete", async () => {
  await assert.rejects(resolveModelPath("hf:acme/corrupt/model.gguf"), downloadError(/hf:acme\/corrupt\/model\.gguf: the downloaded bytes do not match what the server announced \(sha256 /));
  const file = cached("acme", "corrupt", "main", "model.gguf");
  assert.equal(fs.existsSync(file), false);
  assert.equal(fs.existsSync(`${file}.partial`), false);
  assert.deepEqual(listCachedModels(), []);
});

test("404s name the repository and the file, and are not retried", async () => {
  await assert.rejects(resolveModelPath("hf:acme/tiny/missing.gguf"), downloadError(/hf:acme\/tiny\/missing\.gguf: not found \(404 .*Entry not found\)/, 404));
  assert.equal(hub.requests.length, 1);
  await assert.rejects(resolveModelPath("hf:acme/nope/model.gguf"), downloadError(/hf:acme\/nope\/model\.gguf: not found .*Repository not found/, 404));
  await assert.rejects(resolveModelPath("hf:acme/tiny@v9/model.gguf"), downloadError(/Invalid rev id: v9/, 404));
});

test("a 401 without HF_TOKEN says to set it; with HF_TOKEN the Hub gets the token and the CDN never does", async () => {
  await assert.rejects(resolveModelPath("hf:acme/private/model.gguf"), downloadError(/401 .*set HF_TOKEN/, 401));
  process.env.HF_TOKEN = "hf_wrong";
  await assert.rejects(resolveModelPath("hf:acme/private/model.gguf"), downloadError(/token in HF_TOKEN was not accepted/, 401));
  process.env.HF_TOKEN = "hf_secret";
  hub.requests.length = 0;
  const p = await resolveModelPath("hf:acme/private/model.gguf");
  assert.ok(fs.readFileSync(p).equals(GGUF));
  assert.ok(hub.requestsTo("hub").every((r) => r.authorization === "Bearer hf_secret"));
  assert.ok(cdnGets().length === 1 && hub.requestsTo("cdn").every((r) => r.authorization === undefined));
});

test("offline: a cached model is used without a request; an uncached one is a clear error", async () => {
  const p = await resolveModelPath("hf:acme/tiny/model.gguf");
  hub.requests.length = 0;
  assert.equal(await resolveModelPath("hf:acme/tiny/model.gguf", { offline: true }), p);
  await assert.rejects(
    resolveModelPath("hf:acme/tiny/README.md", { offline: true }),
    downloadError(/hf:acme\/tiny\/README\.md is not in the cache .*offline.*llama-napi pull hf:acme\/tiny\/README\.md/),
  );
  process.env.HF_HUB_OFFLINE = "1";
  await assert.rejects(resolveModelPath("hf:acme/sotu"), downloadError(/offline/));
  assert.equal(hub.requests.length, 0);
});

test("an unreachable endpoint is a clear error at once", async () => {
  const server = net.createServer();
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`;
  await assert.rejects(resolveModelPath("hf:acme/tiny/model.gguf"), downloadError(/cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/));
});

test("hf:OWNER/REPO fetches the model directory through the paged tree API, and it loads", NEEDS_REFERENCE_MODELS, async () => {
  const progress = [];
  const dir = await resolveModelPath("hf:acme/sotu", { onProgress: (p) => progress.push(p) });
  assert.equal(dir, cached("acme", "sotu", "main"));
  const files = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"];
  assert.deepEqual(fs.readdirSync(dir).filter((f) => !f.startsWith(".")).sort(), files);
  assert.ok(hub.requestsTo("hub", "/api/models/acme/sotu/tree/main").length >= 3, "followed the Link pages");
  const total = files.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
  assert.ok(progress.every((p, i) => p.totalBytes === total && (i === 0 || p.bytes >= progress[i - 1].bytes)));
  assert.equal(progress.at(-1).bytes, total);

  const model = await loadModel(dir, { threads: 1 });
  const reference = await loadModel(modelPath(SOTU), { threads: 1 });
  try {
    assert.deepEqual({ ...model.info }, { ...reference.info });
    assert.deepEqual(model.tokenize("The state of the union"), reference.tokenize("The state of the union"));
  } finally {
    await model.dispose();
    await reference.dispose();
  }
  hub.requests.length = 0;
  assert.equal(await resolveModelPath("hf:acme/sotu", { offline: true }), dir);
  assert.deepEqual(listCachedModels().map((m) => [m.spec, m.files, m.bytes, m.complete]), [["hf:acme/sotu", 5, total, true]]);
});

test("a repository without config.json is not a model directory: the error names its GGUF files", async () => {
  await assert.rejects(resolveModelPath("hf:acme/tiny"), (err) => {
    assert.ok(err instanceof InvalidArgumentError);
    assert.match(err.message, /no config\.json.*hf:acme\/tiny\/model\.gguf/);
    return true;
  });
});

test("a renamed repository's relative redirect is followed", async () => {
  const p = await resolveModelPath("hf:acme/old-name/model.gguf");
  assert.equal(p, cached("acme", "old-name", "main", "model.gguf"));
  assert.ok(fs.readFileSync(p).equals(GGUF));
});

test("a plain URL is cached under url/HOST/ID/NAME", async () => {
  const url = `${hub.endpoint}/plain/model.gguf?download=true`;
  const p = await resolveModelPath(url);
  assert.match(path.relative(cache, p), /^url\/127\.0\.0\.1_\d+\/[0-9a-f]{12}\/model\.gguf$/);
  assert.ok(fs.readFileSync(p).equals(GGUF));
  assert.deepEqual(listCachedModels().map((m) => m.spec), [url]);
});

test("concurrent calls for one file download it once", async () => {
  const [a, b] = await Promise.all([resolveModelPath("hf:acme/tiny/model.gguf"), resolveModelPath("hf:acme/tiny/model.gguf")]);
  assert.equal(a, b);
  assert.ok(fs.readFileSync(a).equals(GGUF));
  assert.equal(cdnGets().length, 1);
});

test("a lock left by a dead process is taken over", async () => {
  const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  const lock = cached("acme", "tiny", "main", ".meta", "files", "model.gguf.lock");
  fs.mkdirSync(path.dirname(lock), { recursive: true });
  fs.writeFileSync(lock, JSON.stringify({ pid: Number(dead.stdout), host: os.hostname() }));
  assert.ok(fs.readFileSync(await resolveModelPath("hf:acme/tiny/model.gguf")).equals(GGUF));
  assert.equal(fs.existsSync(lock), false);
});

test("pull brings a moved branch up to date; ls lists the cache; rm removes and prunes", async () => {
  hub.addRepo("acme/moving", { "model.gguf": randomBytes(3000, 5) });
  const first = await pullModel("hf:acme/moving/model.gguf");
  assert.deepEqual(first, { spec: "hf:acme/moving/model.gguf", path: cached("acme", "moving", "main", "model.gguf"), files: 1, bytes: 3000, complete: true });

  const moved = randomBytes(4000, 6);
  hub.addRepo("acme/moving", { "model.gguf": moved });
  hub.requests.length = 0;
  await resolveModelPath("hf:acme/moving/model.gguf");
  assert.equal(hub.requests.length, 0, "resolve uses the cached file as it is");
  assert.equal((await pullModel("hf:acme/moving/model.gguf")).bytes, 4000);
  assert.ok(fs.readFileSync(first.path).equals(moved));
  hub.requests.length = 0;
  await pullModel("hf:acme/moving/model.gguf");
  assert.deepEqual(hub.requests.map((r) => r.method), ["HEAD", "HEAD"], "an up-to-date file is only checked (Hub, then CDN)");

  await resolveModelPath("hf:acme/tiny/README.md");
  assert.deepEqual(listCachedModels().map((m) => m.spec), ["hf:acme/moving/model.gguf", "hf:acme/tiny/README.md"]);
  assert.equal(removeCachedModel("hf:acme/moving@main/model.gguf").path, first.path);
  assert.deepEqual(listCachedModels().map((m) => m.spec), ["hf:acme/tiny/README.md"]);
  assert.equal(fs.existsSync(cached("acme", "moving")), false, "empty directories are pruned");
  removeCachedModel("hf:acme/tiny/README.md");
  assert.deepEqual(fs.readdirSync(cache), []);
  assert.throws(() => removeCachedModel("hf:acme/tiny/README.md"), (err) => err instanceof InvalidArgumentError && /not in the cache/.test(err.message));
});

test("malformed specs are InvalidArgumentErrors", async () => {
  for (const spec of ["hf:acme", "hf:acme/", "hf:acme/tiny/../x.gguf", "hf:acme/ti ny/x", "hf:a/b@c@d/x", "hf:acme/tiny@/x", "https://"]) {
    await assert.rejects(resolveModelPath(spec), InvalidArgumentError, spec);
  }
});
