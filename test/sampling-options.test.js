"use strict";
// resolveSampling: defaults, and every bad value rejected with an InvalidArgumentError naming the option.
const test = require("node:test");
const assert = require("node:assert/strict");
const { SAMPLING_DEFAULTS, resolveSampling } = require("../dist/cjs/sampling/sampler.js");
const { InvalidArgumentError } = require("../dist/cjs/errors.js");

const VOCAB = 1000;

test("defaults", () => {
  const r = resolveSampling({}, VOCAB);
  assert.deepEqual(SAMPLING_DEFAULTS, {
    temperature: 0.8,
    topK: 40,
    topP: 0.95,
    minP: 0.05,
    typicalP: 1,
    repeatPenalty: 1,
    repeatLastN: 64,
    frequencyPenalty: 0,
    presencePenalty: 0,
    samplers: ["top_k", "typical_p", "top_p", "min_p", "temperature"],
  });
  for (const [name, value] of Object.entries(SAMPLING_DEFAULTS)) assert.deepEqual(r[name], value, name);
  assert.equal(r.logitBias.size, 0);
  assert.equal(r.logprobs, undefined);
  assert.equal(r.logitsProcessor, undefined);
  assert.ok(Number.isSafeInteger(r.seed));
  assert.ok(Object.isFrozen(SAMPLING_DEFAULTS) && Object.isFrozen(SAMPLING_DEFAULTS.samplers));
});

test("valid values are kept; topK is capped at the vocabulary size; logitBias becomes a Map", () => {
  const hook = () => {};
  const r = resolveSampling(
    {
      temperature: 0,
      topK: 5000,
      topP: 1,
      minP: 0,
      typicalP: 0.5,
      repeatPenalty: 1.1,
      repeatLastN: -1,
      frequencyPenalty: -2,
      presencePenalty: 2,
      logitBias: { 0: -Infinity, 999: 3.5 },
      seed: -7,
      samplers: ["temperature", "top_k"],
      logprobs: 20,
      logitsProcessor: hook,
    },
    VOCAB,
  );
  assert.equal(r.topK, VOCAB);
  assert.deepEqual([...r.logitBias], [[0, -Infinity], [999, 3.5]]);
  assert.deepEqual(r.samplers, ["temperature", "top_k"]);
  assert.equal(r.logitsProcessor, hook);
  assert.equal(r.logprobs, 20);
  assert.deepEqual([...resolveSampling({ logitBias: new Map([[5, 1]]) }, VOCAB).logitBias], [[5, 1]]);
  assert.deepEqual(resolveSampling({ samplers: [] }, VOCAB).samplers, []);
  assert.equal(resolveSampling({ logprobs: 0 }, VOCAB).logprobs, 0);
});

test("bad values throw InvalidArgumentError naming the option", () => {
  const cases = [
    [{ temperature: NaN }, /temperature.*NaN/],
    [{ temperature: -0.1 }, /temperature/],
    [{ temperature: Infinity }, /temperature/],
    [{ temperature: "1" }, /temperature.*"1"/],
    [{ topK: -1 }, /topK.*-1/],
    [{ topK: 2.5 }, /topK/],
    [{ topP: 0 }, /topP.*\(0, 1\].*got 0/],
    [{ topP: 1.5 }, /topP.*1\.5/],
    [{ minP: -0.1 }, /minP/],
    [{ minP: 1.01 }, /minP/],
    [{ typicalP: 0 }, /typicalP/],
    [{ typicalP: 2 }, /typicalP/],
    [{ repeatPenalty: 0 }, /repeatPenalty/],
    [{ repeatPenalty: -1 }, /repeatPenalty/],
    [{ repeatLastN: -2 }, /repeatLastN/],
    [{ repeatLastN: 1.5 }, /repeatLastN/],
    [{ frequencyPenalty: Infinity }, /frequencyPenalty/],
    [{ presencePenalty: NaN }, /presencePenalty/],
    [{ seed: 1.5 }, /seed/],
    [{ seed: 2 ** 53 }, /seed/],
    [{ samplers: ["top_k", "top_z"] }, /samplers\[1\].*"top_z"/],
    [{ samplers: ["top_p", "min_p", "top_p"] }, /samplers.*"top_p" twice/],
    [{ samplers: "top_k" }, /samplers/],
    [{ logitBias: { [VOCAB]: 1 } }, /logitBias.*1000/],
    [{ logitBias: { "-1": 1 } }, /logitBias.*-1/],
    [{ logitBias: { 1.5: 1 } }, /logitBias.*1\.5/],
    [{ logitBias: { "01": 1 } }, /logitBias.*"01"/],
    [{ logitBias: new Map([["3", 1]]) }, /logitBias.*"3"/],
    [{ logitBias: { 3: NaN } }, /logitBias\[3\].*NaN/],
    [{ logitBias: { 3: Infinity } }, /logitBias\[3\].*Infinity/],
    [{ logitBias: { 3: "1" } }, /logitBias\[3\]/],
    [{ logitBias: 5 }, /logitBias/],
    [{ logprobs: 21 }, /logprobs.*21/],
    [{ logprobs: -1 }, /logprobs/],
    [{ logprobs: 1.5 }, /logprobs/],
    [{ logitsProcessor: "x => x" }, /logitsProcessor must be a function/],
    [{ logitsProcessor: {} }, /logitsProcessor.*an object/],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => resolveSampling(options, VOCAB),
      // The option is a field too (the server maps it to the request's parameter), not only in the message.
      (error) => error instanceof InvalidArgumentError && message.test(error.message) && error.option === Object.keys(options)[0],
      JSON.stringify(options, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v)),
    );
  }
});
