"use strict";
// Where the reference models live: $LLAMA_NAPI_TEST_MODELS, default ../shared/models beside the checkout.
// A missing file is a failure (the tests must not silently skip), so modelPath() checks existence.
const fs = require("node:fs");
const path = require("node:path");

const MODELS_DIR = path.resolve(
  process.env.LLAMA_NAPI_TEST_MODELS ?? path.join(__dirname, "..", "..", "..", "shared", "models"),
);

function modelPath(...parts) {
  const p = path.join(MODELS_DIR, ...parts);
  if (!fs.existsSync(p)) {
    throw new Error(`test model file missing: ${p} (set LLAMA_NAPI_TEST_MODELS to the shared models folder)`);
  }
  return p;
}

module.exports = { MODELS_DIR, modelPath };
