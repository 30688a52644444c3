"use strict";
// Constrained output through the server: response_format (json_object, json_schema) on /v1/chat/completions and
// /v1/completions, the `grammar` extension, streamed and not, through the official `openai` client, and the 400s of
// a schema or grammar the server cannot honour.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const Ajv = require("ajv").default;
const { MODEL_ALIAS, startServedModel, openaiClient, post } = require("./helpers/server.js");
const { skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;

const SCHEMA = {
  type: "object",
  properties: {
    answer: { enum: ["yes", "no"] },
    count: { type: "integer", minimum: 0, maximum: 10 },
    sure: { type: "boolean" },
    when: { type: "string", format: "date" },
  },
  required: ["answer", "count", "sure"],
  additionalProperties: false,
};
const RESPONSE_FORMAT = { type: "json_schema", json_schema: { name: "verdict", schema: SCHEMA, strict: true } };
const MESSAGES = [{ role: "user", content: "Is the union strong? Answer in JSON." }];

let served;
let model;
let url;
let client;
/** Favours the tokens that close strings and objects, so that free-form JSON ends within max_tokens. */
let closers;

before(async () => {
  served = await startServedModel({ parallel: 2 });
  ({ model, url } = served);
  client = openaiClient(url);
  closers = Object.fromEntries(['"', "}", '",', '"}'].flatMap((t) => model.tokenize(t, { addBos: false }).slice(-1)).map((id) => [String(id), 8]));
});

after(() => served.close());

test("chat.completions.parse with a json_schema response_format gives a parsed, valid object", async () => {
  const validate = new Ajv({ strict: false }).compile({ ...SCHEMA, properties: { ...SCHEMA.properties, when: { type: "string" } } });
  for (const seed of [1, 2, 3]) {
    const completion = await client.chat.completions.parse({ model: MODEL_ALIAS, messages: MESSAGES, response_format: RESPONSE_FORMAT, seed, max_tokens: 120 });
    const [choice] = completion.choices;
    assert.equal(choice.finish_reason, "stop");
    assert.deepEqual(choice.message.parsed, JSON.parse(choice.message.content));
    assert.ok(validate(choice.message.parsed), JSON.stringify(validate.errors));
    if (choice.message.parsed.when !== undefined) assert.match(choice.message.parsed.when, /^\d{4}-\d{2}-\d{2}$/);
  }
});

test("json_object mode answers one JSON object, streamed too", async () => {
  const completion = await client.chat.completions.create({
    model: MODEL_ALIAS, messages: MESSAGES, response_format: { type: "json_object" }, seed: 5, max_tokens: 150, logit_bias: closers,
  });
  assert.equal(completion.choices[0].finish_reason, "stop");
  const value = JSON.parse(completion.choices[0].message.content);
  assert.ok(typeof value === "object" && value !== null && !Array.isArray(value));

  const stream = await client.chat.completions.create({
    model: MODEL_ALIAS, messages: MESSAGES, response_format: { type: "json_object" }, seed: 5, max_tokens: 150, logit_bias: closers, stream: true,
  });
  let text = "";
  let finish;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, "stop");
  assert.equal(text, completion.choices[0].message.content, "the same seed streams the same text");
});

test("/v1/completions takes response_format and the grammar extension", async () => {
  const completion = await client.completions.create({ model: MODEL_ALIAS, prompt: "The verdict:", response_format: RESPONSE_FORMAT, seed: 9, max_tokens: 120 });
  assert.equal(completion.choices[0].finish_reason, "stop");
  const value = JSON.parse(completion.choices[0].text);
  assert.ok(["yes", "no"].includes(value.answer));

  const answers = new Set();
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const res = await post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: "Is it so?", grammar: 'root ::= ("yes" | "no") "."', seed, max_tokens: 20 });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.choices[0].finish_reason, "stop");
    answers.add(body.choices[0].text);
  }
  for (const text of answers) assert.ok(text === "yes." || text === "no.", text);
});

test("a schema or grammar the server cannot honour is a 400 naming the parameter", async () => {
  const cases = [
    [{ response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "string", minLength: 2 } } } }, "response_format", /minLength/],
    [{ grammar: "root ::= missing" }, "grammar", /missing/],
    [{ grammar: 'root ::= "a"', response_format: { type: "json_object" } }, "grammar", /cannot be combined/],
    [{ response_format: { type: "xml" } }, "response_format.type", /./],
    [{ response_format: { type: "json_schema" } }, "response_format.json_schema", /./],
  ];
  for (const [extra, param, message] of cases) {
    for (const route of ["/v1/chat/completions", "/v1/completions"]) {
      const body = route === "/v1/completions" ? { model: MODEL_ALIAS, prompt: "x", ...extra } : { model: MODEL_ALIAS, messages: MESSAGES, ...extra };
      const res = await post(url, route, body);
      assert.equal(res.status, 400, `${route} ${JSON.stringify(extra)}`);
      const { error } = await res.json();
      assert.equal(error.param, param, `${route} ${JSON.stringify(extra)}: ${error.message}`);
      assert.match(error.message, message);
    }
  }
});
