"use strict";
// The OpenAI-compatible server through the official `openai` client on loopback: chat and completions, streamed and
// not, stop sequences, n, seeds, usage counts, logprobs, and every error case as the client's typed error.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { OpenAI } = require("openai");
const { MODEL_ALIAS, CONTEXT_SIZE, startServedModel, openaiClient, withServer } = require("./helpers/server.js");
const { skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;

const MESSAGES = [
  { role: "system", content: "You answer briefly." },
  { role: "user", content: "What is the state of the union?" },
];
const PROMPT = "The state of the union is";

let served;
let model;
let url;
let client;

before(async () => {
  served = await startServedModel({ parallel: 4 });
  ({ model, url } = served);
  client = openaiClient(url);
});

after(() => served.close());

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

/** The library's own greedy answer, to compare the server's with. */
async function direct(prompt, maxTokens, options = {}) {
  return model.complete(prompt, { temperature: 0, maxTokens, ...options });
}

test("GET /v1/models lists the alias; retrieve finds it, and any other name unless strictModelName", async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [MODEL_ALIAS]);
  assert.equal((await client.models.retrieve(MODEL_ALIAS)).id, MODEL_ALIAS);
  assert.equal((await client.models.retrieve("gpt-4")).id, MODEL_ALIAS);
  await withServer(model, { strictModelName: true }, async ({ url: strict }) => {
    await assert.rejects(openaiClient(strict).models.retrieve("gpt-4"), (err) => err instanceof OpenAI.NotFoundError && err.code === "model_not_found");
  });
});

test("chat completion: the model's greedy answer to its chat template, with usage", async () => {
  const expected = await direct(model.applyChatTemplate(MESSAGES), 24);
  const r = await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 24, temperature: 0 });
  assert.equal(r.object, "chat.completion");
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.model, MODEL_ALIAS);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(r.choices[0].message.content, expected.text);
  assert.equal(r.choices[0].finish_reason, expected.finishReason);
  assert.equal(r.choices[0].logprobs, null);
  assert.deepEqual(r.usage, {
    prompt_tokens: model.applyChatTemplate(MESSAGES).tokens.length,
    completion_tokens: expected.tokens.length,
    total_tokens: model.applyChatTemplate(MESSAGES).tokens.length + expected.tokens.length,
  });
  // max_completion_tokens is the newer spelling of the same limit.
  const limited = await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_completion_tokens: 3, temperature: 0 });
  assert.equal(limited.usage.completion_tokens, 3);
  assert.equal(limited.choices[0].finish_reason, "length");
});

test("streamed chat: role first, deltas that add up to the answer, a finish chunk, usage, one id", async () => {
  const whole = await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 24, temperature: 0 });
  const chunks = await collect(
    await client.chat.completions.create({
      model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true },
    }),
  );
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id && c.model === MODEL_ALIAS));
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  const usageChunk = chunks.at(-1);
  assert.deepEqual(usageChunk.choices, []);
  assert.deepEqual(usageChunk.usage, whole.usage);
  const finish = chunks.at(-2).choices[0];
  assert.deepEqual(finish.delta, {});
  assert.equal(finish.finish_reason, whole.choices[0].finish_reason);
  const deltas = chunks.slice(1, -2).map((c) => c.choices[0]);
  assert.ok(deltas.every((d) => d.finish_reason === null && d.delta.content.length > 0));
  assert.equal(deltas.map((d) => d.delta.content).join(""), whole.choices[0].message.content);
  assert.ok(chunks.slice(0, -1).every((c) => c.usage === null), "usage is null until the last chunk");

  const withoutUsage = await collect(
    await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 4, temperature: 0, stream: true }),
  );
  assert.ok(withoutUsage.every((c) => c.choices.length === 1 && !("usage" in c)));
});

test("text completion, streamed and not; several prompts; token-id prompts", async () => {
  const expected = await direct(PROMPT, 20);
  const r = await client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 20, temperature: 0 });
  assert.equal(r.object, "text_completion");
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.choices[0].text, expected.text);
  assert.equal(r.choices[0].finish_reason, expected.finishReason);
  assert.deepEqual(r.usage, { prompt_tokens: expected.stats.promptTokens, completion_tokens: expected.tokens.length, total_tokens: expected.stats.promptTokens + expected.tokens.length });

  const chunks = await collect(await client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 20, temperature: 0, stream: true }));
  assert.equal(chunks.map((c) => c.choices[0].text).join(""), expected.text);
  assert.equal(chunks.at(-1).choices[0].finish_reason, expected.finishReason);

  // OpenAI's legacy default is 16 tokens.
  const byDefault = await client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, temperature: 0, ignore_eos: true });
  assert.equal(byDefault.usage.completion_tokens, 16);

  const other = "Our economy";
  const batch = await client.completions.create({ model: MODEL_ALIAS, prompt: [PROMPT, other], max_tokens: 8, temperature: 0 });
  assert.deepEqual(batch.choices.map((c) => c.index), [0, 1]);
  assert.equal(batch.choices[0].text, (await direct(PROMPT, 8)).text);
  assert.equal(batch.choices[1].text, (await direct(other, 8)).text);
  assert.equal(batch.usage.prompt_tokens, model.tokenize(PROMPT).length + model.tokenize(other).length);

  const ids = model.tokenize(PROMPT, { addBos: true });
  const fromIds = await client.completions.create({ model: MODEL_ALIAS, prompt: ids, max_tokens: 8, temperature: 0 });
  assert.equal(fromIds.choices[0].text, batch.choices[0].text);
  const fromIdLists = await client.completions.create({ model: MODEL_ALIAS, prompt: [ids, ids], max_tokens: 8, temperature: 0 });
  assert.deepEqual(fromIdLists.choices.map((c) => c.text), [batch.choices[0].text, batch.choices[0].text]);
});

test("stop sequences end the text before the stop string, streamed or not", async () => {
  const full = (await direct(PROMPT, 40, { ignoreEos: true })).text;
  // A stop string from the middle of the greedy text: the answer is what comes before its first occurrence.
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
  const before = full.slice(0, full.indexOf(stop));
  const r = await client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 40, temperature: 0, ignore_eos: true, stop: [stop, "@@@@"] });
  assert.equal(r.choices[0].text, before);
  assert.equal(r.choices[0].finish_reason, "stop");
  const chunks = await collect(
    await client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 40, temperature: 0, ignore_eos: true, stop, stream: true }),
  );
  assert.equal(chunks.map((c) => c.choices[0].text).join(""), before);
  assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");

  const chatFull = (await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 30, temperature: 0, ignore_eos: true })).choices[0].message.content;
  const chatStop = chatFull.slice(10, 13);
  const chat = await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 30, temperature: 0, ignore_eos: true, stop: chatStop });
  assert.equal(chat.choices[0].message.content, chatFull.slice(0, chatFull.indexOf(chatStop)));
  assert.equal(chat.choices[0].finish_reason, "stop");
});

test("n choices: with a seed, choice i is the single answer for seed + i; usage counts the prompt once", async () => {
  const body = { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 12, temperature: 1, seed: 42 };
  const r = await client.completions.create({ ...body, n: 3 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  let completionTokens = 0;
  for (let i = 0; i < 3; i++) {
    const single = await client.completions.create({ ...body, seed: 42 + i });
    assert.equal(r.choices[i].text, single.choices[0].text, `choice ${i}`);
    completionTokens += single.usage.completion_tokens;
  }
  assert.equal(r.usage.prompt_tokens, model.tokenize(PROMPT).length);
  assert.equal(r.usage.completion_tokens, completionTokens);

  const chunks = await collect(
    await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 8, temperature: 1, seed: 7, n: 2, stream: true }),
  );
  const whole = await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 8, temperature: 1, seed: 7, n: 2 });
  for (const index of [0, 1]) {
    const mine = chunks.flatMap((c) => c.choices).filter((c) => c.index === index);
    assert.equal(mine.map((c) => c.delta.content ?? "").join(""), whole.choices[index].message.content);
    assert.equal(mine.at(-1).finish_reason, whole.choices[index].finish_reason);
  }
});

test("chat logprobs: token, logprob, bytes and top_logprobs in OpenAI's shape", async () => {
  const r = await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 });
  const { content } = r.choices[0].logprobs;
  assert.equal(content.length, r.usage.completion_tokens);
  assert.equal(content.map((t) => t.token).join(""), r.choices[0].message.content);
  for (const t of content) {
    assert.ok(t.logprob <= 0);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
    assert.equal(t.top_logprobs.length, 3);
    // Greedy: the chosen token is the most likely one.
    assert.equal(t.top_logprobs[0].token, t.token);
    assert.equal(t.top_logprobs[0].logprob, t.logprob);
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob && t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob);
  }
  // Streamed: the same entries, spread over the chunks.
  const chunks = await collect(
    await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3, stream: true }),
  );
  assert.deepEqual(chunks.flatMap((c) => c.choices[0].logprobs?.content ?? []), content);
  // logprobs without top_logprobs: the chosen token's only.
  // (The token texts keep their leading spaces here too, with no alternatives to take them from.)
  const bare = await client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 12, temperature: 0, logprobs: true });
  assert.ok(bare.choices[0].logprobs.content.every((t) => t.top_logprobs.length === 0 && t.logprob <= 0));
  assert.deepEqual(bare.choices[0].logprobs.content.map((t) => t.token), content.map((t) => t.token));
  // Sampled tokens need not be among the alternatives: their texts still add up to the answer.
  const sampled = await client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 16, temperature: 1.5, top_k: 0, seed: 3, logprobs: 1 });
  const scored = sampled.choices[0].logprobs;
  assert.equal(scored.tokens.join(""), sampled.choices[0].text);
  // The legacy format lists the sampled token among its alternatives all the same: logprobs + 1 entries at most.
  scored.tokens.forEach((token, i) => {
    assert.equal(scored.top_logprobs[i][token], scored.token_logprobs[i]);
    assert.ok(Object.keys(scored.top_logprobs[i]).length <= 2);
  });
  assert.ok(scored.top_logprobs.some((top) => Object.keys(top).length === 2), "some sampled token is not the most likely one");
});

test("completion logprobs: the legacy tokens / token_logprobs / top_logprobs / text_offset shape", async () => {
  const r = await client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 10, temperature: 0, logprobs: 2 });
  const { text, logprobs } = r.choices[0];
  assert.equal(logprobs.tokens.length, 10);
  assert.equal(logprobs.tokens.join(""), text);
  // text_offset counts from the start of the prompt, as OpenAI's legacy API does.
  assert.equal(logprobs.text_offset[0], PROMPT.length);
  logprobs.tokens.forEach((token, i) => {
    assert.equal((PROMPT + text).slice(logprobs.text_offset[i], logprobs.text_offset[i] + token.length), token);
    assert.equal(Object.keys(logprobs.top_logprobs[i]).length <= 2, true);
    assert.equal(logprobs.top_logprobs[i][token], logprobs.token_logprobs[i]);
  });
  // Token ids as the prompt: the offsets start after its text.
  const ids = model.tokenize(PROMPT, { addBos: true });
  const byIds = await client.completions.create({ model: MODEL_ALIAS, prompt: ids, max_tokens: 3, temperature: 0, logprobs: 1 });
  assert.equal(byIds.choices[0].logprobs.text_offset[0], model.detokenize(ids).length);
  const chunks = await collect(await client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 10, temperature: 0, logprobs: 2, stream: true }));
  assert.deepEqual(chunks.flatMap((c) => c.choices[0].logprobs?.tokens ?? []), logprobs.tokens);
  assert.deepEqual(chunks.flatMap((c) => c.choices[0].logprobs?.text_offset ?? []), logprobs.text_offset);
});

/** The client's error for a request, checked for class, status, param and code. */
async function assertApiError(promise, { type, status, param, code, message }) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof type, `${err.constructor.name}: ${err.message}`);
    assert.equal(err.status, status);
    if (param !== undefined) assert.equal(err.param, param);
    if (code !== undefined) assert.equal(err.code, code);
    if (message) assert.match(err.message, message);
    return true;
  });
}

test("400s name the parameter: wrong types, out-of-range values, missing and unsupported parameters", async () => {
  const chat = (body) => client.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 2, ...body });
  const bad = (body, param, message) => assertApiError(chat(body), { type: OpenAI.BadRequestError, status: 400, param, message });
  await bad({ temperature: "hot" }, "temperature", /expected number, got string/);
  await bad({ temperature: 2.5 }, "temperature", /<= 2/);
  await bad({ top_p: -0.1 }, "top_p");
  await bad({ max_tokens: 0 }, "max_tokens");
  await bad({ max_tokens: 1.5 }, "max_tokens", /integer/);
  await bad({ n: 0 }, "n");
  await bad({ seed: "x" }, "seed");
  await bad({ frequency_penalty: 3 }, "frequency_penalty");
  await bad({ presence_penalty: -3 }, "presence_penalty");
  await bad({ stop: ["a", "b", "c", "d", "e"] }, "stop");
  await bad({ stop: 5 }, "stop", /a string or an array/);
  await bad({ logit_bias: { 99999: 1 } }, "logit_bias", /\[0, 32000\)/);
  await bad({ logit_bias: { abc: 1 } }, "logit_bias");
  await bad({ logit_bias: { 5: 200 } }, "logit_bias[5]", /<= 100/);
  await bad({ top_logprobs: 3 }, "top_logprobs", /logprobs/);
  await bad({ top_logprobs: 21, logprobs: true }, "top_logprobs");
  await bad({ top_k: -1 }, "top_k");
  await bad({ min_p: 2 }, "min_p");
  await bad({ repeat_last_n: -2 }, "repeat_last_n");
  await bad({ typical_p: 0 }, "typical_p");
  await bad({ repeat_penalty: 0 }, "repeat_penalty");
  await bad({ stream_options: { include_usage: true } }, "stream_options");
  await bad({ tools: [{ type: "function", function: { name: "bad name" } }] }, "tools", /tools\[0\].name must be 1 to 64 letters/);
  await bad({ tools: [{ type: "function", function: { name: "f" } }], tool_choice: { type: "function", function: { name: "g" } } }, "tool_choice", /no tool is named 'g'/);
  await bad({ tool_choice: "required" }, "tool_choice", /no tools/);
  await bad({ messages: [{ role: "tool", content: "x" }] }, "messages[0].tool_call_id", /Missing required parameter/);
  await bad({ messages: [{ role: "assistant", content: null }] }, "messages[0].content", /Missing required parameter/);
  await bad({ messages: [] }, "messages");
  await bad({ messages: [{ role: "user" }] }, "messages[0].content", /Missing required parameter/);
  await bad({ messages: [{ role: "robot", content: "hi" }] }, "messages[0].role", /'system', 'developer', 'user', 'assistant'/);
  await bad({ messages: [{ role: "user", content: 5 }] }, "messages[0].content");
  // The Llama 2 template raises on roles out of order.
  await bad({ messages: [{ role: "assistant", content: "a" }, { role: "assistant", content: "b" }] }, "messages");
  await assertApiError(client.chat.completions.create({ messages: MESSAGES }), { type: OpenAI.BadRequestError, status: 400, param: "model", code: "missing_required_parameter" });

  const text = (body) => client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 2, ...body });
  await assertApiError(text({ prompt: [1, 2, 99999] }), { type: OpenAI.BadRequestError, status: 400, param: "prompt", message: /out of range/ });
  await assertApiError(text({ prompt: [] }), { type: OpenAI.BadRequestError, status: 400, param: "prompt" });
  await assertApiError(text({ prompt: { text: "x" } }), { type: OpenAI.BadRequestError, status: 400, param: "prompt" });
  await assertApiError(text({ logprobs: 21 }), { type: OpenAI.BadRequestError, status: 400, param: "logprobs" });
  await assertApiError(text({ echo: true }), { type: OpenAI.BadRequestError, status: 400, param: "echo" });
});

test("another model name: served by the model, or a 404 naming it with strictModelName", async () => {
  const served = await client.chat.completions.create({ model: "gpt-3.5-turbo", messages: MESSAGES, max_tokens: 4, temperature: 0 });
  assert.equal(served.model, MODEL_ALIAS);
  assert.equal(served.choices[0].message.content, (await direct(model.applyChatTemplate(MESSAGES), 4)).text);
  await withServer(model, { strictModelName: true }, async ({ url: strict }) => {
    await assertApiError(openaiClient(strict).chat.completions.create({ model: "gpt-4o", messages: MESSAGES }), {
      type: OpenAI.NotFoundError, status: 404, param: "model", code: "model_not_found", message: /gpt-4o/,
    });
    await assertApiError(openaiClient(strict).completions.create({ model: "gpt-4o", prompt: PROMPT }), { type: OpenAI.NotFoundError, status: 404, code: "model_not_found" });
  });
});

test("top_p 0 is greedy decoding", async () => {
  const greedy = await client.completions.create({ model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 12, temperature: 1.5, top_p: 0, seed: 5 });
  assert.equal(greedy.choices[0].text, (await direct(PROMPT, 12)).text);
});

test("a prompt longer than the context: 400 with both numbers", async () => {
  const long = "the union ".repeat(CONTEXT_SIZE);
  const tokens = model.tokenize(long, { addBos: true }).length;
  await assertApiError(client.completions.create({ model: MODEL_ALIAS, prompt: long }), {
    type: OpenAI.BadRequestError, status: 400, param: "prompt", code: "context_length_exceeded", message: new RegExp(`${CONTEXT_SIZE} tokens.*${tokens} tokens`),
  });
  await assertApiError(client.chat.completions.create({ model: MODEL_ALIAS, messages: [{ role: "user", content: long }] }), {
    type: OpenAI.BadRequestError, status: 400, param: "messages", code: "context_length_exceeded", message: new RegExp(`${CONTEXT_SIZE} tokens`),
  });
});

test("a body over the limit: 413", async () => {
  await withServer(model, { bodyLimit: 4096 }, async ({ url: small }) => {
    const big = [{ role: "user", content: "x".repeat(5000) }];
    await assertApiError(openaiClient(small).chat.completions.create({ model: MODEL_ALIAS, messages: big }), { type: OpenAI.APIError, status: 413, code: "request_too_large" });
    const ok = await openaiClient(small).chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 1 });
    assert.equal(ok.usage.completion_tokens, 1);
  });
});

test("--api-key: a missing or wrong key is a 401; the right one works; /health stays open", async () => {
  await withServer(model, { apiKey: "s3cret" }, async ({ url: guarded }) => {
    const request = (c) => c.chat.completions.create({ model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 1 });
    await assertApiError(request(openaiClient(guarded, "wrong")), { type: OpenAI.AuthenticationError, status: 401, code: "invalid_api_key" });
    await assertApiError(openaiClient(guarded, "wrong").models.list(), { type: OpenAI.AuthenticationError, status: 401 });
    const noKey = await fetch(`${guarded}/v1/models`);
    assert.equal(noKey.status, 401);
    assert.equal((await noKey.json()).error.code, "invalid_api_key");
    assert.equal((await request(openaiClient(guarded, "s3cret"))).usage.completion_tokens, 1);
    assert.equal((await fetch(`${guarded}/health`)).status, 200);
  });
});

test("queue full: 429 with Retry-After", async () => {
  await withServer(model, { parallel: 1, queueSize: 1 }, async ({ url: busy }) => {
    const c = openaiClient(busy);
    const long = { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 200, ignore_eos: true, stream: true };
    const running = await c.completions.create(long); // the stream is open: its generation holds the slot
    const runningIterator = running[Symbol.asyncIterator]();
    await runningIterator.next();
    const queued = c.completions.create({ ...long, stream: false, max_tokens: 2 }); // waits in the queue
    while ((await (await fetch(`${busy}/health`)).json()).queue.depth === 0) await new Promise((r) => setTimeout(r, 5));
    await assertApiError(c.completions.create({ ...long, stream: false }), { type: OpenAI.RateLimitError, status: 429, code: "queue_full" });
    const raw = await fetch(`${busy}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(long) });
    assert.equal(raw.status, 429);
    assert.equal(raw.headers.get("retry-after"), "1");
    running.controller.abort();
    assert.equal((await queued).usage.completion_tokens, 2);
    // A request for more generations than slots plus queue can ever hold is the client's error, not a 429.
    await assertApiError(c.completions.create({ ...long, stream: false, n: 3 }), { type: OpenAI.BadRequestError, status: 400, param: "n" });
  });
});
