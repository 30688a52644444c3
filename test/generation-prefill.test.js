"use strict";
// Chunked prefill interleaved with decoding: a long prompt admitted while sequences decode is evaluated a slice per
// pass beside their rows, so none of them waits for more than one slice, and every result is what it is alone.
// Measured by what the scheduler puts in each pass, never by time.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { loadModel } = require("../dist/cjs/index.js");
const { DecodeScheduler } = require("../dist/cjs/generation/scheduler.js");
const { DEFAULT_MODEL } = require("./helpers/models.js");
const { assertInterleaved, assertPrefilledBeside, countdown, recordDeliveries, recordPasses, PASS_TOKENS } = require("./helpers/passes.js");

/** A scheduler over an engine that runs nothing: only the passes' composition matters. */
function fakeScheduler() {
  const engine = { decodeBatch: async (entries) => entries.map(() => ({})), limits: { passTokens: PASS_TOKENS } };
  return new DecodeScheduler(engine);
}

function fakeContext(name) {
  return { name, settled: () => Promise.resolve() };
}

/** `steps` single-token decodes on `context`, each queued as soon as the previous one is out (as generate() does). */
async function decodeSteps(scheduler, context, steps, onStep = () => {}) {
  for (let pos = 0; pos < steps; pos++) {
    await scheduler.decode(context, [1], pos);
    onStep(pos);
  }
}

const ids = (n) => Array.from({ length: n }, (_, i) => 3 + ((i * 37) % 500));

test("scheduler: a long prompt shares every pass with the 4 decoding sequences, one slice at a time; a second waits its turn", async () => {
  const scheduler = fakeScheduler();
  const { passes } = recordPasses(scheduler);
  const decoders = [0, 1, 2, 3].map((i) => fakeContext(`decoder ${i}`));
  const decoding = countdown(decoders.length);
  const runs = decoders.map((context) => decodeSteps(scheduler, context, 30, (pos) => pos === 0 && decoding.tick()));
  await decoding.done;
  const long = fakeContext("long");
  const second = fakeContext("second");
  const prefills = [scheduler.decode(long, ids(1000), 0), scheduler.decode(second, ids(600), 0)];
  await Promise.all([...runs, ...prefills]);

  const prefill = assertInterleaved(passes, long, decoders, 4);
  assert.equal(prefill.flat().filter((e) => e.context === long).reduce((sum, e) => sum + e.tokens, 0), 1000);
  // The second prompt is sliced once the first is done: never two slices in a pass.
  const firstOfSecond = passes.findIndex((pass) => pass.some((e) => e.context === second));
  assert.equal(firstOfSecond, passes.indexOf(prefill.at(-1)), "the second prompt starts in the pass that ends the first");
  assertInterleaved(passes.slice(firstOfSecond), second, decoders, 3);
});

test("scheduler: when decoding rows fill the pass, the prompt being sliced still moves on and no row waits two passes", async () => {
  const scheduler = fakeScheduler();
  const { passes } = recordPasses(scheduler);
  const decoders = Array.from({ length: 240 }, (_, i) => fakeContext(`decoder ${i}`));
  const decoding = countdown(decoders.length);
  const runs = decoders.map((context) => decodeSteps(scheduler, context, 60, (pos) => pos === 0 && decoding.tick()));
  await decoding.done;
  const long = fakeContext("long");
  await Promise.all([...runs, scheduler.decode(long, ids(600), 0)]);

  const prefill = passes.filter((pass) => pass.some((e) => e.context === long));
  const slices = prefill.map((pass) => pass.find((e) => e.context === long).tokens);
  assert.equal(slices.reduce((a, b) => a + b, 0), 600);
  // Its first slice may get what the rows ahead of it left; from then on it is the oldest request.
  assert.ok(slices.slice(1, -1).every((n) => n >= 32), `slices ${slices}`);
  assert.ok(passes.every((pass) => pass.reduce((sum, e) => sum + e.tokens, 0) <= PASS_TOKENS));
  const start = passes.indexOf(prefill[0]);
  for (const decoder of decoders) {
    const present = passes.slice(start, start + prefill.length).map((pass) => pass.some((e) => e.context === decoder));
    assert.ok(!present.some((p, k) => !p && present[k + 1] === false), `decoder ${decoder.name}: ${present}`);
  }
});

test("scheduler: a request that needs every position's logits is never sliced: a pass of its own once it is the oldest", async () => {
  const scheduler = fakeScheduler();
  const { passes } = recordPasses(scheduler);
  const scored = fakeContext("scored");
  const decoder = fakeContext("decoder");
  await Promise.all([scheduler.decode(scored, ids(300), 0, { logits: "all" }), decodeSteps(scheduler, decoder, 2)]);
  assert.deepEqual(passes.map((pass) => pass.map((e) => `${e.context.name}:${e.tokens}`)), [["scored:300"], ["decoder:1"], ["decoder:1"]]);
});

/** Every step of a generation, and the first step's arrival reported to onFirst. */
async function collect(generation, onFirst = () => {}) {
  const steps = [];
  for await (const step of generation) {
    if (steps.push(step) === 1) onFirst();
  }
  return steps;
}

test("a 1100-token prompt admitted while 4 sampled streams decode: a slice per pass beside all 4, results as each alone", async () => {
  const prompts = ["Once upon a time", "The cat sat", "Lily went to the park", "One day, a little dog"];
  const long = { tokens: [1, ...ids(1099)] };
  // The streams are long enough to still be decoding while the prompt is prefilled: the engine runs ahead of
  // JavaScript, so they must outlast the time it takes to admit the prompt.
  const options = (seed, maxTokens) => ({ temperature: 0.8, seed, maxTokens, ignoreEos: true, logprobs: 2 });
  // A fresh model: no cached prefix lets the long prompt skip its prefill.
  const model = await loadModel(DEFAULT_MODEL, { threads: 1 });
  let batched;
  let deliveries;
  try {
    const recording = recordDeliveries(model);
    deliveries = recording.deliveries;
    const streaming = countdown(prompts.length);
    const streams = prompts.map((p, i) => collect(model.generate(p, options(i, 400)), streaming.tick));
    await streaming.done;
    batched = await Promise.all([...streams, collect(model.generate(long, options(9, 4)))]);
    recording.stop();
  } finally {
    await model.dispose();
  }
  assertPrefilledBeside(deliveries, prompts.length, 5);

  const solo = await loadModel(DEFAULT_MODEL, { threads: 1 });
  try {
    for (const [i, p] of prompts.entries()) {
      assert.deepEqual(batched[i], await collect(solo.generate(p, options(i, 400))), `stream ${i}`);
    }
    assert.deepEqual(batched[4], await collect(solo.generate(long, options(9, 4))), "the long prompt");
  } finally {
    await solo.dispose();
  }
});
