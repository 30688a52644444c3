"use strict";
// Stop strings: matched across token boundaries, never emitted, held back only while a match is possible.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { StopStringMatcher } = require("../dist/cjs/generation/stop-strings.js");
const { loadModel } = require("../dist/cjs/index.js");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");

function run(stops, pieces) {
  const m = new StopStringMatcher(stops);
  const emitted = [];
  for (const p of pieces) {
    const { emit, stopped } = m.push(p);
    emitted.push(emit);
    if (stopped) return { emitted, stopped: true };
  }
  emitted.push(m.flush());
  return { emitted, stopped: false };
}

test("a stop string split over several pieces is found and not emitted", () => {
  assert.deepEqual(run(["\nUser:"], ["Hi", " there\n", "Us", "er:", " more"]), {
    emitted: ["Hi", " there", "", ""],
    stopped: true,
  });
});

test("text is held back only while it could start a stop string", () => {
  // "th" could start "the end"; "thx" cannot, so it is released at once.
  assert.deepEqual(run(["the end"], ["a th", "x b"]), { emitted: ["a ", "thx b", ""], stopped: false });
  // A partial match at the end of generation is released by flush.
  assert.deepEqual(run(["the end"], ["so the e"]), { emitted: ["so ", "the e"], stopped: false });
});

test("the earliest of several stop strings wins, text before it is emitted", () => {
  assert.deepEqual(run(["b", "xyz"], ["axyzb"]), { emitted: ["a"], stopped: true });
  assert.deepEqual(run(["##", "#!"], ["ok #", "! rest"]), { emitted: ["ok ", ""], stopped: true });
});

test("no stop strings: everything passes straight through", () => {
  assert.deepEqual(run([], ["a", "b"]), { emitted: ["a", "b", ""], stopped: false });
});

let model;
before(async () => {
  if (!NEEDS_REFERENCE_MODELS.skip) model = await loadModel(modelPath("trained", "sotu-l2-23m"), { threads: 2 });
});
after(() => model?.dispose());

test("generate() with stop: the text ends before the first stop occurrence, finishReason stop", NEEDS_REFERENCE_MODELS, async () => {
  const prompt = "The President said that";
  const free = await model.complete(prompt, { maxTokens: 40, temperature: 0 });
  // A stop string that spans a token boundary in the free-running text.
  const pieces = [];
  for await (const t of model.generate(prompt, { maxTokens: 40, temperature: 0 })) pieces.push(t.text);
  let at = 0;
  let boundary = -1;
  for (let i = 0; i < pieces.length - 1 && boundary < 0; i++) {
    at += pieces[i].length;
    if (pieces[i].length >= 2 && pieces[i + 1].length >= 2 && i >= 3) boundary = at;
  }
  assert.ok(boundary > 0, "the greedy text has a token boundary to straddle");
  const stop = free.text.slice(boundary - 2, boundary + 2);
  const expected = free.text.slice(0, free.text.indexOf(stop));
  let streamed = "";
  const it = model.generate(prompt, { maxTokens: 40, temperature: 0, stop: [stop] });
  let step;
  while (!(step = await it.next()).done) streamed += step.value.text;
  assert.equal(step.value.finishReason, "stop");
  assert.equal(step.value.text, expected);
  assert.equal(streamed, expected);
  assert.ok(!step.value.text.includes(stop));
});

test("stop options are validated", NEEDS_REFERENCE_MODELS, async () => {
  for (const stop of ["x", [""], [1], {}]) {
    await assert.rejects(model.complete("a", { stop }), { name: "InvalidArgumentError", message: /stop/ });
  }
});
