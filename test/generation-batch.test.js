"use strict";
// Batched sequences: generateBatch and concurrent generate() calls share forward passes, give exactly what each
// sequence gives alone, and one aborted sequence leaves the others running and gives its KV cache back at once.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { loadModel } = require("../dist/cjs/index.js");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
const { recordDeliveries, largestSharedPass } = require("./helpers/passes.js");
if (skipFileWithoutReferenceModels()) return;

const PROMPTS = [
  "The",
  "Call me Ishmael. Some years ago, never mind how long precisely,",
  "The President said that the Congress",
  "In the year of our Lord one thousand eight hundred and sixty-one, the people of the United States, assembled in",
];
const GREEDY = { temperature: 0, maxTokens: 24, ignoreEos: true };
let model;

before(async () => {
  model = await loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 2 });
});
after(() => model.dispose());

/** Records the largest number of generations that got a token from one forward pass of the model's decode loop. */
function watchBatchSizes() {
  const recording = recordDeliveries(model);
  return () => {
    recording.stop();
    return largestSharedPass(recording.deliveries);
  };
}

test("generateBatch: 4 prompts of different lengths decode together, token for token as each alone", async () => {
  const alone = [];
  for (const p of PROMPTS) alone.push(await model.complete(p, GREEDY));
  const stop = watchBatchSizes();
  const batch = await model.generateBatch(PROMPTS, GREEDY);
  assert.equal(stop(), 4, "all four sequences shared forward passes");
  assert.equal(batch.length, 4);
  for (let i = 0; i < 4; i++) {
    assert.deepEqual(batch[i].tokens, alone[i].tokens, `prompt ${i}`);
    assert.equal(batch[i].text, alone[i].text);
  }
});

test("sampled sequences in a batch match their solo runs too (seed + index)", async () => {
  const opts = { temperature: 0.9, maxTokens: 16, seed: 11, ignoreEos: true };
  const batch = await model.generateBatch(PROMPTS.slice(0, 3), opts);
  for (let i = 0; i < 3; i++) {
    const solo = await model.complete(PROMPTS[i], { ...opts, seed: 11 + i });
    assert.deepEqual(batch[i].tokens, solo.tokens);
  }
});

test("concurrent generate() calls join a running batch and leave it independently", async () => {
  const alone = await model.complete(PROMPTS[2], GREEDY);
  const stop = watchBatchSizes();
  // The second starts once the first is decoding (its first token is out), not after a fixed delay: the first has
  // 39 tokens to go then, so the second joins it at its next pass however fast the machine is.
  let firstDecoding;
  const decoding = new Promise((resolve) => (firstDecoding = resolve));
  const first = (async () => {
    for await (const _ of model.generate(PROMPTS[1], { ...GREEDY, maxTokens: 40 })) firstDecoding();
  })();
  await decoding;
  const second = await model.complete(PROMPTS[2], GREEDY);
  await first;
  assert.ok(stop() >= 2, "the two shared passes");
  assert.deepEqual(second.tokens, alone.tokens);
});

test("the scheduler slices long prompts to the engine's pass size (Engine.limits), with the results of one pass", async () => {
  const { DecodeScheduler } = require("../dist/cjs/generation/scheduler.js");
  const { engine } = model;
  assert.equal(model.scheduler.passTokens, engine.limits.passTokens);
  // The same engine reporting a pass of 7 tokens: a 20-token prompt goes in as 7 + 7 + 6.
  const scheduler = new DecodeScheduler(Object.create(engine, { limits: { value: { passTokens: 7 } } }));
  const run = scheduler.run.bind(scheduler);
  const passes = [];
  scheduler.run = (pass, finishes) => {
    passes.push(pass.map((p) => p.entry.tokens.length));
    return run(pass, finishes);
  };
  const prompt = Int32Array.from({ length: 20 }, (_, i) => 300 + 7 * i);
  const sliced = engine.createContext(32);
  const whole = engine.createContext(32);
  try {
    const { logits } = await scheduler.decode(sliced, prompt, 0, { logits: "last" });
    assert.deepEqual(passes, [[7], [7], [6]]);
    const expected = (await whole.decode(prompt, 0, { logits: "last" })).logits;
    let worst = 0;
    for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(logits[i] - expected[i]));
    assert.ok(worst < 1e-3, `sliced logits differ from one pass's by ${worst}`);
  } finally {
    sliced.close();
    whole.close();
  }
});

test("aborting one sequence of a batch: the others finish unchanged and its cache is given back at once", async () => {
  const alone = [];
  for (const p of PROMPTS.slice(0, 3)) alone.push(await model.complete(p, { ...GREEDY, maxTokens: 32 }));
  const controller = new AbortController();
  const activeDuring = [];
  const runs = PROMPTS.slice(0, 3).map(async (p, i) => {
    const tokens = [];
    const it = model.generate(p, { ...GREEDY, maxTokens: 32, signal: i === 1 ? controller.signal : undefined });
    for (;;) {
      const step = await it.next();
      if (step.done) return { tokens, result: step.value };
      tokens.push(step.value.id);
      if (i === 1 && tokens.length === 5) controller.abort();
      if (i === 0) activeDuring.push(model.activeSequences);
    }
  });
  const [a, aborted, c] = await Promise.all(runs);
  assert.equal(aborted.result.finishReason, "abort");
  assert.equal(aborted.tokens.length, 5);
  assert.deepEqual(aborted.tokens, alone[1].tokens.slice(0, 5));
  assert.deepEqual(a.tokens, alone[0].tokens);
  assert.deepEqual(c.tokens, alone[2].tokens);
  assert.equal(activeDuring[2], 3, "three sequences active at first");
  assert.equal(activeDuring.at(-1), 2, "the aborted one gave its cache back while the others ran");
  assert.equal(model.activeSequences, 0);
});

test("options are validated before anything runs", async () => {
  const bad = [
    [{ topK: -1 }, /topK/],
    [{ topP: 0 }, /topP/],
    [{ topP: 1.5 }, /topP/],
    [{ samplers: ["top_k", "nucleus"] }, /sampler/],
    [{ maxTokens: 0 }, /maxTokens/],
    [{ contextOverflow: "wrap" }, /contextOverflow/],
  ];
  for (const [options, message] of bad) {
    await assert.rejects(model.complete("a", options), { name: "InvalidArgumentError", message }, JSON.stringify(options));
  }
  await assert.rejects(model.generateBatch("abc"), { name: "InvalidArgumentError" });
});
