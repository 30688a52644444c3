"use strict";
// Server fairness: one request cannot take every slot (`n` is capped: maxN, --max-n) or ask for an endless answer
// (max_tokens is capped: maxTokensCap, --max-tokens-cap), and a long prompt does not pause the streams already
// decoding (measured by the passes' composition). On the model the package carries, so it always runs.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { loadModel, resolveServerOptions } = require("../dist/cjs/index.js");
const { DEFAULT_MODEL } = require("./helpers/models.js");
const { MODEL_ALIAS, withServer, post, serveSync, spawnServe } = require("./helpers/server.js");
const { assertPrefilledBeside, countdown, recordDeliveries } = require("./helpers/passes.js");

const MESSAGES = [{ role: "user", content: "Tell me a story." }];
const PROMPT = "Once upon a time";
const CHAT = { model: MODEL_ALIAS, messages: MESSAGES, ignore_eos: true };
const TEXT = { model: MODEL_ALIAS, prompt: PROMPT, ignore_eos: true };
const ROUTES = [["/v1/chat/completions", CHAT], ["/v1/completions", TEXT]];

let model;

before(async () => {
  model = await loadModel(DEFAULT_MODEL, { threads: 1 });
});
after(() => model.dispose());

/** Checks that `response` is a 400 in OpenAI's shape naming `param` with `code`; returns its error object. */
async function assertBadRequest(response, param, code) {
  const { error } = await response.json();
  assert.equal(response.status, 400, error.message);
  assert.equal(error.type, "invalid_request_error");
  assert.equal(error.param, param, error.message);
  assert.equal(error.code, code);
  return error;
}

/** The usage chunk of an SSE stream (sent with stream_options.include_usage). */
async function streamedUsage(response) {
  assert.equal(response.status, 200);
  const events = (await response.text()).split("\n\n").filter((e) => e.startsWith("data: {"));
  return events.map((e) => JSON.parse(e.slice("data: ".length))).find((chunk) => chunk.usage).usage;
}

test("n over the cap (8 unless maxN says) is a 400 naming n, on both endpoints, streamed or not; n at the cap runs", async () => {
  await withServer(model, {}, async ({ url }) => {
    for (const [route, body] of ROUTES) {
      for (const stream of [false, true]) {
        const error = await assertBadRequest(await post(url, route, { ...body, max_tokens: 1, n: 9, stream }), "n", "integer_above_max_value");
        assert.match(error.message, /<= 8, but got 9/);
      }
      const atCap = await post(url, route, { ...body, max_tokens: 1, n: 8 });
      assert.equal(atCap.status, 200);
      assert.equal((await atCap.json()).choices.length, 8);
    }
  });
  await withServer(model, { maxN: 2 }, async ({ url }) => {
    const error = await assertBadRequest(await post(url, "/v1/completions", { ...TEXT, max_tokens: 1, n: 3 }), "n", "integer_above_max_value");
    assert.match(error.message, /<= 2, but got 3/);
    assert.equal((await (await post(url, "/v1/completions", { ...TEXT, max_tokens: 1, n: 2 })).json()).choices.length, 2);
  });
});

test("max_tokens over maxTokensCap is a 400 naming the parameter, streamed or not; without one a choice gets the cap", async () => {
  await withServer(model, { maxTokensCap: 5 }, async ({ url }) => {
    for (const stream of [false, true]) {
      await assertBadRequest(await post(url, "/v1/chat/completions", { ...CHAT, max_tokens: 6, stream }), "max_tokens", "invalid_value");
      await assertBadRequest(await post(url, "/v1/chat/completions", { ...CHAT, max_completion_tokens: 6, stream }), "max_completion_tokens", "invalid_value");
      const error = await assertBadRequest(await post(url, "/v1/completions", { ...TEXT, max_tokens: 6, stream }), "max_tokens", "invalid_value");
      assert.match(error.message, /6.* at most 5 tokens/);
    }
    // Every length parameter given is checked, not only the one that applies.
    await assertBadRequest(await post(url, "/v1/chat/completions", { ...CHAT, max_completion_tokens: 2, max_tokens: 6 }), "max_tokens", "invalid_value");

    for (const [route, body] of ROUTES) {
      const capped = await (await post(url, route, { ...body, n: 2 })).json();
      assert.deepEqual(capped.choices.map((c) => c.finish_reason), ["length", "length"], route);
      assert.equal(capped.usage.completion_tokens, 10, route);
      assert.equal((await (await post(url, route, { ...body, max_tokens: 5 })).json()).usage.completion_tokens, 5, route);
      assert.equal((await (await post(url, route, { ...body, max_tokens: 2 })).json()).usage.completion_tokens, 2, route);
      const streamed = await post(url, route, { ...body, stream: true, stream_options: { include_usage: true } });
      assert.equal((await streamedUsage(streamed)).completion_tokens, 5, `${route}, streamed`);
    }
  });
  // A cap above the completions endpoint's default of 16 leaves that default; chat then runs to the cap.
  await withServer(model, { maxTokensCap: 40 }, async ({ url }) => {
    assert.equal((await (await post(url, "/v1/completions", TEXT)).json()).usage.completion_tokens, 16);
    assert.equal((await (await post(url, "/v1/chat/completions", CHAT)).json()).usage.completion_tokens, 40);
  });
});

test("maxN and maxTokensCap are checked with the other options; serve's --max-n and --max-tokens-cap reach the server", async () => {
  assert.equal(resolveServerOptions().maxN, 8);
  assert.equal(resolveServerOptions().maxTokensCap, undefined);
  for (const options of [{ maxN: 0 }, { maxN: 1.5 }, { maxN: "8" }, { maxTokensCap: 0 }, { maxTokensCap: null }]) {
    const [name] = Object.keys(options);
    assert.throws(() => resolveServerOptions(options), { name: "InvalidArgumentError", message: new RegExp(`^${name} must be an integer >= 1`) });
  }

  const help = serveSync("--help");
  assert.ok(help.stdout.includes("--max-n") && help.stdout.includes("--max-tokens-cap"), help.stdout);
  for (const [flag, value, message] of [["--max-n", "0", /maxN/], ["--max-tokens-cap", "0", /maxTokensCap/], ["--max-n", "two", /--max-n/]]) {
    // Refused before the model loads.
    const refused = serveSync("--model", DEFAULT_MODEL, "--port", "0", flag, value);
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, message);
  }

  const serve = spawnServe(["--max-n", "2", "--max-tokens-cap", "3"], DEFAULT_MODEL);
  try {
    const url = await serve.url;
    const body = { ...TEXT, model: "stories260K.gguf" };
    await assertBadRequest(await post(url, "/v1/completions", { ...body, n: 3 }), "n", "integer_above_max_value");
    await assertBadRequest(await post(url, "/v1/completions", { ...body, max_tokens: 4 }), "max_tokens", "invalid_value");
    const capped = await post(url, "/v1/completions", { ...body, n: 2 });
    assert.equal((await capped.json()).usage.completion_tokens, 6);
  } finally {
    serve.child.kill("SIGTERM");
  }
  assert.equal(await serve.exited, 0, serve.stderr());
});

/** A streamed completion read to its end (its raw SSE text); onFirst runs when its first bytes arrive. */
async function streamCompletion(url, body, onFirst) {
  const response = await post(url, "/v1/completions", { ...body, stream: true });
  assert.equal(response.status, 200);
  const decoder = new TextDecoder();
  let text = "";
  for await (const bytes of response.body) {
    if (text === "") onFirst();
    text += decoder.decode(bytes, { stream: true });
  }
  return text;
}

test("a long prompt admitted while 4 streams decode: every pass of its prefill holds a token of each stream", async () => {
  await withServer(model, { parallel: 5 }, async ({ url }) => {
    const { deliveries, stop } = recordDeliveries(model);
    let texts;
    try {
      const streaming = countdown(4);
      // Long enough that they are still decoding once the long prompt's request has come in and been prefilled.
      const streams = [0, 1, 2, 3].map((seed) => streamCompletion(url, { ...TEXT, max_tokens: 400, temperature: 0.8, seed }, streaming.tick));
      await streaming.done;
      const longPrompt = [1, ...Array.from({ length: 1099 }, (_, i) => 3 + ((i * 37) % 500))];
      const long = await post(url, "/v1/completions", { ...TEXT, prompt: longPrompt, max_tokens: 2 });
      assert.equal(long.status, 200);
      assert.equal((await long.json()).usage.prompt_tokens, 1100);
      texts = await Promise.all(streams);
    } finally {
      stop();
    }
    for (const text of texts) assert.ok(text.endsWith("data: [DONE]\n\n"), text.slice(-200));
    assertPrefilledBeside(deliveries, 4, 5);
  });
});
