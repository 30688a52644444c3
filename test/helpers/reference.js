"use strict";
// The trained models' independent references (HF float32 logits and greedy outputs), and the logit comparison.
const assert = require("node:assert/strict");
const fs = require("node:fs");
const { modelPath } = require("./models.js");

/** reference-public.json of a trained model dir, and the last-position logits of its case i. */
function readReference(dir) {
  const ref = JSON.parse(fs.readFileSync(modelPath(dir, "reference-public.json"), "utf8"));
  const raw = fs.readFileSync(modelPath(dir, "logits-public.f32"));
  const all = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  return { ref, logitsOf: (i) => all.subarray(i * ref.vocab_size, (i + 1) * ref.vocab_size) };
}

/** The largest elementwise |a - b| of two equally long arrays. */
function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

module.exports = { readReference, maxAbsDiff };
