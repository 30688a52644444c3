"use strict";
// The OpenAI-compatible server on loopback over the real sotu-l2-23m model, for the server tests.
const { loadModel, createServer } = require("../../dist/cjs/index.js");
const { modelPath } = require("./models.js");

const MODEL_ALIAS = "sotu-l2-23m";
/** Small enough that an over-long prompt is cheap to write. */
const CONTEXT_SIZE = 256;

function loadServerModel() {
  return loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 1, contextSize: CONTEXT_SIZE });
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

module.exports = { MODEL_ALIAS, CONTEXT_SIZE, loadServerModel, withServer, metricValue, scrape };
