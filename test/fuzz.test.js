"use strict";
// A short fixed-seed run of the loader fuzz harness (npm run fuzz), so that it keeps working: every mutated file must
// load or fail with a typed error naming it; no untyped error, crash or hang.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const path = require("node:path");
const { NEEDS_REFERENCE_MODELS } = require("./helpers/models.js");

// The harness mutates the reference set's tokenizers and llama2.c model along with generated models.
test("fuzz harness: 3 seconds at a fixed seed, every outcome a load or a typed error", NEEDS_REFERENCE_MODELS, () => {
  const run = spawnSync(process.execPath, [path.join(__dirname, "..", "scripts", "fuzz.js"), "--seconds", "3", "--seed", "7", "--json"], {
    encoding: "utf8",
    timeout: 180_000,
  });
  assert.equal(run.signal, null, run.stderr);
  const summary = JSON.parse(run.stdout);
  assert.deepEqual(summary.failures, []);
  assert.equal(run.status, 0, run.stderr);
  assert.ok(summary.tried >= 16, `only ${summary.tried} files tried`);
  const { loaded, typed, untyped, signal, hang } = summary.totals;
  assert.equal(loaded + typed + untyped + signal + hang, summary.tried);
  assert.ok(typed > 0, "mutations that every loader accepts are not mutating anything");
  assert.equal(Object.values(summary.targets).reduce((n, t) => n + t.tried, 0), summary.tried);
});
