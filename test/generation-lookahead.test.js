"use strict";
// Greedy look-ahead: a decode with `speculate` makes the engine run the pass's argmax at the next position at
// once; the next request claims that step instead of waiting for a new pass. These tests pin what it must never
// change: the results (bit for bit), the cache (an unclaimed step is overwritten), and that a context is free for
// its next use as soon as a generation has returned.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { loadModel } = require("../dist/cjs/index.js");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;

let model;
let engine;

before(async () => {
  model = await loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 2 });
  engine = model.engine; // white-box: the claims themselves
});
after(() => model.dispose());

const PROMPT = [1, 450, 7178, 4083, 393];
const OPTIONS = { logits: "last", topK: 4 };

test("a claimed look-ahead step equals a fresh decode of the same token, logits bit for bit", async () => {
  const ahead = engine.createContext(64);
  const plain = engine.createContext(64);
  const [first] = await engine.decodeBatch([{ context: ahead, tokens: Int32Array.from(PROMPT), pos: 0, ...OPTIONS, speculate: true }]);
  const next = first.top[0];
  const claimed = ahead.claim([next], PROMPT.length, OPTIONS);
  assert.ok(claimed, "the step after a speculating decode can be claimed");
  const fromClaim = await claimed;
  await plain.decode(PROMPT, 0, OPTIONS);
  const fresh = await plain.decode([next], PROMPT.length, OPTIONS);
  assert.deepEqual(fromClaim.top, fresh.top);
  assert.deepEqual(Buffer.from(fromClaim.logits.buffer), Buffer.from(fresh.logits.buffer));
  await ahead.settled();
  ahead.close();
  plain.close();
});

test("a claim with another token, position or options finds nothing, and the cache is then decoded as usual", async () => {
  const ctx = engine.createContext(64);
  const [first] = await engine.decodeBatch([{ context: ctx, tokens: Int32Array.from(PROMPT), pos: 0, ...OPTIONS, speculate: true }]);
  const other = first.top[1];
  assert.equal(ctx.claim([other], PROMPT.length, OPTIONS), undefined);
  // Once abandoned, even the right token is not claimable: the step may be gone.
  assert.equal(ctx.claim([first.top[0]], PROMPT.length, OPTIONS), undefined);
  await ctx.settled();
  const decoded = await ctx.decode([other], PROMPT.length, OPTIONS);
  const check = engine.createContext(64);
  await check.decode(PROMPT, 0, OPTIONS);
  const expected = await check.decode([other], PROMPT.length, OPTIONS);
  assert.deepEqual(Buffer.from(decoded.logits.buffer), Buffer.from(expected.logits.buffer));
  assert.equal(ctx.claim([first.top[0]], PROMPT.length + 1, { logits: "none", topK: 4 }), undefined);
  for (const c of [ctx, check]) {
    await c.settled();
    c.close();
  }
});

test("greedy generate() claims every step after the prompt and gives the engine's own greedy tokens", async () => {
  let passes = 0;
  const decodeBatch = engine.decodeBatch;
  engine.decodeBatch = function (entries) {
    passes++;
    return decodeBatch.call(this, entries);
  };
  try {
    const done = await model.complete("Once upon a time", { temperature: 0, maxTokens: 40, ignoreEos: true });
    assert.equal(done.tokens.length, 40);
    // One pass for the prompt; the steps after it are claimed (a chain may restart if the machine stalls JS).
    assert.ok(passes <= 3, `${passes} passes for 40 tokens`);
    const native = await model.nativeGreedy("Once upon a time", 41);
    assert.deepEqual(done.tokens, native.slice(0, 40));
  } finally {
    engine.decodeBatch = decodeBatch;
  }
});

test("a session forks and saves right after a greedy turn; the unclaimed step leaves no trace", async (t) => {
  const session = await model.createSession({ contextSize: 256 });
  const first = await session.prompt("The President said that", { temperature: 0, maxTokens: 8, stop: ["\n\n\n"] });
  const fork = session.fork(); // would be CONTEXT_BUSY if the look-ahead pass still held the cache
  const path = require("node:path").join(require("node:os").tmpdir(), `lookahead-${process.pid}.session`);
  t.after(() => require("node:fs").rmSync(path, { force: true }));
  await session.save(path);
  const again = await fork.prompt(" and then", { temperature: 0, maxTokens: 8 });
  const fresh = await model.createSession({ contextSize: 256 });
  await fresh.prompt("The President said that", { temperature: 0, maxTokens: 8, stop: ["\n\n\n"] });
  const expected = await fresh.prompt(" and then", { temperature: 0, maxTokens: 8 });
  assert.ok(first.text.length > 0);
  assert.equal(again.text, expected.text);
  for (const s of [session, fork, fresh]) s.dispose();
});

test("a sampled (non-greedy) generation does not look ahead", async () => {
  let claims = 0;
  const ctx = engine.createContext(8);
  const proto = Object.getPrototypeOf(ctx);
  const claim = proto.claim;
  proto.claim = function (...args) {
    claims++;
    return claim.apply(this, args);
  };
  try {
    await model.complete("Once upon a time", { temperature: 0.8, seed: 3, maxTokens: 10, ignoreEos: true });
    await model.complete("Once upon a time", { temperature: 0, repeatPenalty: 1.3, maxTokens: 10, ignoreEos: true });
  } finally {
    proto.claim = claim;
    ctx.close();
  }
  assert.equal(claims, 0);
});
