"use strict";
// The addon against a plain-JS float64 Llama forward pass on tiny random models (f32/f16/bf16 weights, GQA,
// sizes that are not multiples of the SIMD width), plus the addon's error contract.
const { test } = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const path = require("node:path");

const binding = require("node-gyp-build")(path.join(__dirname, ".."));
const { maxAbsDiff } = require("./helpers/reference.js");
const { CONFIG, writeModel, referenceForward, randomTokens } = require("./helpers/forward-reference.js");

const VARIANTS = [
  { label: "f32, interleaved rope, tied output", types: { matrix: "f32", norm: "f32", embedding: "f32" }, tied: true, ropeInterleaved: true },
  { label: "f16 matrices, half rope, output in a second file", types: { matrix: "f16", norm: "f32", embedding: "f16" }, splitOutput: true, ropeInterleaved: false },
  { label: "bf16 everywhere, half rope", types: { matrix: "bf16", norm: "bf16", embedding: "bf16" }, ropeInterleaved: false },
  { label: "bf16 matrices, interleaved rope, tied bf16 embedding", types: { matrix: "bf16", norm: "f32", embedding: "bf16" }, tied: true, ropeInterleaved: true },
];

VARIANTS.forEach((variant, index) => {
  test(`forward matches the float64 reference: ${variant.label}`, async () => {
    const { spec, weights, dir } = writeModel({ ...variant, seed: 1000 + index });
    const model = new binding.Model(spec);
    try {
      const tokens = randomTokens(7 + index, 9);
      const reference = referenceForward(spec, weights, tokens);
      const V = CONFIG.vocabSize;

      // Prefill: one batch, every position's logits.
      const prefill = model.createContext(16);
      assert.strictEqual(prefill.contextSize, 16);
      const { logits: all } = await prefill.decode(tokens, 0, { logits: "all" });
      assert.strictEqual(all.length, tokens.length * V);
      for (let t = 0; t < tokens.length; t++) {
        const diff = maxAbsDiff(all.subarray(t * V, (t + 1) * V), reference[t]);
        assert.ok(diff < 1e-4, `position ${t}: max |engine - reference| = ${diff}`);
      }

      // Token-by-token decode equals the batched prefill.
      const stepwise = model.createContext(16);
      for (let t = 0; t < tokens.length; t++) {
        const { logits } = await stepwise.decode(tokens.subarray(t, t + 1), t);
        assert.strictEqual(logits.length, V);
        const diff = maxAbsDiff(logits, all.subarray(t * V, (t + 1) * V));
        assert.ok(diff < 1e-5, `decode at ${t} vs prefill: ${diff}`);
      }

      // Prefill in two batches continuing the cache; top-k against a sort of the logits.
      const split = model.createContext(16);
      const none = await split.decode(tokens.subarray(0, 4), 0, { logits: "none" });
      assert.strictEqual(none.logits, undefined);
      const { logits: last, top } = await split.decode(tokens.subarray(4), 4, { topK: 7 });
      assert.ok(maxAbsDiff(last, all.subarray((tokens.length - 1) * V)) < 1e-5);
      const sorted = [...last.keys()].sort((a, b) => last[b] - last[a] || a - b);
      assert.deepStrictEqual([...top], sorted.slice(0, 7));
      for (const ctx of [prefill, stepwise, split]) ctx.close();
    } finally {
      model.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test("a prompt longer than one internal batch, and two contexts decoding at once on one model", async () => {
  const { spec, weights, dir } = writeModel({ ...VARIANTS[1], seed: 77 });
  const model = new binding.Model(spec);
  try {
    const tokens = randomTokens(78, 300);
    const reference = referenceForward(spec, weights, tokens);
    const a = model.createContext(300);
    const b = model.createContext(40);
    const [long, short] = await Promise.all([
      a.decode(tokens, 0, { topK: 3 }),
      b.decode(tokens.subarray(0, 33), 0, { logits: "none", topK: 5 }),
    ]);
    assert.ok(maxAbsDiff(long.logits, reference[299]) < 1e-4);
    assert.strictEqual(short.logits, undefined);
    const ref32 = reference[32];
    const sorted = [...ref32.keys()].sort((x, y) => ref32[y] - ref32[x] || x - y);
    assert.deepStrictEqual([...short.top], sorted.slice(0, 5));
    a.close();
    b.close();
  } finally {
    model.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the engine's limits: a model on the CPU passes the CPU's pass size, and a longer batch still runs whole", async () => {
  const { spec, dir } = writeModel({ ...VARIANTS[0], seed: 7 });
  const model = new binding.Model(spec);
  try {
    const { passTokens } = model.limits;
    assert.ok(Number.isInteger(passTokens) && passTokens >= 1, `passTokens = ${passTokens}`);
    assert.strictEqual(passTokens, 256, "LLM_CPU_PASS_TOKENS in native/engine/forward.h");
    const ctx = model.createContext(passTokens + 2);
    const { logits } = await ctx.decode(randomTokens(8, passTokens + 1), 0);
    assert.strictEqual(logits.length, CONFIG.vocabSize);
    ctx.close();
  } finally {
    model.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("physicalCores and cpuFeatures", () => {
  assert.ok(Number.isInteger(binding.physicalCores()) && binding.physicalCores() >= 1);
  assert.match(binding.cpuFeatures(), /^(avx512-vnni|avx512|avx2-vnni|avx2|scalar)$/);
});

// ---- errors ----

function withModel(mutate, check) {
  const { spec, dir } = writeModel({ ...VARIANTS[0], seed: 5 });
  try {
    mutate(spec);
    assert.throws(() => new binding.Model(spec), check);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test("a tensor past the end of its file is MODEL_FORMAT naming the tensor, file and numbers", () => {
  withModel(
    (spec) => {
      spec.tensors.find((t) => t.name === "blk.1.attn_q.weight").offset = fs.statSync(spec.files[0]).size - 100;
    },
    (err) => {
      assert.strictEqual(err.code, "MODEL_FORMAT");
      assert.match(err.message, /blk\.1\.attn_q\.weight/);
      assert.match(err.message, /model\.bin/);
      assert.match(err.message, /past the end of the file \(offset \d+ \+ 6400 bytes > file size \d+\)/);
      return true;
    },
  );
});

test("a wrong shape is MODEL_FORMAT naming the tensor and both shapes", () => {
  withModel(
    (spec) => {
      spec.tensors.find((t) => t.name === "blk.0.attn_k.weight").shape = [40, 20];
    },
    (err) => {
      assert.strictEqual(err.code, "MODEL_FORMAT");
      assert.match(err.message, /blk\.0\.attn_k\.weight .*shape \[40, 20\], expected \[20, 40\]/);
      return true;
    },
  );
  withModel(
    (spec) => {
      spec.tensors.find((t) => t.name === "output_norm.weight").shape = [1, 40];
    },
    (err) => err.code === "MODEL_FORMAT" && /output_norm\.weight .*expected \[40\]/.test(err.message),
  );
});

test("an unknown type code is UNSUPPORTED_MODEL", () => {
  withModel(
    (spec) => {
      spec.tensors.find((t) => t.name === "blk.0.ffn_up.weight").type = 9;
    },
    (err) => err.code === "UNSUPPORTED_MODEL" && /blk\.0\.ffn_up\.weight .*type code 9/.test(err.message),
  );
});

test("missing and duplicate tensors, a bad config, are rejected", () => {
  withModel(
    (spec) => {
      spec.tensors = spec.tensors.filter((t) => t.name !== "blk.1.ffn_down.weight");
    },
    (err) => err.code === "MODEL_FORMAT" && /blk\.1\.ffn_down\.weight is missing/.test(err.message),
  );
  withModel(
    (spec) => {
      spec.tensors.push({ ...spec.tensors[3] });
    },
    (err) => err.code === "MODEL_FORMAT" && /more than once/.test(err.message),
  );
  withModel(
    (spec) => {
      spec.config.kvHeads = 3;
    },
    (err) => err.code === "INVALID_ARGUMENT" && err.option === "kvHeads" && /kvHeads = 3/.test(err.message),
  );
});

test("decode errors: token out of range, context overflow, busy, use after close", async () => {
  const { spec, dir } = writeModel({ ...VARIANTS[0], seed: 6 });
  const model = new binding.Model(spec);
  try {
    const ctx = model.createContext(8);
    await assert.rejects(ctx.decode(Int32Array.of(1, 67, 2), 0), (err) => {
      assert.strictEqual(err.code, "INVALID_ARGUMENT");
      assert.strictEqual(err.option, "tokens");
      assert.match(err.message, /token id 67 .*vocabulary \(size 67\)/);
      return true;
    });
    await assert.rejects(ctx.decode(Int32Array.of(1), 0, { topK: 68 }), { code: "INVALID_ARGUMENT", option: "topK" });
    await assert.rejects(ctx.decode(Int32Array.of(1), 0.5), { code: "INVALID_ARGUMENT", option: "pos" });
    await assert.rejects(ctx.decode(Int32Array.of(-1), 0), { code: "INVALID_ARGUMENT" });
    await assert.rejects(ctx.decode(new Int32Array(0), 0), { code: "INVALID_ARGUMENT" });
    await assert.rejects(ctx.decode(Int32Array.of(1, 2, 3), 6), (err) => {
      assert.strictEqual(err.code, "CONTEXT_OVERFLOW");
      assert.match(err.message, /3 tokens at pos 6 need 9 positions, more than the context size 8$/);
      assert.strictEqual(err.tokens, 9);
      assert.strictEqual(err.contextSize, 8);
      return true;
    });
    await assert.rejects(ctx.greedy(Int32Array.of(1, 2), 0, 8), { code: "CONTEXT_OVERFLOW", tokens: 9, contextSize: 8 });
    assert.throws(() => model.createContext(0), { code: "INVALID_ARGUMENT", option: "contextSize" });
    const running = ctx.decode(Int32Array.of(1, 2), 0);
    await assert.rejects(ctx.decode(Int32Array.of(3), 2), { code: "CONTEXT_BUSY" });
    await running;
    ctx.close();
    ctx.close(); // idempotent
    await assert.rejects(ctx.decode(Int32Array.of(1), 0), { code: "DISPOSED" });

    // Closing the model while a decode runs: the decode finishes, the unmap waits for it.
    const other = model.createContext(300);
    const inFlight = other.decode(randomTokens(3, 300), 0);
    model.close();
    const { logits } = await inFlight;
    assert.strictEqual(logits.length, CONFIG.vocabSize);
    assert.ok(logits.every(Number.isFinite));
    await assert.rejects(other.decode(Int32Array.of(1), 300 - 1), { code: "DISPOSED" });
    assert.throws(() => model.createContext(4), { code: "DISPOSED" });
    other.close();
  } finally {
    model.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("decodeBatch: several sequences in one pass give bit-identical results to each alone", async () => {
  const { spec, dir } = writeModel({ ...VARIANTS[1], seed: 91 });
  const model = new binding.Model(spec);
  try {
    // Prompt lengths that straddle the engine's 256-token pass, so sequences are split across passes.
    const prompts = [1, 7, 250, 300].map((n, i) => randomTokens(100 + i, n));
    const alone = [];
    for (const tokens of prompts) {
      const ctx = model.createContext(320);
      const first = await ctx.decode(tokens, 0, { logits: "all", topK: 4 });
      const next = await ctx.decode(Int32Array.of(5), tokens.length, { topK: 2 });
      alone.push({ first, next });
      ctx.close();
    }
    const contexts = prompts.map(() => model.createContext(320));
    const batched = await model.decodeBatch(
      prompts.map((tokens, i) => ({ context: contexts[i], tokens, pos: 0, logits: "all", topK: 4 })),
    );
    const nexts = await model.decodeBatch(
      prompts.map((tokens, i) => ({ context: contexts[i], tokens: Int32Array.of(5), pos: tokens.length, topK: 2 })),
    );
    for (let i = 0; i < prompts.length; i++) {
      assert.deepStrictEqual(batched[i].logits, alone[i].first.logits, `sequence ${i}: prompt logits`);
      assert.deepStrictEqual(batched[i].top, alone[i].first.top);
      assert.deepStrictEqual(nexts[i].logits, alone[i].next.logits, `sequence ${i}: next-token logits`);
      assert.deepStrictEqual(nexts[i].top, alone[i].next.top);
    }
    // Mixed logits modes in one pass: only what each asked for comes back.
    const mixed = await model.decodeBatch([
      { context: contexts[0], tokens: Int32Array.of(3), pos: 2, logits: "none" },
      { context: contexts[1], tokens: Int32Array.of(3, 4), pos: 8, logits: "last" },
    ]);
    assert.strictEqual(mixed[0].logits, undefined);
    assert.strictEqual(mixed[1].logits.length, CONFIG.vocabSize);
    for (const ctx of contexts) ctx.close();
  } finally {
    model.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the typed errors take the addon's numbers and argument names from its error's fields, never from its message", async () => {
  const { toTypedError } = require("../dist/cjs/native/engine.js");
  const { ContextOverflowError, InvalidArgumentError, OutOfMemoryError } = require("../dist/cjs/index.js");
  const { spec, dir } = writeModel({ ...VARIANTS[0], seed: 8 });
  const model = new binding.Model(spec);
  try {
    const ctx = model.createContext(8);
    const overflow = toTypedError(await ctx.decode(Int32Array.of(1, 2, 3), 6).catch((err) => err));
    assert.ok(overflow instanceof ContextOverflowError, `${overflow.name}: ${overflow.message}`);
    assert.deepStrictEqual([overflow.tokens, overflow.contextSize], [9, 8]);
    const argument = toTypedError(await ctx.decode(Int32Array.of(1), 0, { logits: "some" }).catch((err) => err));
    assert.ok(argument instanceof InvalidArgumentError, `${argument.name}: ${argument.message}`);
    assert.strictEqual(argument.option, "logits");
    ctx.close();
  } finally {
    model.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  // Messages without the numbers in them: only the fields can give them.
  const bare = (code, fields) => Object.assign(new Error(`a ${code} error`), { code, ...fields });
  const overflow = toTypedError(bare("CONTEXT_OVERFLOW", { tokens: 300, contextSize: 256 }));
  assert.deepStrictEqual([overflow.tokens, overflow.contextSize], [300, 256]);
  assert.strictEqual(toTypedError(bare("OUT_OF_MEMORY", { bytes: 4096 })).bytesNeeded, 4096);
  const argument = toTypedError(bare("INVALID_ARGUMENT", {}));
  assert.ok(argument instanceof InvalidArgumentError && !("option" in argument), "no option named, none set");
  assert.ok(toTypedError(bare("OUT_OF_MEMORY", {})) instanceof OutOfMemoryError);
});

test("decodeBatch errors: a context twice, another model's context, bad entries, busy", async () => {
  const { spec, dir } = writeModel({ ...VARIANTS[0], seed: 92 });
  const model = new binding.Model(spec);
  const otherModel = new binding.Model(spec);
  try {
    const a = model.createContext(16);
    const b = model.createContext(16);
    const foreign = otherModel.createContext(16);
    const entry = (context, pos = 0) => ({ context, tokens: Int32Array.of(1, 2), pos });
    await assert.rejects(model.decodeBatch([entry(a), entry(a, 2)]), { code: "INVALID_ARGUMENT", message: /twice/ });
    await assert.rejects(model.decodeBatch([entry(a), entry(foreign)]), { code: "INVALID_ARGUMENT", message: /another model/ });
    await assert.rejects(model.decodeBatch([entry(a), { context: {}, tokens: Int32Array.of(1), pos: 0 }]), {
      code: "INVALID_ARGUMENT", message: /decodeBatch\[1\]\.context must be a context/,
    });
    await assert.rejects(model.decodeBatch([]), { code: "INVALID_ARGUMENT" });
    await assert.rejects(model.decodeBatch("x"), { code: "INVALID_ARGUMENT" });
    await assert.rejects(model.decodeBatch([entry(a), entry(b, 15)]), {
      code: "CONTEXT_OVERFLOW", message: /decodeBatch\[1\]: 2 tokens at pos 15 need 17 positions, more than the context size 16$/,
      tokens: 17, contextSize: 16,
    });
    const running = a.decode(Int32Array.of(1), 0);
    await assert.rejects(model.decodeBatch([entry(b), entry(a, 1)]), { code: "CONTEXT_BUSY" });
    await running;
    await model.decodeBatch([entry(a), entry(b)]); // nothing was left marked busy
    for (const ctx of [a, b, foreign]) ctx.close();
  } finally {
    model.close();
    otherModel.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("KV state: copyFrom and readState/writeState carry a sequence over exactly", async () => {
  const { spec, dir } = writeModel({ ...VARIANTS[1], seed: 93 });
  const model = new binding.Model(spec);
  try {
    const tokens = randomTokens(94, 20);
    const source = model.createContext(32);
    await source.decode(tokens, 0, { logits: "none" });
    const expected = (await model.createContext(32).decode(Int32Array.of(...tokens, 9), 0)).logits;

    const fork = model.createContext(24);
    fork.copyFrom(source, 20);
    assert.deepStrictEqual((await fork.decode(Int32Array.of(9), 20)).logits, expected);

    const state = source.readState(20);
    const kvFloats = CONFIG.kvHeads * CONFIG.headDim * CONFIG.layers * 20 * 2;
    assert.strictEqual(state.byteLength, kvFloats * 4);
    const restored = model.createContext(40);
    restored.writeState(20, new Uint8Array(state), tokens);
    assert.deepStrictEqual((await restored.decode(Int32Array.of(9), 20)).logits, expected);

    assert.throws(() => restored.writeState(20, new Uint8Array(state, 4), tokens), { code: "INVALID_ARGUMENT", message: /bytes/ });
    assert.throws(() => restored.writeState(41, new Uint8Array(8), tokens), { code: "INVALID_ARGUMENT" });
    assert.throws(() => fork.copyFrom(source, 30), { code: "INVALID_ARGUMENT", message: /30 positions do not fit a context of 24/ });
    assert.throws(() => fork.copyFrom({}, 1), { code: "INVALID_ARGUMENT" });
    const running = source.decode(Int32Array.of(1), 20);
    assert.throws(() => source.readState(1), { code: "CONTEXT_BUSY" });
    await running;
  } finally {
    model.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("greedy: the engine's own loop picks the argmax at every step", async () => {
  const { spec, dir } = writeModel({ ...VARIANTS[0], seed: 95 });
  const model = new binding.Model(spec);
  try {
    const prompt = randomTokens(96, 5);
    const ids = await model.createContext(16).greedy(prompt, 0, 6);
    const ctx = model.createContext(16);
    let out = await ctx.decode(prompt, 0, { topK: 1 });
    for (let i = 0; i < 6; i++) {
      assert.strictEqual(ids[i], out.top[0], `step ${i}`);
      if (i < 5) out = await ctx.decode(Int32Array.of(ids[i]), 5 + i, { topK: 1 });
    }
    await assert.rejects(model.createContext(16).greedy(prompt, 0, 13), { code: "CONTEXT_OVERFLOW" });
  } finally {
    model.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
