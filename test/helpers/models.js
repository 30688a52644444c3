"use strict";
// Where the test models live. Two sets:
// - the model the package carries, models/stories260K.gguf (DEFAULT_MODEL), present in every clone: tests that use it
//   (or tiny models generated from its vocabulary, test/helpers/tiny-model.js) always run;
// - the reference set, $LLAMA_NAPI_TEST_MODELS (default ../shared/models beside the checkout; MANIFEST.md lists it):
//   trained models, tokenizers and their independent references. Tests that need it run when it is present and are
//   reported as skipped, with the reason, when it is not, except in CI (CI=true), where its absence is a failure.
const fs = require("node:fs");
const path = require("node:path");
const { test } = require("node:test");

const ROOT = path.resolve(__dirname, "..", "..");
const DEFAULT_MODEL = path.join(ROOT, "models", "stories260K.gguf");
const MODELS_DIR = path.resolve(process.env.LLAMA_NAPI_TEST_MODELS ?? path.join(ROOT, "..", "shared", "models"));
const IN_CI = process.env.CI === "true";

/** Why the reference-set tests cannot run here (a skip reason), or false when the set is present. */
const referenceModelsMissing = fs.existsSync(path.join(MODELS_DIR, "MANIFEST.md"))
  ? false
  : `needs the reference models: ${MODELS_DIR} not found (set LLAMA_NAPI_TEST_MODELS to the folder holding MANIFEST.md)`;
if (referenceModelsMissing && IN_CI) throw new Error(`CI=true: ${referenceModelsMissing}`);

/** Test options for a test that needs the reference set: `test(name, NEEDS_REFERENCE_MODELS, fn)`. */
const NEEDS_REFERENCE_MODELS = Object.freeze({ skip: referenceModelsMissing });

/**
 * For a file whose tests all need the reference set: when it is missing, registers one skipped test naming the reason
 * and returns true, and the file returns at once (`if (skipFileWithoutReferenceModels()) return;`).
 */
function skipFileWithoutReferenceModels() {
  if (!referenceModelsMissing) return false;
  test("the tests of this file", NEEDS_REFERENCE_MODELS, () => {});
  return true;
}

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

module.exports = { DEFAULT_MODEL, MODELS_DIR, NEEDS_REFERENCE_MODELS, skipFileWithoutReferenceModels, modelPath, tensorBytes };
