"use strict";
// The server against hostile or careless clients, on loopback: malformed URLs and non-HTTP bytes answered in
// OpenAI's error shape, slowloris sockets closed at the header / request / idle timeouts, a connection cap, /metrics
// behind the API key, wrong-typed parameters the server does not implement, n above 10 without a listener leak,
// a model whose chat template never ends (a 500 naming the template; the server keeps serving), and the `serve`
// flags for all of it.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const net = require("node:net");
const { loadModel } = require("../dist/cjs/index.js");
const { MODEL_ALIAS, loadServerModel, withServer, post, serveSync, spawnServe } = require("./helpers/server.js");
const { writeConstantOutputModel } = require("./helpers/tiny-model.js");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;

const PROMPT = "The state of the union is";
const MESSAGES = [{ role: "user", content: "Hello" }];
/** A generation that runs until aborted, for as long as a test needs a slot held. */
const ENDLESS = { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 200, ignore_eos: true };

let model;
before(async () => {
  model = await loadServerModel();
});
after(() => model.dispose());

async function assertOpenAiError(response, status, code, param) {
  assert.equal(response.status, status);
  assert.match(response.headers.get("content-type"), /^application\/json/);
  const { error } = await response.json();
  assert.deepEqual(Object.keys(error).sort(), ["code", "message", "param", "type"]);
  assert.equal(error.code, code);
  if (param !== undefined) assert.equal(error.param, param);
  return error;
}

/**
 * A raw TCP client: `write` sends bytes, `received` holds what came back, `closed` resolves (with the time it took
 * from connecting) when the server closes the connection.
 */
function rawClient(url) {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const start = performance.now();
  const client = { socket, received: "", write: (text) => socket.writable && socket.write(text) };
  socket.setEncoding("utf8");
  socket.on("data", (text) => (client.received += text));
  socket.on("error", () => {}); // a reset is one way of being closed
  client.connected = new Promise((resolve) => socket.once("connect", resolve));
  client.closed = new Promise((resolve) => socket.once("close", () => resolve(performance.now() - start)));
  return client;
}

/** The OpenAI-shaped error in a raw HTTP response. */
function rawError(response) {
  const [head, body] = response.split("\r\n\r\n");
  return { statusLine: head.split("\r\n")[0], error: JSON.parse(body).error };
}

test("a malformed URL, bytes that are not HTTP and oversized headers all get OpenAI-shaped errors", async () => {
  await withServer(model, {}, async ({ url }) => {
    await assertOpenAiError(await fetch(`${url}/v1/%zz`), 400, "invalid_url");
    await assertOpenAiError(await post(url, "/v1/chat/%E0%A4%A", { model: MODEL_ALIAS, messages: MESSAGES }), 400, "invalid_url");

    const garbage = rawClient(url);
    garbage.write("HELLO THERE\r\n\r\n");
    await garbage.closed;
    const notHttp = rawError(garbage.received);
    assert.equal(notHttp.statusLine, "HTTP/1.1 400 Bad Request");
    assert.equal(notHttp.error.code, "invalid_http");
    assert.equal(notHttp.error.type, "invalid_request_error");

    const huge = rawClient(url);
    huge.write(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(64 * 1024)}\r\n\r\n`);
    await huge.closed;
    const tooLarge = rawError(huge.received);
    assert.equal(tooLarge.statusLine, "HTTP/1.1 431 Request Header Fields Too Large");
    assert.equal(tooLarge.error.code, "request_headers_too_large");

    assert.equal((await fetch(`${url}/health`)).status, 200, "the server keeps serving");
  });
});

test("slowloris: trickled headers and a trickled body get a 408 at their timeouts; an idle keep-alive connection closes", async () => {
  const timeouts = { headersTimeoutMs: 300, requestTimeoutMs: 600, idleTimeoutMs: 300 };
  await withServer(model, timeouts, async ({ url }) => {
    const headers = rawClient(url);
    headers.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\n");
    const body = rawClient(url);
    body.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{");
    const drip = setInterval(() => {
      headers.write("X-Drip: 1\r\n");
      body.write(" ");
    }, 50);
    try {
      const [headersMs, bodyMs] = await Promise.all([headers.closed, body.closed]);
      // Each is checked a few times per headers timeout; allow for a loaded machine, but not for the old 15 s and more.
      assert.ok(headersMs >= 250 && headersMs < 3000, `headers: closed after ${headersMs} ms`);
      assert.ok(bodyMs >= 550 && bodyMs < 3000, `body: closed after ${bodyMs} ms`);
    } finally {
      clearInterval(drip);
    }
    for (const client of [headers, body]) {
      const { statusLine, error } = rawError(client.received);
      assert.equal(statusLine, "HTTP/1.1 408 Request Timeout");
      assert.equal(error.code, "request_timeout");
    }

    const idle = rawClient(url);
    idle.write("GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    const idleMs = await idle.closed;
    assert.match(idle.received, /^HTTP\/1.1 200 OK/);
    assert.ok(idleMs >= 250 && idleMs < 3000, `idle: closed after ${idleMs} ms`);
  });
});

test("the timeouts bound receiving a request, not answering it: a request queued past them still gets its answer", async () => {
  await withServer(model, { parallel: 1, headersTimeoutMs: 100, requestTimeoutMs: 150, idleTimeoutMs: 100 }, async ({ url }) => {
    const holder = new AbortController();
    const held = await post(url, "/v1/completions", { ...ENDLESS, stream: true }, undefined, holder.signal);
    await held.body.getReader().read(); // the stream is open: its generation holds the only slot
    const queued = post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 2 });
    await new Promise((resolve) => setTimeout(resolve, 500)); // over three request timeouts, waiting for the slot
    holder.abort();
    const response = await queued;
    assert.equal(response.status, 200);
    assert.equal((await response.json()).usage.completion_tokens, 2);
  });
});

test("a connection cap: past maxConnections new connections are closed at once; a freed place is taken again", async () => {
  await withServer(model, { maxConnections: 2 }, async ({ url }) => {
    const open = [rawClient(url), rawClient(url)];
    for (const client of open) client.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    await Promise.all(open.map((client) => new Promise((resolve) => client.socket.once("data", resolve))));
    const refused = rawClient(url);
    const refusedMs = await refused.closed;
    assert.equal(refused.received, "", "nothing is answered over the cap");
    assert.ok(refusedMs < 2000, `${refusedMs} ms`);
    open[0].socket.destroy();
    await open[0].closed;
    const later = rawClient(url);
    later.write("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    await later.closed;
    assert.match(later.received, /^HTTP\/1.1 200 OK/);
    open[1].socket.destroy();
  });
});

test("/metrics needs the API key when one is set, unless metricsPublic; /health stays open", async () => {
  await withServer(model, { apiKey: "s3cret" }, async ({ url }) => {
    await assertOpenAiError(await fetch(`${url}/metrics`), 401, "invalid_api_key");
    await assertOpenAiError(await fetch(`${url}/metrics`, { headers: { authorization: "Bearer wrong" } }), 401, "invalid_api_key");
    const scraped = await fetch(`${url}/metrics`, { headers: { authorization: "Bearer s3cret" } });
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /llama_napi_requests_total/);
    assert.equal((await fetch(`${url}/health`)).status, 200);
  });
  await withServer(model, { apiKey: "s3cret", metricsPublic: true }, async ({ url }) => {
    assert.equal((await fetch(`${url}/metrics`)).status, 200);
    await assertOpenAiError(await fetch(`${url}/v1/models`), 401, "invalid_api_key");
  });
});

test("parameters the server does not implement: a wrong type is a 400 naming it; a use it cannot honour is refused", async () => {
  await withServer(model, {}, async ({ url }) => {
    const chat = (extra) => post(url, "/v1/chat/completions", { model: MODEL_ALIAS, messages: MESSAGES, max_tokens: 1, ...extra });
    const text = (extra) => post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 1, ...extra });
    const wrongTypes = [
      [chat, { tools: "x" }, "tools", /expected array, got string/],
      [chat, { functions: 1 }, "functions", /expected array/],
      [chat, { tool_choice: 5 }, "tool_choice", /expected 'none', 'auto', 'required' or/],
      [chat, { parallel_tool_calls: "yes" }, "parallel_tool_calls", /expected boolean/],
      [chat, { response_format: "json" }, "response_format", /expected object/],
      [chat, { user: 5 }, "user", /expected string/],
      [chat, { store: "no" }, "store", /expected boolean/],
      [text, { echo: "yes" }, "echo", /expected boolean/],
      [text, { suffix: 5 }, "suffix", /expected string/],
      [text, { best_of: "2" }, "best_of", /expected integer/],
    ];
    for (const [endpoint, extra, param, message] of wrongTypes) {
      const error = await assertOpenAiError(await endpoint(extra), 400, "invalid_value", param);
      assert.match(error.message, message);
    }
    const tools = [{ type: "function", function: { name: "f" } }];
    const refused = [
      [{ modalities: ["text", "audio"] }, "modalities"],
      [{ functions: tools.map((t) => t.function) }, "functions"],
    ];
    for (const [extra, param] of refused) await assertOpenAiError(await chat(extra), 400, "unsupported_parameter", param);
    // What asks nothing of this server is accepted.
    const harmless = await chat({ tools: [], tool_choice: "none", user: "u-1", store: false, metadata: null, response_format: { type: "text" } });
    assert.equal(harmless.status, 200);
  });
});

test("n above 10 adds one abort listener to the request, not one per choice: no MaxListenersExceededWarning", async () => {
  const warnings = [];
  const onWarning = (warning) => warnings.push(warning);
  process.on("warning", onWarning);
  try {
    // One slot, so most choices wait in the queue (each waiter listens for the abort) while the first generates;
    // n above the default cap of 8 needs a larger maxN.
    await withServer(model, { parallel: 1, maxN: 12 }, async ({ url }) => {
      const response = await post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 2, n: 12, seed: 1 });
      assert.equal(response.status, 200);
      assert.equal((await response.json()).choices.length, 12);
      // Aborting still reaches every choice: a dropped streamed request of 12 frees its slot and queue places.
      const dropped = new AbortController();
      const stream = await post(url, "/v1/completions", { ...ENDLESS, n: 12, stream: true }, undefined, dropped.signal);
      await stream.body.getReader().read();
      dropped.abort();
      const after = await post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: PROMPT, max_tokens: 1 });
      assert.equal(after.status, 200);
    });
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
  } finally {
    process.off("warning", onWarning);
  }
  assert.deepEqual(warnings.map((w) => `${w.name}: ${w.message}`), []);
});

test("a model whose chat template never ends: a 500 naming the template, and the server keeps serving", async () => {
  const template = "{% for i in range(100000000) %}{{ i }}{% endfor %}";
  const gguf = writeConstantOutputModel({ 3: 10 }, [["tokenizer.chat_template", { type: "string", value: template }]]);
  const runaway = await loadModel(gguf, { threads: 1 });
  try {
    await withServer(runaway, {}, async ({ url }) => {
      for (let attempt = 0; attempt < 2; attempt++) {
        const error = await assertOpenAiError(await post(url, "/v1/chat/completions", { model: MODEL_ALIAS, messages: MESSAGES }), 500, "chat_template_limit_exceeded");
        assert.ok(error.message.includes(gguf) && error.message.includes("tokenizer.chat_template"), error.message);
        assert.equal(error.type, "server_error");
      }
      assert.equal((await fetch(`${url}/health`)).status, 200);
      const completion = await post(url, "/v1/completions", { model: MODEL_ALIAS, prompt: "Once", max_tokens: 2 });
      assert.equal(completion.status, 200);
      assert.equal((await completion.json()).usage.completion_tokens, 2);
    });
  } finally {
    await runaway.dispose();
  }
});

test("`serve` flags: --metrics-public and the timeouts reach the server; bad values are usage errors", async () => {
  const help = serveSync("--help");
  for (const flag of ["--metrics-public", "--headers-timeout", "--request-timeout", "--idle-timeout", "--max-connections"]) {
    assert.ok(help.stdout.includes(flag), flag);
  }
  assert.equal(serveSync("--model", "m", "--headers-timeout", "soon").status, 2);
  assert.equal(serveSync("--model", "m", "--max-connections", "1.5").status, 2);
  const zero = serveSync("--model", modelPath("trained", "sotu-l2-23m"), "--port", "0", "--threads", "1", "--idle-timeout", "0");
  assert.equal(zero.status, 2, zero.stderr);
  assert.match(zero.stderr, /--idle-timeout/);

  const serve = spawnServe(["--api-key", "k", "--metrics-public", "--headers-timeout", "0.3", "--request-timeout", "0.5"]);
  try {
    const url = await serve.url;
    assert.equal((await fetch(`${url}/metrics`)).status, 200);
    await assertOpenAiError(await fetch(`${url}/v1/models`), 401, "invalid_api_key");
    const slow = rawClient(url);
    slow.write("GET /health HTTP/1.1\r\n");
    const ms = await slow.closed;
    assert.ok(ms < 3000, `closed after ${ms} ms`);
    assert.equal(rawError(slow.received).error.code, "request_timeout");
  } finally {
    serve.child.kill("SIGTERM");
  }
  assert.equal(await serve.exited, 0, serve.stderr());
});
