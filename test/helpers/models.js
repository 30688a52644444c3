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

/** The bytes of a tensor (anything with offset and byteLength: a parsed model's TensorInfo, a GgufTensor) in file. */
function tensorBytes(file, t) {
  const buf = Buffer.alloc(t.byteLength);
  const fd = fs.openSync(file, "r");
  try {
    fs.readSync(fd, buf, 0, t.byteLength, t.offset);
  } finally {
    fs.closeSync(fd);
  }
  return buf;
}

module.exports = { MODELS_DIR, modelPath, tensorBytes };
