"use strict";
// The paged KV cache through the public API: the pool's shape per type, prefix sharing between generations,
// copy-on-write when sequences sharing blocks diverge, blocks given back on abort and dispose, a full pool failing
// only the sequence that does not fit, and sessions saved in one KV type and restored in another.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { loadModel, InvalidArgumentError, OutOfMemoryError, DisposedError } = require("../dist/cjs/index.js");
const { DEFAULT_MODEL, modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;

const MODEL = () => modelPath("trained", "sotu-l2-23m"); // head size 32: every KV type applies
const GREEDY = { temperature: 0, maxTokens: 10 };
const PROMPT =
  "The President spoke to the Congress about the state of the union, the economy, the war, taxes, schools and the future of the nation and its people.";
let model;
let tmp;

before(async () => {
  model = await loadModel(MODEL(), { threads: 2, contextSize: 256 });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-kv-"));
});
after(async () => {
  await model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("info.kvCache: the pool's type, block size, positions (whole blocks) and bytes per position for each type", async () => {
  const { layers, kvHeads, headDim } = model.info;
  const rowValues = kvHeads * headDim;
  assert.deepEqual(model.info.kvCache, { type: "f16", blockTokens: 32, capacityTokens: 8 * 256, bytesPerToken: 2 * layers * rowValues * 2 });
  for (const [type, rowBytes] of [["f32", rowValues * 4], ["q8_0", (rowValues / 32) * 34]]) {
    const other = await loadModel(MODEL(), { threads: 1, contextSize: 64, kvCacheType: type, kvCacheTokens: 100 });
    try {
      assert.deepEqual(other.info.kvCache, { type, blockTokens: 32, capacityTokens: 128, bytesPerToken: 2 * layers * rowBytes });
      assert.deepEqual(other.kvCacheUsage(), { totalBlocks: 4, usedBlocks: 0, cachedBlocks: 0, freeBlocks: 4 });
    } finally {
      await other.dispose();
    }
  }
});

test("bad KV options are InvalidArgumentErrors naming the option", async () => {
  const rejects = (options, option, message) =>
    assert.rejects(loadModel(MODEL(), { threads: 1, contextSize: 64, ...options }), (err) => {
      assert.ok(err instanceof InvalidArgumentError, `${err.name}: ${err.message}`);
      assert.equal(err.option, option);
      assert.match(err.message, message);
      return true;
    });
  await rejects({ kvCacheType: "f8" }, "kvCacheType", /"f32", "f16" or "q8_0"/);
  await rejects({ kvCacheTokens: 63 }, "kvCacheTokens", /at least contextSize 64/);
  await rejects({ kvCacheTokens: 64.5 }, "kvCacheTokens", /integer/);
  // stories260K has heads of 8 values: a q8_0 row of a head would be a quarter of a block.
  await assert.rejects(loadModel(DEFAULT_MODEL, { threads: 1, kvCacheType: "q8_0" }), (err) => {
    assert.ok(err instanceof InvalidArgumentError);
    assert.equal(err.option, "kvCacheType");
    assert.match(err.message, /multiple of 32.*8/);
    return true;
  });
});

test("a second identical prompt adopts the first one's full blocks and evaluates only the rest, with the same result", async () => {
  const prompt = model.tokenize(`${PROMPT} He said that the nation was strong. ${PROMPT}`);
  assert.ok(prompt.length > 64, `${prompt.length} tokens`);
  const first = await model.complete({ tokens: prompt }, GREEDY);
  assert.equal(first.stats.prefillTokens, prompt.length);
  const usage = model.kvCacheUsage();
  assert.equal(usage.usedBlocks, 0, "the finished generation holds no block");
  assert.ok(usage.cachedBlocks >= Math.floor(prompt.length / 32), `cached ${usage.cachedBlocks}`);

  const second = await model.complete({ tokens: prompt }, GREEDY);
  const adopted = Math.floor((prompt.length - 1) / 32) * 32;
  assert.equal(second.stats.prefillTokens, prompt.length - adopted);
  assert.deepEqual(second.tokens, first.tokens);

  // A longer prompt with the same start adopts the same blocks; the logits equal a cold evaluation's exactly.
  const longer = [...prompt, ...model.tokenize(" The end.", { addBos: false })];
  const warm = await model.evaluate(longer);
  const cold = await loadModel(MODEL(), { threads: 2, contextSize: 256 });
  try {
    assert.deepEqual(warm, await cold.evaluate(longer));
  } finally {
    await cold.dispose();
  }
});

test("two generations sharing cached blocks and diverging give the tokens each gives alone", async () => {
  const shared = model.tokenize(PROMPT);
  const a = [...shared, ...model.tokenize(" The war", { addBos: false })];
  const b = [...shared, ...model.tokenize(" Taxes and schools", { addBos: false })];
  const alone = [];
  for (const prompt of [a, b]) {
    const fresh = await loadModel(MODEL(), { threads: 2, contextSize: 256 });
    try {
      alone.push((await fresh.complete({ tokens: prompt }, GREEDY)).tokens);
    } finally {
      await fresh.dispose();
    }
  }
  await model.complete({ tokens: shared }, { ...GREEDY, maxTokens: 1 }); // caches the shared blocks
  const together = await Promise.all([a, b].map((prompt) => model.complete({ tokens: prompt }, GREEDY)));
  assert.ok(together.every((c) => c.stats.prefillTokens < c.stats.promptTokens), "both adopted the shared prefix");
  assert.deepEqual(together.map((c) => c.tokens), alone);
  assert.equal(model.kvCacheUsage().usedBlocks, 0);
});

test("a forked session shares the partial block copy-on-write: each branch continues as an unforked session would", async () => {
  const turns = ["What did the President say about the war?", "And about taxes?", "And about schools?"];
  // A turn's reply and the logits of its first step (bit for bit the same when the cache holds the same rows).
  const reply = async (session, turn) => {
    let first;
    const { tokens } = await session.prompt(turn, { ...GREEDY, logitsProcessor: (logits) => void (first ??= Float32Array.from(logits)) });
    return { tokens, first };
  };
  const straight = async (...order) => {
    const s = await model.createSession();
    try {
      const replies = [];
      for (const turn of order) replies.push(await reply(s, turn));
      return replies.slice(1);
    } finally {
      s.dispose();
    }
  };
  const expectedOriginal = await straight(turns[0], turns[1]);
  const expectedFork = await straight(turns[0], turns[2], turns[1]);
  const original = await model.createSession();
  await original.prompt(turns[0], GREEDY);
  assert.notEqual(original.cachedTokens % 32, 0, "the fork shares a partly written block");
  const fork = original.fork();
  // The fork writes past the shared positions, then the original writes its own there, then the fork reads its
  // rows again: without the copy, the original would have overwritten them.
  const forkReplies = [await reply(fork, turns[2])];
  const originalReplies = [await reply(original, turns[1])];
  forkReplies.push(await reply(fork, turns[1]));
  assert.deepEqual(originalReplies, expectedOriginal);
  assert.deepEqual(forkReplies, expectedFork);
  assert.ok(model.kvCacheUsage().usedBlocks > 0);
  original.dispose();
  fork.dispose();
  assert.equal(model.kvCacheUsage().usedBlocks, 0, "disposed sessions hold no block");
});

test("copy-on-write: a fork writing into a shared, partly written block leaves the source's rows alone, and the other way", async () => {
  const { engine } = model; // white-box: contexts of the engine, positions chosen inside one block
  const ids = model.tokenize(PROMPT).slice(0, 20);
  const source = engine.createContext(64);
  const fork = engine.createContext(64);
  const fresh = engine.createContext(64);
  try {
    await source.decode(ids, 0, { logits: "none" });
    fork.copyFrom(source, ids.length);
    const mine = [11, 12, 13, 14, 15];
    const theirs = [21, 22, 23, 24, 25];
    await fork.decode(mine, ids.length, { logits: "none" }); // rows 20..24 of the shared block, in the fork's copy
    await source.decode(theirs, ids.length, { logits: "none" }); // the same slots, in the source's own block
    const forkNext = (await fork.decode([7], ids.length + mine.length)).logits;
    const sourceNext = (await source.decode([7], ids.length + theirs.length)).logits;
    assert.deepEqual(forkNext, (await fresh.decode([...ids, ...mine, 7], 0)).logits);
    assert.deepEqual(sourceNext, (await fresh.decode([...ids, ...theirs, 7], 0)).logits);
  } finally {
    for (const context of [source, fork, fresh]) context.close();
  }
  assert.equal(model.kvCacheUsage().usedBlocks, 0);
});

test("an aborted generation gives its blocks back", async () => {
  const controller = new AbortController();
  let seen = 0;
  for await (const _ of model.generate(PROMPT, { temperature: 0, maxTokens: 100, signal: controller.signal })) {
    assert.ok(model.kvCacheUsage().usedBlocks > 0);
    if (++seen === 3) controller.abort();
  }
  assert.equal(seen, 3);
  assert.equal(model.kvCacheUsage().usedBlocks, 0);
  const broken = model.generate(PROMPT, GREEDY);
  await broken.next();
  await broken.return(undefined); // breaking out of the loop
  assert.equal(model.kvCacheUsage().usedBlocks, 0);
});

test("a pool too small for a sequence fails that one with an OutOfMemoryError while the others finish unchanged", async () => {
  // 4 blocks of 32: the short generation takes 2 (48 + 12 positions), the long prompt would need 3.
  const small = await loadModel(MODEL(), { threads: 2, contextSize: 128, kvCacheTokens: 128 });
  try {
    const words = model.tokenize(`${PROMPT} ${PROMPT} ${PROMPT}`);
    const short = words.slice(0, 48);
    const long = [words[0], ...words.slice(1, 96).reverse()];
    const shortAlone = (await small.complete({ tokens: short }, { temperature: 0, maxTokens: 12 })).tokens;
    const [shortResult, longResult] = await Promise.allSettled([
      small.complete({ tokens: short }, { temperature: 0, maxTokens: 12 }),
      small.complete({ tokens: long }, { temperature: 0, maxTokens: 12 }),
    ]);
    assert.equal(shortResult.status, "fulfilled", String(shortResult.reason));
    assert.deepEqual(shortResult.value.tokens, shortAlone);
    assert.equal(longResult.status, "rejected");
    assert.ok(longResult.reason instanceof OutOfMemoryError, `${longResult.reason.name}: ${longResult.reason.message}`);
    assert.match(longResult.reason.message, /KV pool is full/);
    assert.ok(longResult.reason.bytesNeeded > 0);
    assert.equal(small.kvCacheUsage().usedBlocks, 0);
    // Alone, the long prompt fits (the short one's blocks are cached, and evicted for it).
    assert.equal((await small.complete({ tokens: long }, { temperature: 0, maxTokens: 12 })).tokens.length, 12);
  } finally {
    await small.dispose();
  }
  assert.throws(() => small.kvCacheUsage(), DisposedError);
});

test("sessions restore across KV types: the rows are converted, and old (v1) files are read as f32", async () => {
  const turns = ["What did the President say about the war?", "And about taxes?"];
  const models = {};
  for (const type of ["f32", "f16", "q8_0"]) models[type] = await loadModel(MODEL(), { threads: 2, contextSize: 256, kvCacheType: type });
  try {
    const saved = await models.f32.createSession();
    await saved.prompt(turns[0], GREEDY);
    const file = path.join(tmp, "f32.session");
    await saved.save(file);
    const expected = (await saved.prompt(turns[1], GREEDY)).tokens;
    for (const type of ["f32", "f16", "q8_0"]) {
      const restored = await models[type].createSession({ restore: file });
      const reply = await restored.prompt(turns[1], GREEDY);
      assert.ok(reply.stats.prefillTokens < reply.stats.promptTokens / 2, `${type}: the restored cache was reused`);
      if (type === "f32") assert.deepEqual(reply.tokens, expected, "f32 to f32 is exact");
      else assert.equal(reply.tokens.length, GREEDY.maxTokens);
      // Saved again in its own type, and restored into the f32 model: the conversation goes on there.
      const again = path.join(tmp, `${type}-again.session`);
      await restored.save(again);
      const header = JSON.parse(fs.readFileSync(again).subarray(12, 12 + fs.readFileSync(again).readUInt32LE(8)).toString("utf8"));
      assert.equal(header.kvCacheType, type);
      const back = await models.f32.createSession({ restore: again });
      assert.equal(back.cachedTokens, restored.cachedTokens);
      restored.dispose();
      back.dispose();
    }
    // A version 1 file: the same f32 state under the old magic, without the type.
    const data = fs.readFileSync(file);
    const length = data.readUInt32LE(8);
    const header = JSON.parse(data.subarray(12, 12 + length).toString("utf8"));
    delete header.kvCacheType;
    const json = Buffer.from(JSON.stringify(header));
    const lengthBytes = Buffer.alloc(4);
    lengthBytes.writeUInt32LE(json.length);
    const v1 = path.join(tmp, "v1.session");
    fs.writeFileSync(v1, Buffer.concat([Buffer.from("LNSESSv1", "latin1"), lengthBytes, json, data.subarray(12 + length)]));
    const old = await models.f32.createSession({ restore: v1 });
    assert.deepEqual((await old.prompt(turns[1], GREEDY)).tokens, expected);
    old.dispose();
  } finally {
    for (const m of Object.values(models)) await m.dispose();
  }
});
