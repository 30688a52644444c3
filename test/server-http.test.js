"use strict";
// The server over raw HTTP on loopback: malformed bodies, /health and /metrics, the SSE wire format, continuous
// batching (a request joins a running generation), client disconnects freeing their slots, close() aborting
// generations, and the `serve` command.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const { MODEL_ALIAS, loadServerModel, withServer, metricValue, scrape, post, serveSync, spawnServe } = require("./helpers/server.js");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;

const PROMPT = "The state of the union is";
/** A generation that runs until aborted, for as long as a test needs a slot held. */
const ENDLESS = { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 200, ignore_eos: true, temperature: 0 };

let model;
before(async () => {
  model = await loadServerModel();
});
after(() => model.dispose());

/**
 * A streamed request over node:http, so the test can drop the connection. `events` fills with the SSE data
 * payloads (with their arrival times) as they come; `ended` resolves when the response ends or the socket closes.
 */
function openStream(url, route, body) {
  const events = [];
  const waiters = [];
  let raw = "";
  const req = http.request(`${url}${route}`, { method: "POST", headers: { "content-type": "application/json" } });
  const ended = new Promise((resolve) => {
    req.on("response", (res) => {
      res.setEncoding("utf8");
      res.on("data", (text) => {
        raw += text;
        let end;
        while ((end = raw.indexOf("\n\n")) >= 0) {
          const event = raw.slice(0, end);
          raw = raw.slice(end + 2);
          assert.match(event, /^data: /, "every SSE event is one data line");
          events.push({ data: event.slice("data: ".length), at: performance.now() });
          for (const w of waiters.splice(0)) w();
        }
      });
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, rest: raw }));
      res.on("error", () => resolve({ status: res.statusCode, headers: res.headers, rest: raw }));
    });
    req.on("error", () => resolve(undefined));
  });
  req.end(JSON.stringify(body));
  /** Resolves once at least `n` events have arrived. */
  const waitForEvents = (n) =>
    new Promise((resolve) => {
      const check = () => (events.length >= n ? resolve() : waiters.push(check));
      check();
    });
  return { events, ended, waitForEvents, destroy: () => req.destroy() };
}

async function waitUntil(predicate, timeoutMs, what) {
  const start = performance.now();
  while (!(await predicate())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  return performance.now() - start;
}

test("malformed bodies get OpenAI-shaped 4xx errors, and the server keeps serving", async () => {
  await withServer(model, {}, async ({ url }) => {
    const expectError = async (response, status, code) => {
      assert.equal(response.status, status);
      assert.match(response.headers.get("content-type"), /^application\/json/);
      const { error } = await response.json();
      assert.deepEqual(Object.keys(error).sort(), ["code", "message", "param", "type"]);
      assert.equal(typeof error.message, "string");
      if (code !== undefined) assert.equal(error.code, code);
      return error;
    };
    await expectError(await post(url, "/v1/chat/completions", "{\"model\": "), 400, "invalid_json");
    await expectError(await post(url, "/v1/chat/completions", "{'single': 'quotes'}"), 400, "invalid_json");
    await expectError(await post(url, "/v1/chat/completions", ""), 400, "invalid_json");
    await expectError(await post(url, "/v1/completions", "[1, 2]"), 400, "invalid_value");
    await expectError(await post(url, "/v1/completions", "\"a string\""), 400, "invalid_value");
    await expectError(await post(url, "/v1/completions", "null"), 400);
    await expectError(await post(url, "/v1/completions", "{\"__proto__\": {\"x\": 1}, \"model\": \"m\", \"prompt\": \"p\"}"), 400);
    await expectError(await post(url, "/v1/completions", "model=x", { "content-type": "application/x-www-form-urlencoded" }), 415, "unsupported_media_type");
    await expectError(await post(url, "/v1/completions", JSON.stringify({ model: MODEL_ALIAS, prompt: "x".repeat(2 * 1024 * 1024) })), 413, "request_too_large");
    const wrongType = await expectError(await post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: "10" }), 400, "invalid_value");
    assert.equal(wrongType.param, "max_tokens");
    await expectError(await fetch(`${url}/v1/chat/completions`), 404, "not_found");
    await expectError(await fetch(`${url}/v2/anything`), 404, "not_found");

    const ok = await post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 2 });
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).usage.completion_tokens, 2);
  });
});

test("the SSE wire format: data lines, blank-line separated, ending in [DONE]", async () => {
  await withServer(model, {}, async ({ url }) => {
    const response = await post(url, "/v1/chat/completions", {
      model: MODEL_ALIAS, messages: [{ role: "user", content: "Hello" }], max_tokens: 5, temperature: 0, ignore_eos: true, stream: true,
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type"), /^text\/event-stream/);
    assert.equal(response.headers.get("cache-control"), "no-cache");
    const text = await response.text();
    assert.ok(text.endsWith("data: [DONE]\n\n"));
    const events = text.slice(0, -2).split("\n\n");
    assert.ok(events.every((e) => /^data: [^\n]+$/.test(e)), "one data line per event");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
    assert.equal(chunks.length, 1 + 5 + 1); // role, five tokens, finish
    assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
  });
});

test("/health and /metrics: Prometheus text with requests, tokens, queue, slots and speed histograms", async () => {
  // strictModelName: another model name is then a 404, which the requests counter records by status.
  await withServer(model, { parallel: 3, strictModelName: true }, async ({ url }) => {
    const health = await (await fetch(`${url}/health`)).json();
    assert.deepEqual(health, { status: "ok", slots: { active: 0, total: 3 }, queue: { depth: 0, limit: 64 } });
    await post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 6, ignore_eos: true });
    await post(url, "/v1/completions", { model: "nope", prompt: PROMPT });
    const response = await fetch(`${url}/metrics`);
    assert.match(response.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    assert.match(text, /^llama_napi_requests_total\{route="\/v1\/completions",status="200"\} 1$/m);
    assert.match(text, /^llama_napi_requests_total\{route="\/v1\/completions",status="404"\} 1$/m);
    assert.equal(metricValue(text, "llama_napi_prompt_tokens_total"), model.tokenize(PROMPT, { addBos: true }).length);
    assert.equal(metricValue(text, "llama_napi_generated_tokens_total"), 6);
    assert.equal(metricValue(text, "llama_napi_queue_depth"), 0);
    assert.equal(metricValue(text, "llama_napi_active_slots"), 0);
    assert.equal(metricValue(text, "llama_napi_slots"), 3);
    for (const name of ["llama_napi_prefill_tokens_per_second", "llama_napi_decode_tokens_per_second"]) {
      assert.match(text, new RegExp(`^# TYPE ${name} histogram$`, "m"));
      assert.equal(metricValue(text, `${name}_count`), 1);
    }
    assert.ok(metricValue(text, "process_resident_memory_bytes") > 0);
  });
});

test("continuous batching: a request arriving mid-generation runs alongside it and finishes first", async (t) => {
  await withServer(model, { parallel: 2 }, async ({ url }) => {
    const long = openStream(url, "/v1/completions", { ...ENDLESS, max_tokens: 120, stream: true });
    await long.waitForEvents(5);
    const short = openStream(url, "/v1/completions", { ...ENDLESS, max_tokens: 10, stream: true });
    await short.ended;
    await long.waitForEvents(long.events.length + 3);
    const shortFirst = short.events[0].at;
    const shortLast = short.events.at(-1).at;
    t.diagnostic(`long: ${long.events.length} events until ${(long.events.at(-1).at - long.events[0].at).toFixed(0)} ms; short: ${(shortFirst - long.events[0].at).toFixed(0)}..${(shortLast - long.events[0].at).toFixed(0)} ms`);
    assert.equal(short.events.at(-1).data, "[DONE]");
    // The long generation was still streaming when the short one started and after it ended...
    assert.ok(long.events.at(-1).at > shortLast, "the long stream outlives the short one");
    // ...and kept producing tokens while the short one ran: one pass served both.
    const interleaved = long.events.filter((e) => e.at > shortFirst && e.at < shortLast).length;
    assert.ok(interleaved >= 3, `${interleaved} long-stream tokens arrived while the short one ran`);
    long.destroy();
  });
});

test("a client that drops mid-stream frees its slot within a few decode steps (visible in /metrics); a queued request then runs", async (t) => {
  await withServer(model, { parallel: 1 }, async ({ url }) => {
    const stream = openStream(url, "/v1/completions", { ...ENDLESS, stream: true });
    await stream.waitForEvents(20);
    assert.equal(metricValue(await scrape(url), "llama_napi_active_slots"), 1);
    const gaps = stream.events.slice(5, 20).map((e, i) => e.at - stream.events[4 + i].at).sort((a, b) => a - b);
    const stepMs = gaps[gaps.length >> 1];
    const received = stream.events.length;
    stream.destroy();
    // Timed through /health, which costs a millisecond where a /metrics scrape costs ten or more.
    const freedMs = await waitUntil(async () => (await (await fetch(`${url}/health`)).json()).slots.active === 0, 2000, "the slot to be freed");
    const metrics = await scrape(url);
    assert.equal(metricValue(metrics, "llama_napi_active_slots"), 0);
    const generated = metricValue(metrics, "llama_napi_generated_tokens_total");
    t.diagnostic(`decode step ≈ ${stepMs.toFixed(1)} ms; slot freed ${freedMs.toFixed(1)} ms after the disconnect; ` +
      `${generated} tokens generated, ${received} received`);
    // The generation stopped at once rather than running on to its 200 tokens: past what the client had received,
    // only the steps that ran until the slot was freed (the server sees the socket close a few steps late on a
    // loaded machine), plus what was on its way: the step in flight, the engine's passes already delivered to
    // JavaScript but not yet written (its decode loop never waits for JavaScript), and what was still in the socket.
    const IN_FLIGHT_TOKENS = 8;
    const stepsUntilFreed = Math.ceil(freedMs / stepMs);
    assert.ok(generated <= received + stepsUntilFreed + IN_FLIGHT_TOKENS,
      `${generated} tokens generated, ${received} received before the disconnect, slot freed ${stepsUntilFreed} steps later`);
    assert.ok(generated < ENDLESS.max_tokens / 2, `${generated} tokens generated: the generation ran on`);
    assert.ok(freedMs < 60 * stepMs, `slot freed after ${freedMs.toFixed(1)} ms, decode step ${stepMs.toFixed(1)} ms`);

    // With a request waiting, the freed slot goes straight to it.
    const holder = openStream(url, "/v1/completions", { ...ENDLESS, stream: true });
    await holder.waitForEvents(3);
    const queued = post(url, "/v1/completions", { ...ENDLESS, max_tokens: 3 });
    await waitUntil(async () => metricValue(await scrape(url), "llama_napi_queue_depth") === 1, 2000, "the request to queue");
    holder.destroy();
    const response = await queued;
    assert.equal((await response.json()).usage.completion_tokens, 3);
  });
});

test("a client that drops a non-streamed request, or drops while queued, frees its place; the process survives", async () => {
  await withServer(model, { parallel: 1 }, async ({ url }) => {
    const metric = async (name) => metricValue(await scrape(url), name);
    // Running and not streamed: the socket closing is the only sign the client left.
    const running = http.request(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" } });
    running.on("error", () => {});
    running.end(JSON.stringify(ENDLESS));
    await waitUntil(async () => (await metric("llama_napi_active_slots")) === 1, 2000, "the generation to start");
    // Queued behind it: leaving takes it out of the queue.
    const leave = new AbortController();
    const queued = post(url, "/v1/completions", ENDLESS, { "content-type": "application/json" }, leave.signal).catch(() => {});
    await waitUntil(async () => (await metric("llama_napi_queue_depth")) === 1, 2000, "the request to queue");
    leave.abort();
    await queued;
    await waitUntil(async () => (await metric("llama_napi_queue_depth")) === 0, 2000, "the queue to empty");
    running.destroy();
    await waitUntil(async () => (await metric("llama_napi_active_slots")) === 0, 2000, "the slot to be freed");
    const ok = await post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 2 });
    assert.equal(ok.status, 200);
  });
});

test("close() aborts in-flight generations: streams end with an error event, others get a 503", async () => {
  const { createServer } = require("../dist/cjs/index.js");
  const server = createServer(model, { modelAlias: MODEL_ALIAS, parallel: 1 });
  const { url } = await server.listen({ port: 0 });
  const stream = openStream(url, "/v1/completions", { ...ENDLESS, stream: true });
  await stream.waitForEvents(2);
  const queued = post(url, "/v1/completions", ENDLESS);
  await waitUntil(async () => metricValue(await scrape(url), "llama_napi_queue_depth") === 1, 2000, "the request to queue");
  const start = performance.now();
  await server.close();
  assert.ok(performance.now() - start < 2000, "close() does not wait for the generations to finish");
  const { status } = await stream.ended;
  assert.equal(status, 200);
  const last = JSON.parse(stream.events.at(-1).data);
  assert.equal(last.error.code, "server_shutting_down");
  assert.ok(!stream.events.some((e) => e.data === "[DONE]"));
  const refused = await queued;
  assert.equal(refused.status, 503);
  assert.equal((await refused.json()).error.code, "server_shutting_down");
  // The model is left usable.
  assert.equal((await model.complete(PROMPT, { maxTokens: 2 })).tokens.length, 2);
});

test("`serve` prints its URL, answers with the model's file name as the id, and exits 0 on SIGTERM and SIGINT", async () => {
  for (const signal of ["SIGTERM", "SIGINT"]) {
    const serve = spawnServe(["--parallel", "2"]);
    const url = await serve.url;
    const models = await (await fetch(`${url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m) => m.id), ["sotu-l2-23m"]);
    const r = await post(url, "/v1/chat/completions", { model: "sotu-l2-23m", messages: [{ role: "user", content: "Hi" }], max_tokens: 3, ignore_eos: true });
    assert.equal((await r.json()).usage.completion_tokens, 3);
    assert.equal((await (await fetch(`${url}/health`)).json()).slots.total, 2);
    serve.child.kill(signal);
    assert.equal(await serve.exited, 0, serve.stderr());
    assert.match(serve.stderr(), new RegExp(`${signal}, shutting down`));
  }
});

test("CORS: off by default; with origins, preflights are answered before the API key and responses carry the headers", async () => {
  const preflight = (url, origin) =>
    fetch(`${url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
    });
  const chat = (url, origin, key) =>
    post(url, "/v1/chat/completions", { model: MODEL_ALIAS, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }, {
      "content-type": "application/json", origin, ...(key && { authorization: `Bearer ${key}` }),
    });
  await withServer(model, {}, async ({ url }) => {
    const r = await chat(url, "https://app.example");
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("access-control-allow-origin"), null);
    assert.equal((await preflight(url, "https://app.example")).status, 404);
  });
  await withServer(model, { cors: ["https://app.example", "http://localhost:3000"], apiKey: "k" }, async ({ url }) => {
    const ok = await preflight(url, "https://app.example");
    assert.equal(ok.status, 204);
    assert.equal(ok.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(ok.headers.get("access-control-allow-methods"), /POST/);
    assert.equal(ok.headers.get("access-control-allow-headers"), "authorization, content-type");
    assert.equal(ok.headers.get("vary"), "Origin");
    const other = await preflight(url, "https://evil.example");
    assert.equal(other.headers.get("access-control-allow-origin"), null);
    const answered = await chat(url, "http://localhost:3000", "k");
    assert.equal(answered.status, 200);
    assert.equal(answered.headers.get("access-control-allow-origin"), "http://localhost:3000");
    // A 401 is readable by the page too.
    const refused = await chat(url, "http://localhost:3000");
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get("access-control-allow-origin"), "http://localhost:3000");
  });
  await withServer(model, { cors: "*" }, async ({ url }) => {
    assert.equal((await preflight(url, "https://any.example")).headers.get("access-control-allow-origin"), "*");
    assert.equal((await chat(url, "https://any.example")).headers.get("access-control-allow-origin"), "*");
  });
  const { createServer } = require("../dist/cjs/index.js");
  for (const cors of ["app.example", ["https://a.example/path"], 5]) {
    assert.throws(() => createServer(model, { cors }), (err) => err.name === "InvalidArgumentError" && err.option === "cors");
  }
});

test("`serve` usage errors exit 2", () => {
  assert.equal(serveSync("--bogus").status, 2);
  assert.equal(serveSync("--model", "m", "--port", "70000").status, 2);
  assert.equal(serveSync("--model", "m", "--port", "eighty").status, 2);
  const help = serveSync("--help");
  assert.equal(help.status, 0);
  for (const option of ["--model", "--host", "--port", "--parallel", "--ctx-size", "--api-key", "--model-alias", "--threads", "--queue-size"]) {
    assert.ok(help.stdout.includes(option), option);
  }
  const parallel = serveSync("--model", modelPath("trained", "sotu-l2-23m"), "--parallel", "0", "--port", "0");
  assert.equal(parallel.status, 2, parallel.stderr);
  assert.match(parallel.stderr, /parallel/);
});
