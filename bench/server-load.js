"use strict";
// Load test of `llama-napi serve` on loopback: C concurrent clients send streaming chat requests back to back for
// D seconds against a server started here (one per --parallel value, in its own process, so its memory is its own).
// Every stream is checked to be well-formed SSE ending in [DONE]; the server's RSS (from /metrics) is compared
// before and after. Prints requests/s, aggregate tokens/s, p50/p99 time-to-first-token and inter-token latency.
// Exits 1 when a request failed, a stream was malformed, or RSS grew by more than 10%.
//
// Usage: npm run build:ts && node bench/server-load.js [--model DIR] [--duration 60] [--warmup 10] [--clients 32]
//        [--parallel 8,1] [--max-tokens 64] [--threads N] [--ctx-size 1024] [--kv-tokens N] [--json]
const { spawn } = require("node:child_process");
const path = require("node:path");
const { parseArgs } = require("node:util");
const { modelPath } = require("../test/helpers/models.js");

const CLI = path.resolve(__dirname, "..", "dist", "cjs", "cli", "main.js");
const ALIAS = "bench";
const QUESTIONS = [
  "What is the state of the union?",
  "What should Congress do about the economy?",
  "Tell me about our armed forces.",
  "How do we make health care affordable?",
  "What did the President promise this year?",
  "Why does education matter?",
];
/** A request that runs past this is counted as failed (and aborted), so the benchmark always ends. */
const REQUEST_TIMEOUT_MS = 120_000;
const RSS_TOLERANCE = 0.1;

const { values: opts } = parseArgs({
  options: {
    model: { type: "string" },
    duration: { type: "string", default: "60" },
    warmup: { type: "string", default: "10" },
    clients: { type: "string", default: "32" },
    parallel: { type: "string", default: "8,1" },
    "max-tokens": { type: "string", default: "64" },
    threads: { type: "string" },
    "ctx-size": { type: "string", default: "1024" },
    "kv-tokens": { type: "string" },
    json: { type: "boolean", default: false },
  },
});

function positiveInt(name, raw) {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer (got ${raw})`);
  return n;
}

const durationS = positiveInt("duration", opts.duration);
const warmupS = positiveInt("warmup", opts.warmup);
const clients = positiveInt("clients", opts.clients);
const parallels = opts.parallel.split(",").map((p) => positiveInt("parallel", p));
const maxTokens = positiveInt("max-tokens", opts["max-tokens"]);
const model = opts.model ?? modelPath("trained", "sotu-l2-23m");

/** Starts `serve` on a free loopback port; resolves with its base URL and a stop() that waits for its exit. */
async function startServer(parallel) {
  const args = [CLI, "serve", "--model", model, "--model-alias", ALIAS, "--host", "127.0.0.1", "--port", "0",
    "--parallel", String(parallel), "--queue-size", String(clients), "--ctx-size", opts["ctx-size"]];
  if (opts.threads) args.push("--threads", opts.threads);
  if (opts["kv-tokens"]) args.push("--kv-tokens", opts["kv-tokens"]);
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  const url = await new Promise((resolve, reject) => {
    let stdout = "";
    child.stdout.on("data", (d) => {
      stdout += d;
      const match = /at (http:\/\/[^\s]+)\/v1/.exec(stdout);
      if (match) resolve(match[1]);
    });
    exited.then((code) => reject(new Error(`serve exited with ${code} before listening`)));
  });
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      const code = await exited;
      if (code !== 0) throw new Error(`serve exited with ${code}`);
    },
  };
}

async function rss(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^process_resident_memory_bytes (\S+)$/m.exec(text)[1]);
}

/**
 * One streaming chat request. Resolves with its timings and token count, or with `error` saying what was wrong:
 * an HTTP error, a malformed event, chunks that disagree, a missing finish, usage or [DONE].
 */
async function streamedChat(url, question) {
  const start = performance.now();
  const contentTimes = [];
  const events = [];
  try {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: ALIAS, messages: [{ role: "user", content: question }], max_tokens: maxTokens, stream: true,
        stream_options: { include_usage: true },
      }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (response.status !== 200) return { error: `HTTP ${response.status}: ${await response.text()}` };
    if (!response.headers.get("content-type")?.startsWith("text/event-stream")) return { error: "not an event stream" };
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const bytes of response.body) {
      buffered += decoder.decode(bytes, { stream: true });
      let end;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (!event.startsWith("data: ") || event.includes("\n")) return { error: `malformed event ${JSON.stringify(event)}` };
        const data = event.slice(6);
        events.push(data);
        if (data !== "[DONE]" && JSON.parse(data).choices?.[0]?.delta?.content) contentTimes.push(performance.now());
      }
    }
    if (buffered !== "") return { error: `bytes after the last event: ${JSON.stringify(buffered)}` };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
  }
  return checkStream(events, start, contentTimes);
}

/** The checks on a whole stream: role first, one id, one finish, usage, then [DONE] and nothing else. */
function checkStream(events, start, contentTimes) {
  if (events.at(-1) !== "[DONE]") return { error: "the stream does not end in [DONE]" };
  let chunks;
  try {
    chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  } catch (err) {
    return { error: `an event is not JSON: ${err.message}` };
  }
  if (chunks.some((c) => c.error)) return { error: `error event: ${JSON.stringify(chunks.find((c) => c.error))}` };
  if (!chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id)) return { error: "chunks of different ids or objects" };
  if (chunks[0].choices[0]?.delta?.role !== "assistant") return { error: "the first chunk does not open the assistant's turn" };
  const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
  if (finishes.length !== 1) return { error: `${finishes.length} finish chunks` };
  const usage = chunks.at(-1).usage;
  if (!usage || chunks.at(-1).choices.length !== 0) return { error: "no usage chunk before [DONE]" };
  if (contentTimes.length > usage.completion_tokens) return { error: "more content chunks than completion tokens" };
  const gaps = contentTimes.slice(1).map((t, i) => t - contentTimes[i]);
  return { ttftMs: contentTimes.length ? contentTimes[0] - start : undefined, gaps, tokens: usage.completion_tokens };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Every client sends requests back to back until `seconds` have passed; resolves with all their results. */
async function load(url, seconds) {
  const results = [];
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let i = 0; performance.now() < deadline; i++) results.push(await streamedChat(url, QUESTIONS[(client + i) % QUESTIONS.length]));
    }),
  );
  return results;
}

async function runLoad(parallel) {
  const server = await startServer(parallel);
  try {
    // Warm-up under the same load: the KV caches, the JIT and the heap reach their working size before the
    // "before" RSS, so that the comparison shows growth during the run (a leak), not start-up.
    await load(server.url, warmupS);
    const rssBefore = await rss(server.url);
    const start = performance.now();
    const results = await load(server.url, durationS);
    const elapsedS = (performance.now() - start) / 1000;
    const rssAfter = await rss(server.url);
    const ok = results.filter((r) => !r.error);
    const errors = results.filter((r) => r.error);
    const ttft = ok.map((r) => r.ttftMs).filter((t) => t !== undefined).sort((a, b) => a - b);
    const gaps = ok.flatMap((r) => r.gaps).sort((a, b) => a - b);
    return {
      parallel, clients, durationS: elapsedS, requests: results.length, errors: errors.length,
      firstErrors: [...new Set(errors.map((e) => e.error))].slice(0, 3),
      requestsPerS: ok.length / elapsedS,
      tokensPerS: ok.reduce((n, r) => n + r.tokens, 0) / elapsedS,
      ttftP50Ms: percentile(ttft, 50), ttftP99Ms: percentile(ttft, 99),
      itlP50Ms: percentile(gaps, 50), itlP99Ms: percentile(gaps, 99),
      rssBeforeMiB: rssBefore / 2 ** 20, rssAfterMiB: rssAfter / 2 ** 20, rssGrowth: rssAfter / rssBefore - 1,
    };
  } finally {
    await server.stop();
  }
}

function report(r) {
  if (opts.json) return console.log(JSON.stringify(r));
  const f = (x, d = 1) => x.toFixed(d);
  console.log(
    `--parallel ${r.parallel}, ${r.clients} clients, ${f(r.durationS)} s: ${r.requests} requests, ${r.errors} errors | ` +
      `${f(r.requestsPerS, 2)} req/s, ${f(r.tokensPerS)} tok/s | TTFT p50 ${f(r.ttftP50Ms)} ms p99 ${f(r.ttftP99Ms)} ms | ` +
      `ITL p50 ${f(r.itlP50Ms)} ms p99 ${f(r.itlP99Ms)} ms | RSS ${f(r.rssBeforeMiB)} → ${f(r.rssAfterMiB)} MiB (${f(r.rssGrowth * 100)}%)`,
  );
  for (const e of r.firstErrors) console.log(`  error: ${e}`);
}

async function main() {
  let failed = false;
  for (const parallel of parallels) {
    const r = await runLoad(parallel);
    report(r);
    failed ||= r.errors > 0 || r.rssGrowth > RSS_TOLERANCE;
  }
  process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
