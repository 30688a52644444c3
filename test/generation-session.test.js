"use strict";
// Chat sessions: the KV cache kept between turns (proved by prefill counts and logits), history, reset, fork,
// save/restore (refused for another model), and what happens when the context fills.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { loadModel, ContextOverflowError, InvalidArgumentError } = require("../dist/cjs/index.js");
const { DEFAULT_MODEL, modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;
const { maxAbsDiff } = require("./helpers/reference.js");

const GREEDY = { temperature: 0, maxTokens: 12 };
const SYSTEM = "You answer questions about American history.";
let model;
let tmp;

before(async () => {
  model = await loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 2 });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-session-"));
});
after(async () => {
  await model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test("a second turn evaluates only its new tokens, and its logits equal a fresh evaluation of the whole conversation", async () => {
  const session = await model.createSession({ systemPrompt: SYSTEM });
  const first = await session.prompt("What did the President say about the war?", GREEDY);
  assert.equal(first.stats.prefillTokens, first.stats.promptTokens);
  const turn1 = model.applyChatTemplate([{ role: "system", content: SYSTEM }, { role: "user", content: "What did the President say about the war?" }]);
  const cached = session.tokens;
  assert.deepEqual(cached, [...turn1.tokens, ...first.tokens].slice(0, cached.length), "the cache holds the prompt and the reply as generated");

  let seen;
  const second = await session.prompt("And about taxes?", {
    ...GREEDY,
    logitsProcessor: (logits, tokens) => {
      seen ??= { logits: Float32Array.from(logits), tokens: [...tokens] };
    },
  });
  // The new prompt is the cached conversation followed by the template's end of the reply and the new message.
  assert.deepEqual(seen.tokens.slice(0, cached.length), cached);
  assert.match(model.detokenize(seen.tokens.slice(cached.length)), /And about taxes\?/);
  assert.equal(second.stats.promptTokens, seen.tokens.length);
  assert.equal(second.stats.prefillTokens, seen.tokens.length - cached.length, "only the tokens not in the cache were evaluated");
  assert.ok(second.stats.prefillTokens < 20, `${second.stats.prefillTokens} tokens evaluated`);

  const fresh = await model.evaluate(seen.tokens);
  assert.ok(maxAbsDiff(seen.logits, fresh) < 1e-4, `max |Δlogit| ${maxAbsDiff(seen.logits, fresh)}`);

  assert.deepEqual(session.history.map((m) => m.role), ["system", "user", "assistant", "user", "assistant"]);
  assert.equal(session.history[4].content, second.text);
  session.dispose();
});

test("streaming a turn, and a second prompt while one runs is refused", async () => {
  const session = await model.createSession();
  let text = "";
  const stream = session.prompt("Hello", GREEDY);
  for await (const t of stream) {
    text += t.text;
    assert.throws(() => session.prompt("again"), /still running/);
  }
  assert.equal(session.history[1].content, text);
  await assert.rejects(async () => { for await (const _ of stream); }, /consumed once/);
  session.dispose();
});

test("reset forgets the conversation; fork copies it and the two diverge independently", async () => {
  const session = await model.createSession({ systemPrompt: SYSTEM });
  await session.prompt("Tell me about Congress.", GREEDY);
  const fork = session.fork();
  assert.deepEqual(fork.history, session.history);
  assert.equal(fork.cachedTokens, session.cachedTokens);

  const onFork = await fork.prompt("And the courts?", GREEDY);
  assert.equal(onFork.stats.prefillTokens < onFork.stats.promptTokens, true, "the fork reused the copied cache");
  const onOriginal = await session.prompt("And the courts?", GREEDY);
  assert.deepEqual(onOriginal.tokens, onFork.tokens, "same conversation, same greedy reply");
  await fork.prompt("Thank you.", GREEDY);
  assert.equal(session.history.length, 5);
  assert.equal(fork.history.length, 7);

  session.reset();
  assert.deepEqual(session.history, [{ role: "system", content: SYSTEM }]);
  assert.equal(session.cachedTokens, 0);
  const again = await session.prompt("Tell me about Congress.", GREEDY);
  // The engine's cache may still serve the new prompt's start (keys and values of the same ids at the same positions
  // are the same): the reply is the one the rendered prompt gets anywhere.
  assert.ok(again.stats.prefillTokens <= again.stats.promptTokens);
  const rendered = model.applyChatTemplate([{ role: "system", content: SYSTEM }, { role: "user", content: "Tell me about Congress." }]);
  assert.deepEqual(again.tokens, (await model.complete(rendered, GREEDY)).tokens);
  session.dispose();
  fork.dispose();
});

test("a session's first turn adopts the blocks another sequence cached for the same prompt start", async () => {
  const long = `${SYSTEM} Keep to the record of the speeches, name the year of each, and say when the record is silent.`;
  const one = await model.createSession({ systemPrompt: long });
  const first = await one.prompt("What did the President say about taxes?", GREEDY);
  const two = await model.createSession({ systemPrompt: long });
  const second = await two.prompt("What did the President say about taxes?", GREEDY);
  assert.ok(first.stats.promptTokens >= 40, `${first.stats.promptTokens} prompt tokens`);
  assert.ok(second.stats.prefillTokens <= second.stats.promptTokens - 32, `${second.stats.prefillTokens} of ${second.stats.promptTokens} evaluated`);
  assert.deepEqual(second.tokens, first.tokens);
  one.dispose();
  two.dispose();
});

test("save and restore: the conversation and its cache come back; another model's file is refused", async () => {
  const session = await model.createSession({ systemPrompt: SYSTEM });
  await session.prompt("What is the state of the Union?", GREEDY);
  const file = path.join(tmp, "chat.session");
  await session.save(file);
  const restored = await model.createSession({ restore: file });
  assert.deepEqual(restored.history, session.history);
  assert.equal(restored.cachedTokens, session.cachedTokens);
  const a = await session.prompt("Go on.", GREEDY);
  const b = await restored.prompt("Go on.", GREEDY);
  assert.deepEqual(b.tokens, a.tokens);
  assert.equal(b.stats.prefillTokens, a.stats.prefillTokens, "the restored cache was reused");

  const other = await loadModel(DEFAULT_MODEL);
  try {
    await assert.rejects(other.createSession({ restore: file }), (err) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.match(err.message, /saved with another model/);
      return true;
    });
  } finally {
    await other.dispose();
  }
  const broken = path.join(tmp, "broken.session");
  fs.writeFileSync(broken, fs.readFileSync(file).subarray(0, 100));
  await assert.rejects(model.createSession({ restore: broken }), { name: "ModelFormatError" });
  await assert.rejects(model.createSession({ restore: path.join(tmp, "missing") }), { name: "InvalidArgumentError" });
  session.dispose();
  restored.dispose();
});

test("when the context fills: an error with the numbers by default, truncate-middle keeps the system prompt and goes on", async () => {
  const long = "The President spoke to the Congress about the state of the Union and the war. ".repeat(4);
  const strict = await model.createSession({ systemPrompt: SYSTEM, contextSize: 96 });
  await strict.prompt(long, { temperature: 0, maxTokens: 4 });
  await assert.rejects(strict.prompt(long, { temperature: 0, maxTokens: 4 }).then(), (err) => {
    assert.ok(err instanceof ContextOverflowError);
    assert.ok(err.tokens > 96 && err.contextSize === 96);
    assert.match(err.message, new RegExp(`${err.tokens} tokens but the context holds 96`));
    return true;
  });
  strict.dispose();

  const rolling = await model.createSession({ systemPrompt: SYSTEM, contextSize: 96, contextOverflow: "truncate-middle" });
  const system = model.applyChatTemplate([{ role: "system", content: SYSTEM }, { role: "user", content: "x" }]).tokens;
  for (let turn = 0; turn < 3; turn++) {
    let seen;
    const reply = await rolling.prompt(long, {
      temperature: 0,
      maxTokens: 40,
      ignoreEos: true,
      logitsProcessor: (logits, tokens) => { seen ??= tokens; },
    });
    assert.equal(reply.tokens.length, 40, "generation went on past the full context");
    assert.ok(rolling.cachedTokens <= 96);
    assert.deepEqual(seen.slice(0, 10), system.slice(0, 10), "the start of the conversation is kept");
  }
  rolling.dispose();
});

test("session options are validated", async () => {
  await assert.rejects(model.createSession({ contextOverflow: "drop" }), { name: "InvalidArgumentError" });
  await assert.rejects(model.createSession({ contextSize: 0 }), { name: "InvalidArgumentError" });
  await assert.rejects(model.createSession({ systemPrompt: 3 }), { name: "InvalidArgumentError" });
});
