"use strict";
// The server's newer endpoints through the clients Node apps use (dev dependencies): the official `openai` client's
// embeddings, Responses API and tool calls, the AI SDK's default provider (which speaks the Responses API), and
// LangChain's bindTools. The trained model never calls a tool on its own: where a test needs a tool call, the
// server runs a model whose generations are forced to a scripted text (scriptedModel below: a logitsProcessor that
// leaves only the script's next token, so the real engine, detokenizer and parser produce it).
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { OpenAI } = require("openai");
const { MODEL_ALIAS, loadServerModel, withServer, post } = require("./helpers/server.js");
const { skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;

let model;
let url;
let server;
let client;

before(async () => {
  model = await loadServerModel();
  const { createServer } = require("../dist/cjs/index.js");
  server = createServer(model, { modelAlias: MODEL_ALIAS, parallel: 2 });
  ({ url } = await server.listen({ port: 0 }));
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
});

after(async () => {
  await server.close();
  await model.dispose();
});

test("embeddings.create: base64 (the client's default) and float, strings and token ids, with usage", async () => {
  const texts = ["The state of the union is strong.", "Call me Ishmael."];
  const expected = await model.embed(texts);
  const r = await client.embeddings.create({ model: MODEL_ALIAS, input: texts });
  assert.equal(r.object, "list");
  assert.deepEqual(r.data.map((d) => d.index), [0, 1]);
  r.data.forEach((d, i) => assert.deepEqual(Float32Array.from(d.embedding), expected[i]));
  const tokens = texts.map((t) => model.tokenize(t, { addBos: true }));
  assert.deepEqual(r.usage, { prompt_tokens: tokens[0].length + tokens[1].length, total_tokens: tokens[0].length + tokens[1].length });

  const floats = await client.embeddings.create({ model: MODEL_ALIAS, input: texts[1], encoding_format: "float" });
  assert.deepEqual(Float32Array.from(floats.data[0].embedding), expected[1]);
  const byIds = await client.embeddings.create({ model: MODEL_ALIAS, input: tokens, encoding_format: "float" });
  byIds.data.forEach((d, i) => assert.deepEqual(Float32Array.from(d.embedding), expected[i]));

  await assert.rejects(client.embeddings.create({ model: MODEL_ALIAS, input: [] }), (err) => err.status === 400 && err.param === "input");
  await assert.rejects(client.embeddings.create({ model: MODEL_ALIAS, input: "x", dimensions: 3 }), (err) => err.status === 400 && err.param === "dimensions");
  await assert.rejects(client.embeddings.create({ model: MODEL_ALIAS, input: [[1, 99999]] }), (err) => err.status === 400 && err.param === "input");
});
