"use strict";
// The OpenAI-compatible server on loopback over the real sotu-l2-23m model, for the server tests.
const path = require("node:path");
const { spawn, spawnSync } = require("node:child_process");
const { loadModel, createServer } = require("../../dist/cjs/index.js");
const { modelPath } = require("./models.js");

const CLI = path.resolve(__dirname, "..", "..", "dist", "cjs", "cli", "main.js");

const MODEL_ALIAS = "sotu-l2-23m";
/** Small enough that an over-long prompt is cheap to write. */
const CONTEXT_SIZE = 256;

function loadServerModel() {
  return loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 1, contextSize: CONTEXT_SIZE });
}

/**
 * The server tests' model served on a free loopback port for a whole test file: { model, server, url, close() }.
 * `openaiClient(url)` is the official client for it.
 */
async function startServedModel(options) {
  const model = await loadServerModel();
  const server = createServer(model, { modelAlias: MODEL_ALIAS, ...options });
  const { url } = await server.listen({ port: 0 });
  return {
    model, server, url,
    async close() {
      await server.close();
      await model.dispose();
    },
  };
}

/** The official openai client of the server at `url`. No retries: a 429 or 5xx must reach the test as it is. */
function openaiClient(url, apiKey = "unused") {
  const { OpenAI } = require("openai");
  return new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
}

/** Runs fn({ url, server }) against a server on a free loopback port, closing it afterwards. */
async function withServer(model, options, fn) {
  const server = createServer(model, { modelAlias: MODEL_ALIAS, ...options });
  const { url } = await server.listen({ port: 0 });
  try {
    return await fn({ url, server });
  } finally {
    await server.close();
  }
}

/** The value of one unlabelled metric in Prometheus text. */
function metricValue(text, name) {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} missing`);
  return Number(line.slice(name.length + 1));
}

async function scrape(url) {
  return (await fetch(`${url}/metrics`)).text();
}

/** A POST of `body` (JSON unless already a string) with `headers` (by default a JSON content type). */
function post(url, route, body, headers = { "content-type": "application/json" }, signal = undefined) {
  return fetch(`${url}${route}`, { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body), signal });
}

/** `llama-napi serve ARGS` run to its end, its output as strings (for usage errors and --help). */
function serveSync(...args) {
  return spawnSync(process.execPath, [CLI, "serve", ...args], { encoding: "utf8" });
}

/**
 * `llama-napi serve --model MODEL --port 0 --threads 1 --ctx-size 256 ARGS` in a child process (MODEL: sotu-l2-23m
 * unless given): `url` resolves with the base URL it prints, `exited` with its exit code, `stderr()` is what it wrote
 * there so far.
 */
function spawnServe(args, model = modelPath("trained", "sotu-l2-23m")) {
  const child = spawn(process.execPath, [CLI, "serve", "--model", model, "--port", "0", "--threads", "1", "--ctx-size", String(CONTEXT_SIZE), ...args]);
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  const url = new Promise((resolve, reject) => {
    let stdout = "";
    child.stdout.on("data", (d) => {
      stdout += d;
      const match = /at (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(stdout);
      if (match) resolve(match[1]);
    });
    child.on("exit", () => reject(new Error(`serve exited early: ${stderr}`)));
  });
  return { child, url, exited, stderr: () => stderr };
}

module.exports = { MODEL_ALIAS, CONTEXT_SIZE, loadServerModel, startServedModel, openaiClient, withServer, metricValue, scrape, post, serveSync, spawnServe };
