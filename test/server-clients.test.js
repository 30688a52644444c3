"use strict";
// The server's newer endpoints through the clients Node apps use (dev dependencies): the official `openai` client's
// embeddings, Responses API and tool calls, the AI SDK's default provider (which speaks the Responses API), and
// LangChain's bindTools. The trained model never calls a tool on its own: where a test needs a tool call, the
// server runs a model whose generations are forced to a scripted text (scriptedModel below: a logitsProcessor that
// leaves only the script's next token, so the real engine, detokenizer and parser produce it).
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { MODEL_ALIAS, startServedModel, openaiClient, withServer, post } = require("./helpers/server.js");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
const { scriptedModel } = require("./helpers/scripted.js");
if (skipFileWithoutReferenceModels()) return;

let served;
let model;
let url;
let client;

before(async () => {
  served = await startServedModel({ parallel: 2 });
  ({ model, url } = served);
  client = openaiClient(url);
});

after(() => served.close());

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

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const CALL_TEXT = '{"name": "get_weather", "parameters": {"city": "Paris"}}';

/** Runs fn({ client, prompts }) against a server whose model writes `scripts` in turn (helpers/scripted.js). */
async function withScriptedServer(scripts, fn) {
  const scripted = scriptedModel(model, scripts);
  return withServer(scripted.model, {}, ({ url: scriptedUrl }) =>
    fn({ client: openaiClient(scriptedUrl), prompts: scripted.prompts, url: scriptedUrl }),
  );
}

test("chat tool-call round trip: tool_calls, then the tool's result in the history, then the answer", async () => {
  await withScriptedServer([CALL_TEXT, "It is sunny in Paris."], async ({ client: scriptedClient, prompts }) => {
    const messages = [{ role: "user", content: "What is the weather in Paris?" }];
    const first = await scriptedClient.chat.completions.create({ model: MODEL_ALIAS, messages, tools: [WEATHER_TOOL] });
    const choice = first.choices[0];
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls.length, 1);
    const call = choice.message.tool_calls[0];
    assert.equal(call.type, "function");
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
    // The tools were in the prompt (the built-in format: this model's template does not know tools).
    assert.ok(prompts[0].includes('"name": "get_weather"') && prompts[0].includes("The weather in a city"));

    messages.push(choice.message, { role: "tool", tool_call_id: call.id, content: '{"sky": "sunny"}' });
    const second = await scriptedClient.chat.completions.create({ model: MODEL_ALIAS, messages, tools: [WEATHER_TOOL] });
    assert.equal(second.choices[0].finish_reason, "stop");
    assert.equal(second.choices[0].message.content.trim(), "It is sunny in Paris.");
    assert.equal(second.choices[0].message.tool_calls, undefined);
    // The call and its result went back to the model.
    assert.ok(prompts[1].includes('{"name":"get_weather","parameters":{"city":"Paris"}}'));
    assert.ok(prompts[1].includes('{"name":"get_weather","output":"{\\"sky\\": \\"sunny\\"}"}'));
  });
});

test("streamed tool calls come as tool_calls deltas; a text reply with tools offered streams as text", async () => {
  await withScriptedServer([`${CALL_TEXT}\n{"name": "get_weather", "parameters": {"city": "Rome"}}`, "No tool needed."], async ({ client: scriptedClient }) => {
    const body = { model: MODEL_ALIAS, messages: [{ role: "user", content: "Weather in Paris and Rome?" }], tools: [WEATHER_TOOL], stream: true };
    const chunks = [];
    for await (const chunk of await scriptedClient.chat.completions.create(body)) chunks.push(chunk);
    const deltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    const calls = [];
    for (const d of deltas) {
      calls[d.index] ??= { id: "", name: "", arguments: "" };
      if (d.id) calls[d.index].id = d.id;
      if (d.function?.name) calls[d.index].name += d.function.name;
      if (d.function?.arguments) calls[d.index].arguments += d.function.arguments;
    }
    assert.deepEqual(calls.map((c) => [c.name, JSON.parse(c.arguments).city]), [["get_weather", "Paris"], ["get_weather", "Rome"]]);
    assert.ok(calls.every((c) => /^call_/.test(c.id)));
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? "").join(""), "");
    assert.equal(chunks.at(-1).choices[0].finish_reason, "tool_calls");

    // The client's own accumulation of the stream.
    const text = [];
    for await (const chunk of await scriptedClient.chat.completions.create(body)) text.push(chunk);
    assert.equal(text.map((c) => c.choices[0]?.delta.content ?? "").join("").trim(), "No tool needed.");
    assert.ok(text.every((c) => c.choices[0]?.delta.tool_calls === undefined));
    assert.equal(text.at(-1).choices[0].finish_reason, "stop");
  });
});

test("parallel_tool_calls false keeps the first call; tool_choice none offers no tools", async () => {
  await withScriptedServer([`${CALL_TEXT}\n${CALL_TEXT}`], async ({ client: scriptedClient, prompts }) => {
    const messages = [{ role: "user", content: "Weather?" }];
    const one = await scriptedClient.chat.completions.create({ model: MODEL_ALIAS, messages, tools: [WEATHER_TOOL], parallel_tool_calls: false });
    assert.equal(one.choices[0].message.tool_calls.length, 1);
    const none = await scriptedClient.chat.completions.create({ model: MODEL_ALIAS, messages, tools: [WEATHER_TOOL], tool_choice: "none" });
    assert.equal(none.choices[0].finish_reason, "stop");
    assert.equal(none.choices[0].message.content.trim(), `${CALL_TEXT}\n${CALL_TEXT}`);
    assert.ok(!prompts[1].includes("get_weather"));
  });
});

test("tool_choice required and a named function: the model's own reply is held to a call of the offered tools", async () => {
  // No script: constrained generation alone makes the trained model's reply a call (the city an enum, so it ends).
  // The two tools' descriptions fill most of the shared model's context, and the model spends tokens on the
  // whitespace JSON allows between tokens (bounded, so it ends): a model of its own with room for both.
  const roomy = await require("../dist/cjs/index.js").loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 1, contextSize: 1024 });
  try {
    await withServer(roomy, {}, async ({ url }) => {
      const roomyClient = openaiClient(url);
      const city = { type: "function", function: { name: "get_city", parameters: { type: "object", properties: { city: { enum: ["Paris", "Rome"] } }, required: ["city"], additionalProperties: false } } };
      const time = { type: "function", function: { name: "get_time", parameters: { type: "object", properties: {}, additionalProperties: false } } };
      const messages = [{ role: "user", content: "Where?" }];
      for (const [toolChoice, names] of [["required", ["get_city", "get_time"]], [{ type: "function", function: { name: "get_time" } }, ["get_time"]]]) {
        const reply = await roomyClient.chat.completions.create({ model: MODEL_ALIAS, messages, tools: [city, time], tool_choice: toolChoice, max_tokens: 600, temperature: 0.8, seed: 3 });
        assert.equal(reply.choices[0].finish_reason, "tool_calls", JSON.stringify(reply.choices[0]));
        const [call] = reply.choices[0].message.tool_calls;
        assert.ok(names.includes(call.function.name), call.function.name);
        const args = JSON.parse(call.function.arguments);
        if (call.function.name === "get_city") assert.ok(["Paris", "Rome"].includes(args.city));
        else assert.deepEqual(args, {});
      }
    });
  } finally {
    await roomy.dispose();
  }
});

/** The library's greedy reply to a conversation, to compare the server's with. */
async function greedyReply(messages, maxTokens, options = {}) {
  return model.complete(model.applyChatTemplate(messages, options), { temperature: 0, maxTokens });
}

test("responses.create: a string input with instructions; output_text is the model's greedy reply; usage; max_output_tokens", async () => {
  const r = await client.responses.create({ model: MODEL_ALIAS, instructions: "You answer briefly.", input: "What is the state of the union?", temperature: 0, max_output_tokens: 20 });
  const expected = await greedyReply([{ role: "system", content: "You answer briefly." }, { role: "user", content: "What is the state of the union?" }], 20);
  assert.equal(r.object, "response");
  assert.match(r.id, /^resp_/);
  assert.equal(r.model, MODEL_ALIAS);
  assert.equal(r.output_text, expected.text);
  assert.equal(r.output.length, 1);
  assert.equal(r.output[0].type, "message");
  assert.equal(r.output[0].role, "assistant");
  assert.equal(r.output[0].content[0].type, "output_text");
  assert.equal(r.usage.input_tokens, expected.stats.promptTokens);
  assert.equal(r.usage.output_tokens, expected.stats.genTokens);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  assert.equal(r.status, expected.finishReason === "length" ? "incomplete" : "completed");

  const cut = await client.responses.create({ model: MODEL_ALIAS, input: "Tell me about the union.", max_output_tokens: 3, temperature: 0 });
  assert.equal(cut.status, "incomplete");
  assert.deepEqual(cut.incomplete_details, { reason: "max_output_tokens" });
  assert.equal(cut.usage.output_tokens, 3);
});

test("responses.create: input items (messages with text parts) and previous_response_id carrying the conversation on", async () => {
  const first = await client.responses.create({
    model: MODEL_ALIAS,
    input: [{ role: "user", content: [{ type: "input_text", text: "Name a president." }] }],
    temperature: 0,
    max_output_tokens: 8,
  });
  const second = await client.responses.create({ model: MODEL_ALIAS, previous_response_id: first.id, input: "And another?", temperature: 0, max_output_tokens: 8 });
  const expected = await greedyReply(
    [{ role: "user", content: "Name a president." }, { role: "assistant", content: first.output_text }, { role: "user", content: "And another?" }],
    8,
  );
  assert.equal(second.output_text, expected.text);
  assert.equal(second.previous_response_id, first.id);
  await assert.rejects(client.responses.create({ model: MODEL_ALIAS, previous_response_id: "resp_unknown", input: "x" }), (err) => err.status === 400 && err.param === "previous_response_id");
  // store: false keeps nothing to continue from.
  const unstored = await client.responses.create({ model: MODEL_ALIAS, input: "Hi", max_output_tokens: 2, store: false });
  await assert.rejects(client.responses.create({ model: MODEL_ALIAS, previous_response_id: unstored.id, input: "x" }), (err) => err.status === 400);
  await assert.rejects(client.responses.create({ model: MODEL_ALIAS, input: [{ role: "user", content: [{ type: "input_image", image_url: "x" }] }] }), (err) => err.status === 400 && err.param === "input[0].content[0]");
  await assert.rejects(client.responses.create({ model: MODEL_ALIAS, input: "x", tools: [{ type: "web_search" }] }), (err) => err.status === 400 && err.param === "tools[0].type");
  await assert.rejects(client.responses.create({ model: MODEL_ALIAS, input: "x", background: true }), (err) => err.status === 400 && err.param === "background");
  // text.format holds the output to the schema (constrained generation); a schema it cannot hold is a 400 naming it.
  const schema = { type: "object", properties: { a: { enum: ["yes", "no"] } }, required: ["a"], additionalProperties: false };
  const structured = await client.responses.create({ model: MODEL_ALIAS, input: "x", max_output_tokens: 200, text: { format: { type: "json_schema", name: "answer", schema } } });
  assert.equal(structured.status, "completed");
  assert.ok(["yes", "no"].includes(JSON.parse(structured.output_text).a), structured.output_text);
  const unsupported = { type: "json_schema", name: "answer", schema: { type: "string", minLength: 2 } };
  await assert.rejects(client.responses.create({ model: MODEL_ALIAS, input: "x", text: { format: unsupported } }), (err) => err.status === 400 && err.param === "text.format");
});

test("responses.stream: the typed events in order with rising sequence numbers, deltas adding up to the final text", async () => {
  const stream = client.responses.stream({ model: MODEL_ALIAS, input: "What is the state of the union?", temperature: 0, max_output_tokens: 16 });
  const events = [];
  for await (const event of stream) events.push(event);
  const final = await stream.finalResponse();
  const expected = await greedyReply([{ role: "user", content: "What is the state of the union?" }], 16);
  const types = events.map((e) => e.type);
  const deltas = events.filter((e) => e.type === "response.output_text.delta");
  assert.deepEqual(types.filter((t) => t !== "response.output_text.delta"), [
    "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    "response.output_text.done", "response.content_part.done", "response.output_item.done",
    final.status === "completed" ? "response.completed" : "response.incomplete",
  ]);
  assert.ok(deltas.length > 1);
  assert.ok(types.indexOf("response.content_part.added") < types.indexOf("response.output_text.delta"));
  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  assert.equal(deltas.map((d) => d.delta).join(""), expected.text);
  assert.equal(final.output_text, expected.text);
  assert.equal(events.find((e) => e.type === "response.output_text.done").text, expected.text);
  assert.equal(final.usage.output_tokens, expected.stats.genTokens);
});

test("Responses function calls: function_call items, then function_call_output with previous_response_id; streamed too", async () => {
  const tool = { type: "function", name: "get_weather", description: "The weather in a city", parameters: WEATHER_TOOL.function.parameters };
  await withScriptedServer([CALL_TEXT, "It is sunny in Paris.", "Sunny.", CALL_TEXT], async ({ client: scriptedClient, prompts }) => {
    const asked = await scriptedClient.responses.create({ model: MODEL_ALIAS, input: "Weather in Paris?", tools: [tool] });
    assert.equal(asked.output.length, 1);
    const call = asked.output[0];
    assert.equal(call.type, "function_call");
    assert.equal(call.name, "get_weather");
    assert.match(call.call_id, /^call_/);
    assert.deepEqual(JSON.parse(call.arguments), { city: "Paris" });
    assert.equal(asked.output_text, "");

    const answered = await scriptedClient.responses.create({
      model: MODEL_ALIAS,
      previous_response_id: asked.id,
      input: [{ type: "function_call_output", call_id: call.call_id, output: '{"sky": "sunny"}' }],
      tools: [tool],
    });
    assert.equal(answered.output_text.trim(), "It is sunny in Paris.");
    assert.ok(prompts[1].includes("Weather in Paris?") && prompts[1].includes('{"name":"get_weather","parameters":{"city":"Paris"}}'));
    assert.ok(prompts[1].includes('"output":"{\\"sky\\": \\"sunny\\"}"'));

    // The same turn naming the stored call item (item_reference) instead of the previous response.
    const byReference = await scriptedClient.responses.create({
      model: MODEL_ALIAS,
      input: [{ role: "user", content: "Weather in Paris?" }, { type: "item_reference", id: call.id }, { type: "function_call_output", call_id: call.call_id, output: "sunny" }],
      tools: [tool],
    });
    assert.equal(byReference.output_text.trim(), "Sunny.");
    assert.ok(prompts[2].includes('{"name":"get_weather","parameters":{"city":"Paris"}}') && prompts[2].includes('"output":"sunny"'));
    await assert.rejects(scriptedClient.responses.create({ model: MODEL_ALIAS, input: [{ type: "item_reference", id: "fc_unknown" }] }), (err) => err.status === 400 && err.param === "input[0].id");

    const events = [];
    for await (const event of scriptedClient.responses.stream({ model: MODEL_ALIAS, input: "Weather in Paris?", tools: [tool] })) events.push(event);
    assert.deepEqual(events.map((e) => e.type), [
      "response.created", "response.in_progress", "response.output_item.added", "response.function_call_arguments.delta",
      "response.function_call_arguments.done", "response.output_item.done", "response.completed",
    ]);
    const done = events.find((e) => e.type === "response.output_item.done").item;
    assert.equal(done.type, "function_call");
    assert.deepEqual(JSON.parse(done.arguments), { city: "Paris" });
    assert.equal(events.at(-1).response.output[0].call_id, done.call_id);
  });
});

test("the AI SDK's default provider (the Responses API): generateText and streamText give the model's reply", async () => {
  const { generateText, streamText } = require("ai");
  const { createOpenAI } = require("@ai-sdk/openai");
  const openai = createOpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
  const expected = await greedyReply([{ role: "user", content: "What is the state of the union?" }], 16);
  const generated = await generateText({ model: openai(MODEL_ALIAS), prompt: "What is the state of the union?", temperature: 0, maxOutputTokens: 16, maxRetries: 0 });
  assert.equal(generated.text, expected.text);
  assert.equal(generated.usage.outputTokens, expected.stats.genTokens);

  const errors = [];
  const streamed = streamText({ model: openai(MODEL_ALIAS), prompt: "What is the state of the union?", temperature: 0, maxOutputTokens: 16, maxRetries: 0, onError: ({ error }) => errors.push(error) });
  let text = "";
  for await (const piece of streamed.textStream) text += piece;
  assert.deepEqual(errors, []);
  assert.equal(text, expected.text);
});

test("the AI SDK runs a tool through the Responses API: the call, its execute result back, then the answer", async () => {
  const { generateText, tool, jsonSchema, stepCountIs } = require("ai");
  const { createOpenAI } = require("@ai-sdk/openai");
  await withScriptedServer([CALL_TEXT, "It is sunny in Paris."], async ({ url: scriptedUrl, prompts }) => {
    const openai = createOpenAI({ baseURL: `${scriptedUrl}/v1`, apiKey: "unused" });
    const cities = [];
    const result = await generateText({
      model: openai(MODEL_ALIAS),
      prompt: "What is the weather in Paris?",
      tools: {
        get_weather: tool({
          description: "The weather in a city",
          inputSchema: jsonSchema(WEATHER_TOOL.function.parameters),
          execute: async ({ city }) => (cities.push(city), { sky: "sunny" }),
        }),
      },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
    });
    assert.deepEqual(cities, ["Paris"]);
    assert.equal(result.steps.length, 2);
    assert.equal(result.steps[0].toolCalls[0].toolName, "get_weather");
    assert.equal(result.text.trim(), "It is sunny in Paris.");
    assert.ok(prompts[1].includes('"output":'), "the tool's result went back to the model");
  });
});

test("LangChain: ChatOpenAI without a model name works; bindTools gets the tool call", async () => {
  const { ChatOpenAI } = require("@langchain/openai");
  const plain = new ChatOpenAI({ apiKey: "unused", configuration: { baseURL: `${url}/v1` }, temperature: 0, maxTokens: 8, maxRetries: 0 });
  const reply = await plain.invoke("What is the state of the union?");
  assert.equal(reply.content, (await greedyReply([{ role: "user", content: "What is the state of the union?" }], 8)).text);

  await withScriptedServer([CALL_TEXT], async ({ url: scriptedUrl }) => {
    const llm = new ChatOpenAI({ model: MODEL_ALIAS, apiKey: "unused", configuration: { baseURL: `${scriptedUrl}/v1` }, maxRetries: 0 });
    const message = await llm.bindTools([WEATHER_TOOL]).invoke("What is the weather in Paris?");
    assert.equal(message.tool_calls.length, 1);
    assert.equal(message.tool_calls[0].name, "get_weather");
    assert.deepEqual(message.tool_calls[0].args, { city: "Paris" });
    assert.match(message.tool_calls[0].id, /^call_/);
  });
});

test("the response store is bounded: least recently used responses go first, by count and by characters", () => {
  const { ResponseStore } = require("../dist/cjs/server/response-store.js");
  const store = new ResponseStore(2, 100);
  const said = (text) => [{ role: "user", content: text }];
  store.set("a", said("a"), new Map([["msg_a", { role: "assistant", content: "A" }]]));
  store.set("b", said("b"), new Map());
  assert.deepEqual(store.conversation("a"), said("a")); // a is now the most recent
  store.set("c", said("c"), new Map());
  assert.equal(store.conversation("b"), undefined);
  assert.deepEqual(store.item("msg_a"), { role: "assistant", content: "A" });
  // item() made a the most recent again: the character bound (1 + 1 + 99 > 100) drops c.
  store.set("long", said("x".repeat(99)), new Map());
  assert.equal(store.conversation("c"), undefined);
  assert.ok(store.conversation("a"));
  assert.equal(store.conversation("long")[0].content.length, 99);
  store.set("too long", said("x".repeat(101)), new Map());
  assert.equal(store.conversation("too long"), undefined);
  assert.ok(store.conversation("long"));
});
