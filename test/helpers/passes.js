"use strict";
// What the decode scheduler puts in each forward pass, for the tests of chunked prefill: recorded where the pass is
// handed to the engine, so the measure is the passes' composition, not time.
const assert = require("node:assert/strict");

/**
 * Records every pass `scheduler` runs from now on: `passes[k]` lists its entries as { context, tokens, finishes }
 * (tokens: how many of the request's tokens the pass holds; finishes: whether they are the request's last). `stop()`
 * ends the recording.
 */
function recordPasses(scheduler) {
  const run = scheduler.run;
  const passes = [];
  scheduler.run = function (pass, finishes) {
    passes.push(pass.map(({ entry }, i) => ({ context: entry.context, tokens: entry.tokens.length, finishes: finishes[i] })));
    return run.call(this, pass, finishes);
  };
  return { passes, stop: () => delete scheduler.run };
}

/** Tokens per pass: the CPU engine's pass size (LLM_CPU_PASS_TOKENS in native/engine/forward.h; Engine.limits.passTokens), which the fake engines of the tests declare too. */
const PASS_TOKENS = 256;

/**
 * Checks that the first prompt evaluated on `promptContext` in `passes` was prefilled beside the sequences decoding
 * on `decoders`: it takes `minSlices` passes or more, and every one of them also holds a row of each decoder and no
 * other slice, so no decoder waits for more than the one slice that shares its pass. Each pass stays within the
 * engine's pass size. Returns the prompt's passes.
 */
function assertInterleaved(passes, promptContext, decoders, minSlices) {
  const pieceIn = (pass) => pass.find((e) => e.context === promptContext);
  const first = passes.findIndex(pieceIn);
  assert.ok(first >= 0, "the prompt ran");
  const last = passes.findIndex((pass, k) => k >= first && pieceIn(pass)?.finishes);
  assert.ok(last >= 0, "the prompt's prefill ended");
  const prefill = passes.slice(first, last + 1).filter(pieceIn);
  assert.ok(prefill.length >= minSlices, `the prompt took ${prefill.length} passes, expected ${minSlices} or more`);
  for (const [k, pass] of prefill.entries()) {
    const where = `pass ${k + 1} of the prompt's ${prefill.length}: ${JSON.stringify(pass.map((e) => e.tokens))}`;
    for (const [d, decoder] of decoders.entries()) {
      const rows = pass.filter((e) => e.context === decoder);
      assert.equal(rows.length, 1, `decoder ${d} has a row in ${where}`);
      assert.equal(rows[0].tokens, 1, `decoder ${d} decodes one token in ${where}`);
    }
    assert.ok(pass.filter((e) => !e.finishes).length <= 1, `one slice at most in ${where}`);
    assert.ok(pass.reduce((sum, e) => sum + e.tokens, 0) <= PASS_TOKENS, `within the pass size: ${where}`);
  }
  return prefill;
}

/**
 * Records what the model's decode loop delivers from now on: `deliveries[k]` lists the events of one call into
 * JavaScript (the loop makes one per pass), each with the loop's pass count when it arrived. `stop()` ends it.
 */
function recordDeliveries(model) {
  const loop = model.engine.decodeLoop;
  const dispatch = loop.dispatch;
  const deliveries = [];
  loop.dispatch = function (events) {
    deliveries.push({ passes: loop.stats().passes, events: events.map((e) => ({ ...e })) });
    return dispatch.call(this, events);
  };
  return { deliveries, stop: () => delete loop.dispatch };
}

/** The most requests with a token in one delivery: how many generations shared a pass at best. */
function largestSharedPass(deliveries) {
  return Math.max(0, ...deliveries.map((d) => new Set(d.events.filter((e) => e.kind === "token").map((e) => e.id)).size));
}

/**
 * Checks, from recordDeliveries, that the first request after the `streams` first ones of the recording (a long
 * prompt admitted while they decode) was prefilled beside them: the pass that ended its prefill (its first event)
 * and the passes before it each held a row of every stream (their tokens come in consecutive passes), so a slice
 * never ran in a pass of its own; a prompt of more than `minPasses - 1` passes of tokens makes at least `minPasses`
 * such passes in a row.
 */
function assertPrefilledBeside(deliveries, streams, minPasses) {
  const events = deliveries.flatMap((d) => d.events);
  const decoders = [...new Set(events.map((e) => e.id))].slice(0, streams);
  assert.equal(decoders.length, streams, "the streams decoded");
  const first = events.find((e) => !decoders.includes(e.id));
  assert.ok(first, "the prompt ran");
  const decoded = (pass) => decoders.every((d) => events.some((e) => e.id === d && e.pass === pass && e.kind === "token"));
  let shared = 0;
  while (decoded(first.pass - shared)) shared++;
  assert.ok(shared >= minPasses, `the streams decoded in the ${shared} passes up to the prompt's first token, expected ${minPasses} or more`);
}

/** `done` resolves once `tick()` has been called `count` times (all the streams are decoding, say). */
function countdown(count) {
  let resolve;
  const done = new Promise((r) => (resolve = r));
  return { done, tick: () => --count === 0 && resolve() };
}

module.exports = { recordPasses, recordDeliveries, largestSharedPass, assertInterleaved, assertPrefilledBeside, countdown, PASS_TOKENS };
