"use strict";
// A misspelled option is an UnknownOptionError (an InvalidArgumentError) naming the key and the nearest valid
// name, in every public function that takes an options object; known keys set to undefined stay accepted.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { loadModel, UnknownOptionError, InvalidArgumentError, quantize, perplexity } = require("../dist/cjs/index.js");
const { DEFAULT_MODEL } = require("./helpers/models.js");

const STORIES = DEFAULT_MODEL;
let model;

before(async () => {
  model = await loadModel(STORIES, { threads: 1, contextSize: 64 });
});
after(async () => {
  await model.dispose();
});

function unknownOption(where, key, suggestion) {
  return (err) => {
    assert.ok(err instanceof UnknownOptionError, `expected an UnknownOptionError, got ${err.name}: ${err.message}`);
    assert.ok(err instanceof InvalidArgumentError);
    assert.equal(err.option, key);
    assert.equal(err.suggestion, suggestion);
    assert.ok(err.message.startsWith(`${where}: unknown option "${key}"`), err.message);
    if (suggestion) assert.ok(err.message.includes(`did you mean "${suggestion}"?`), err.message);
    return true;
  };
}

test("loadModel rejects a misspelled option, suggesting the nearest one", async () => {
  await assert.rejects(loadModel(STORIES, { contextSise: 64 }), unknownOption("loadModel", "contextSise", "contextSize"));
  await assert.rejects(loadModel(STORIES, { thread: 1 }), unknownOption("loadModel", "thread", "threads"));
  await assert.rejects(loadModel(STORIES, { checktensors: true }), unknownOption("loadModel", "checktensors", "checkTensors"));
  // Nothing close: no suggestion, the valid names listed instead.
  await assert.rejects(loadModel(STORIES, { banana: 1 }), (err) => {
    unknownOption("loadModel", "banana", undefined)(err);
    return /valid options: threads, contextSize/.test(err.message);
  });
  const loaded = await loadModel(STORIES, { threads: 1, contextSize: undefined, tokenizer: undefined, device: undefined });
  await loaded.dispose();
});

test("generate, complete and generateBatch reject misspelled sampling and generation options", async () => {
  await assert.rejects(model.complete("Once", { temprature: 0.1 }), unknownOption("generate", "temprature", "temperature"));
  await assert.rejects(model.complete("Once", { max_tokens: 4 }), unknownOption("generate", "max_tokens", "maxTokens"));
  await assert.rejects(model.generate("Once", { topk: 5 }).next(), unknownOption("generate", "topk", "topK"));
  await assert.rejects(model.generateBatch(["Once"], { stops: ["."] }), unknownOption("generate", "stops", "stop"));
  const done = await model.complete("Once", { temperature: 0, maxTokens: 2, topP: undefined, seed: undefined, stop: undefined });
  assert.equal(done.tokens.length, 2);
});

test("sessions, tokenize and applyChatTemplate reject misspelled options", async () => {
  await assert.rejects(model.createSession({ sytemPrompt: "Be brief." }), unknownOption("createSession", "sytemPrompt", "systemPrompt"));
  const session = await model.createSession({ systemPrompt: undefined });
  await assert.rejects(async () => await session.prompt("Hi", { maxToken: 2 }), unknownOption("generate", "maxToken", "maxTokens"));
  assert.throws(() => model.tokenize("Once", { addBOS: true }), unknownOption("tokenize", "addBOS", "addBos"));
  assert.deepEqual(model.tokenize("Once", { addBos: false, special: undefined }), model.tokenize("Once", { addBos: false }));
  assert.throws(
    () => model.applyChatTemplate([{ role: "user", content: "Hi" }], { addGenerationPromt: false }),
    unknownOption("applyChatTemplate", "addGenerationPromt", "addGenerationPrompt"),
  );
  assert.throws(() => model.tokenize("Once", "addBos"), InvalidArgumentError);
});

test("quantize and perplexity reject misspelled options", async () => {
  await assert.rejects(quantize(STORIES, "/nonexistent/out.gguf", { tpye: "q8_0" }), unknownOption("quantize", "tpye", "type"));
  await assert.rejects(perplexity(model, "Once upon a time", { contextSise: 16 }), unknownOption("perplexity", "contextSise", "contextSize"));
});
