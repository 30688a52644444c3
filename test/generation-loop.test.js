"use strict";
// The engine's decode loop: generations run as native requests that share passes, sample natively and stop
// natively; JavaScript only streams. Concurrency must never change a result: each generation gives exactly what it
// gives alone, whatever runs beside it, is aborted beside it, or pauses beside it for a logitsProcessor.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const { loadModel } = require("../dist/cjs/index.js");
const { DEFAULT_MODEL } = require("./helpers/models.js");
const { countdown, largestSharedPass, recordDeliveries } = require("./helpers/passes.js");
const { randomValues, writeTinyModel } = require("./helpers/tiny-model.js");

const PROMPTS = [
  "Once upon a time",
  "The cat sat on the",
  "Lily went to the park",
  "One day, a little dog",
  "Tom had a big red ball",
  "The sun was",
  "There was a girl who liked to",
  "A bird",
];

/** Generation i of the mixed set: seeds, penalties, bias, top-p, top-k, logprobs, greedy. */
function mixedOptions(i) {
  const base = { seed: 100 + i, maxTokens: 20 + i, ignoreEos: i % 2 === 0 };
  switch (i % 4) {
    case 0:
      return { ...base, temperature: 0.8, repeatPenalty: 1.3, frequencyPenalty: 0.2, presencePenalty: 0.1, repeatLastN: 16 };
    case 1:
      return { ...base, temperature: 0.7, topP: 0.9, logitBias: { 13: -Infinity, 400: 2.5 } };
    case 2:
      return { ...base, temperature: 1, topK: 10, logprobs: 3 };
    default:
      return { ...base, temperature: 0, logprobs: 2, repeatPenalty: 1.1 };
  }
}

/** Every step of a generation, and the first step's arrival reported to onFirst; with the completion. */
async function collect(generation, onFirst = () => {}) {
  const steps = [];
  for (;;) {
    const step = await generation.next();
    if (step.done) {
      const { stats, ...completion } = step.value;
      return { steps, completion, stats };
    }
    if (steps.push(step.value) === 1) onFirst();
  }
}

/** What must not change with concurrency: the steps and the completion (not the timing stats). */
const result = ({ steps, completion }) => ({ steps, completion });

let model;
let solo;
before(async () => {
  model = await loadModel(DEFAULT_MODEL, { threads: 1 });
  solo = await loadModel(DEFAULT_MODEL, { threads: 1 });
});
after(async () => {
  await model.dispose();
  await solo.dispose();
});

/** Each generation run alone on a model of its own. */
async function alone(jobs) {
  const results = [];
  for (const [prompt, options] of jobs) results.push(result(await collect(solo.generate(prompt, options))));
  return results;
}

test("16 concurrent sampled generations with mixed options equal each run alone, token for token and logprob for logprob; one call into JavaScript per pass", async () => {
  const jobs = Array.from({ length: 16 }, (_, i) => [PROMPTS[i % PROMPTS.length], mixedOptions(i)]);
  const expected = await alone(jobs);
  const loop = model.engine.decodeLoop;
  const statsBefore = loop.stats();
  const recording = recordDeliveries(model);
  const results = await Promise.all(jobs.map(([prompt, options]) => collect(model.generate(prompt, options))));
  recording.stop();
  const statsAfter = loop.stats();
  for (let i = 0; i < jobs.length; i++) assert.deepEqual(result(results[i]), expected[i], `generation ${i}`);
  assert.ok(results.some((r) => r.steps.some((s) => s.topLogprobs?.length === 3)), "logprobs were reported");
  assert.ok(largestSharedPass(recording.deliveries) >= 8, "the generations shared passes");
  const deliveries = statsAfter.deliveries - statsBefore.deliveries;
  const passes = statsAfter.passes - statsBefore.passes;
  assert.equal(deliveries, recording.deliveries.length);
  assert.ok(deliveries <= passes, `${deliveries} deliveries for ${passes} passes`);
  for (const { events } of recording.deliveries) {
    assert.equal(new Set(events.map((e) => e.pass)).size, 1, "a delivery holds the events of one pass");
  }
});

test("aborting one generation mid-way leaves the others identical and gives its cache back", async () => {
  const jobs = PROMPTS.slice(0, 4).map((p, i) => [p, { ...mixedOptions(i), maxTokens: 40, ignoreEos: true }]);
  const expected = await alone(jobs);
  const controller = new AbortController();
  const runs = jobs.map(async ([prompt, options], i) => {
    const it = model.generate(prompt, i === 2 ? { ...options, signal: controller.signal } : options);
    return collect(it, () => i === 2 && controller.abort());
  });
  const results = await Promise.all(runs);
  for (const i of [0, 1, 3]) assert.deepEqual(result(results[i]), expected[i], `generation ${i}`);
  const aborted = results[2];
  assert.equal(aborted.completion.finishReason, "abort");
  assert.deepEqual(aborted.steps, expected[2].steps.slice(0, 1), "the aborted one ends after the token it had");
  assert.equal(model.activeSequences, 0);
});

test("a stop string cancels the request: the same text as without the loop running ahead, and the next generation reuses the cache correctly", async () => {
  // Over 32 tokens, so that the continuation below can adopt a whole KV block of this generation's.
  const prompt = "Lily and Ben went to the park. They played on the swings and the slide, and then they sat on the grass. Once upon a time";
  const greedy = { temperature: 0, maxTokens: 60, logprobs: 2 };
  const full = await model.complete(prompt, greedy);
  // The stop string: the generated text's fourth word, where it first occurs.
  const fourth = full.text.split(" ").filter((w) => w.length > 0)[3];
  assert.ok(fourth, `the greedy text has four words: ${JSON.stringify(full.text)}`);
  const stop = ` ${fourth}`;
  const at = full.text.indexOf(stop);
  assert.ok(at > 0, `the greedy text holds the stop string: ${JSON.stringify(full.text)}`);
  const stopped = await model.complete(prompt, { ...greedy, stop: [stop] });
  assert.equal(stopped.finishReason, "stop");
  assert.equal(stopped.stopString, stop);
  assert.equal(stopped.text, full.text.slice(0, at));
  assert.deepEqual(stopped.tokens, full.tokens.slice(0, stopped.tokens.length));
  assert.ok(stopped.tokens.length < full.tokens.length);

  // The cache of the stopped generation, whatever the engine ran past the stop, serves the continuation.
  const promptIds = model.tokenize(prompt, { addBos: true });
  const next = { tokens: [...promptIds, ...stopped.tokens, ...model.tokenize(" and", { addBos: false })] };
  const continued = await collect(model.generate(next, greedy));
  assert.ok(continued.stats.prefillTokens <= next.tokens.length - 32, `the continuation adopted the cache's first block (${continued.stats.prefillTokens} of ${next.tokens.length} evaluated)`);
  const fresh = await loadModel(DEFAULT_MODEL, { threads: 1 });
  try {
    const reference = await collect(fresh.generate(next, greedy));
    assert.deepEqual(continued.completion.tokens, reference.completion.tokens);
    for (const [k, step] of continued.steps.entries()) {
      assert.ok(Math.abs(step.logprob - reference.steps[k].logprob) < 1e-4, `step ${k}: logprob ${step.logprob} vs ${reference.steps[k].logprob}`);
    }
  } finally {
    await fresh.dispose();
  }
});

test("a logitsProcessor generation pauses natively for its hook beside 4 others without changing them", async () => {
  const banned = 13;
  let calls = 0;
  const hooked = {
    temperature: 0.8,
    seed: 5,
    maxTokens: 24,
    ignoreEos: true,
    logprobs: 1,
    logitsProcessor: (logits, tokens) => {
      calls++;
      assert.ok(tokens.length >= 5, "the hook sees the prompt and the tokens so far");
      logits[banned] = -Infinity;
    },
  };
  const jobs = [...PROMPTS.slice(0, 4).map((p, i) => [p, { ...mixedOptions(i), maxTokens: 40, ignoreEos: true }]), [PROMPTS[4], hooked]];
  const expected = await alone(jobs);
  const callsAlone = calls;
  calls = 0;
  const results = await Promise.all(jobs.map(([prompt, options]) => collect(model.generate(prompt, options))));
  for (let i = 0; i < jobs.length; i++) assert.deepEqual(result(results[i]), expected[i], `generation ${i}`);
  const tokens = results[4].completion.tokens;
  assert.equal(tokens.length, 24);
  assert.ok(!tokens.includes(banned));
  assert.equal(calls, 24, "the hook ran once per token");
  assert.equal(callsAlone, 24);
  assert.ok(results[4].steps.every((s) => typeof s.logprob === "number"), "logprobs come from the hook step's sampling");
});

test("the loop's requests: a busy context is refused, resume needs a paused request, streams start while others decode", async () => {
  const { engine } = model;
  const loop = engine.decodeLoop;
  const context = engine.createContext(64);
  const { Sampler, resolveSampling } = require("../dist/cjs/sampling/sampler.js");
  const sampler = () => new Sampler(resolveSampling({ temperature: 0 }, model.info.vocabSize), model.info.vocabSize).forDecodeLoop([1]);
  const options = { maxTokens: 8, endIds: new Int32Array(0), logprobs: false, pauseEachStep: false };
  try {
    const request = loop.submit(context, [1, 400], 0, sampler(), options);
    assert.throws(() => loop.submit(context, [1], 0, sampler(), options), /another decode is still running/);
    assert.throws(() => request.resume(3), { name: "InvalidArgumentError" });
    const kinds = [];
    for (;;) {
      const event = await request.next();
      kinds.push(event.kind);
      if (event.kind === "done") {
        assert.equal(event.finish, "length");
        assert.equal(event.evaluated, 2 + 7, "the prompt and every token but the last are in the cache");
        break;
      }
    }
    assert.deepEqual(kinds, [...Array(8).fill("token"), "done"]);
    assert.throws(() => loop.submit(context, [1, 2, 3], 62, sampler(), options), { name: "ContextOverflowError" });
  } finally {
    context.close();
  }

  // A stream admitted while another decodes joins its passes. The first could outrun JavaScript if it were short:
  // it runs until aborted.
  const started = countdown(1);
  const controller = new AbortController();
  const unbounded = { temperature: 0, ignoreEos: true, signal: controller.signal };
  const first = collect(model.generate(PROMPTS[0], unbounded), started.tick);
  await started.done;
  const recording = recordDeliveries(model);
  const second = await collect(model.generate(PROMPTS[1], { temperature: 0, maxTokens: 8 }));
  recording.stop();
  controller.abort();
  assert.equal((await first).completion.finishReason, "abort");
  assert.equal(second.completion.tokens.length, 8);
  assert.equal(largestSharedPass(recording.deliveries), 2, "the second shared the first's passes");
});

test("a pass that fails is run again request by request: only the faulty generation gets the error, the others go on", async () => {
  // Every layer zero, so each position's logits are output.weight · embedding; token 300's embedding is NaN, and
  // through attention it poisons every later position of its own sequence only.
  const poisoned = 300;
  const file = writeTinyModel({
    fill: (name, rows, cols) => {
      if (name === "output_norm.weight") return new Float32Array(rows * cols).fill(1);
      if (name === "output.weight") return randomValues(rows * cols, 3);
      if (name !== "token_embd.weight") return undefined;
      const values = randomValues(rows * cols, 4);
      values.fill(NaN, poisoned * cols, (poisoned + 1) * cols);
      return values;
    },
  });
  const jobs = [
    // The first decodes long enough to share passes with the poisoned prompt's prefill.
    [{ tokens: [1, 20, 30] }, { temperature: 0.9, seed: 1, maxTokens: 40, ignoreEos: true, logitBias: { [poisoned]: -Infinity } }],
    [{ tokens: [1, 40, poisoned, 50] }, { temperature: 0.9, seed: 2, maxTokens: 12, ignoreEos: true }],
    [{ tokens: [1, 60] }, { temperature: 0, maxTokens: 12, ignoreEos: true, logitBias: { [poisoned]: -Infinity } }],
  ];
  const tiny = await loadModel(file, { threads: 1 });
  const tinySolo = await loadModel(file, { threads: 1 });
  try {
    const expected = [];
    for (const i of [0, 2]) expected[i] = result(await collect(tinySolo.generate(...jobs[i])));
    const settled = await Promise.allSettled(jobs.map((job) => collect(tiny.generate(...job))));
    assert.equal(settled[1].status, "rejected");
    assert.equal(settled[1].reason.name, "NumericalError", String(settled[1].reason));
    for (const i of [0, 2]) assert.deepEqual(result(settled[i].value), expected[i], `generation ${i}`);
    assert.equal(tiny.activeSequences, 0, "the failed generation gave its cache back");
    assert.deepEqual(result(await collect(tiny.generate(...jobs[0]))), expected[0], "the loop goes on after the error");
  } finally {
    await tiny.dispose();
    await tinySolo.dispose();
  }
});

test("the loop keeps Node alive only while a generation runs: a script that never disposes its model exits", () => {
  const script = `
    const { loadModel } = require(${JSON.stringify(require.resolve("../dist/cjs/index.js"))});
    loadModel(${JSON.stringify(DEFAULT_MODEL)}, { threads: 1 }).then(async (model) => {
      const { text } = await model.complete("Once upon a time", { temperature: 0, maxTokens: 8 });
      process.stdout.write(text);
    });`;
  const child = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 60_000 });
  assert.equal(child.error, undefined, "the script ended by itself");
  assert.equal(child.status, 0, child.stderr);
  assert.ok(child.stdout.length > 0, "it generated");
});
