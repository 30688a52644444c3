"use strict";
// Perplexity over the whole of trained/heldout.txt against the independent references: HF transformers' val_nll of
// sotu-l2-23m (the bf16 HF directory), and llama.cpp's llama-perplexity on its own quantized GGUFs (four in
// MANIFEST.md; the other file types quantized here, since no model files are committed). Slow on purpose: each is
// a full-file run (60k tokens), so they live in this one file.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;
const os = require("node:os");
const { loadModel, perplexity, quantize } = require("../dist/cjs/index.js");

const TEXT = fs.readFileSync(modelPath("trained", "heldout.txt"), "utf8");
const THREADS = 2;

async function measure(file, options) {
  // 513: a default-mode window holds 512 predictions plus the token they start from.
  const model = await loadModel(file, { threads: THREADS, contextSize: 513 });
  try {
    return await perplexity(model, TEXT, { contextSize: 512, ...options });
  } finally {
    await model.dispose();
  }
}

const within = (actual, expected, tolerance) => Math.abs(actual / expected - 1) <= tolerance;

test("sotu-l2-23m (HF bf16): PPL = exp(val_nll) of HF transformers within 0.1%", async (t) => {
  const dir = modelPath("trained", "sotu-l2-23m");
  const { val_nll: valNll, val_tokens: valTokens } = JSON.parse(fs.readFileSync(path.join(dir, "reference-public.json"), "utf8"));
  // The reference stream: each document (separated by two blank lines) as BOS text EOS, windows of 512, every
  // token after the first of each window predicted.
  const r = await measure(dir, { documentSeparator: "\n\n\n" });
  assert.equal(r.tokens, valTokens);
  const expected = Math.exp(valNll);
  t.diagnostic(`PPL ${r.ppl.toFixed(4)} ± ${r.pplError.toFixed(4)} vs HF ${expected.toFixed(4)} (${r.seconds.toFixed(0)} s)`);
  assert.ok(within(r.ppl, expected, 0.001), `PPL ${r.ppl.toFixed(4)} vs HF ${expected.toFixed(4)} (${r.seconds.toFixed(0)} s)`);
});

// llama-perplexity -f heldout.txt -c 512 at llama.cpp de3ff81, from MANIFEST.md.
const LLAMA_CPP = { q8_0: 70.8754, q6_K: 70.9001, q4_K_M: 71.1569, q4_0: 72.1071 };

for (const [type, expected] of Object.entries(LLAMA_CPP)) {
  test(`sotu-l2-23m-${type}.gguf: llama-perplexity's windows give its PPL ${expected} within 0.5%`, async (t) => {
    const r = await measure(modelPath("trained", "sotu-l2-23m-gguf", `sotu-l2-23m-${type}.gguf`), { llamaCppWindows: true });
    assert.equal(r.scored, r.windows * 255);
    t.diagnostic(`PPL ${r.ppl.toFixed(4)} ± ${r.pplError.toFixed(4)} vs llama.cpp ${expected} (${r.seconds.toFixed(0)} s)`);
    assert.ok(within(r.ppl, expected, 0.005), `PPL ${r.ppl.toFixed(4)} vs llama.cpp ${expected} (${r.seconds.toFixed(0)} s)`);
  });
}

// llama-perplexity -f heldout.txt -c 512 -t 1 at llama.cpp de3ff81 (built here, CPU) on llama-quantize's output of
// the f32 GGUF of sotu-l2-23m for each file type. quantize() writes the same tensor bytes from the HF directory
// (quantize-fixtures.test.js checks that tensor by tensor), so our perplexity of our file must match.
const LLAMA_CPP_QUANTIZED = {
  Q2_K: 80.8351, Q3_K_S: 74.0163, Q3_K_M: 72.9668, Q3_K_L: 72.82, Q4_K_S: 71.3312, Q5_K_S: 71.0398, Q5_K_M: 70.9414,
  IQ4_NL: 71.3247, IQ4_XS: 71.3331, Q4_1: 71.7589, Q5_0: 71.0913, Q5_1: 70.9528,
};

for (const [fileType, expected] of Object.entries(LLAMA_CPP_QUANTIZED)) {
  test(`${fileType} quantized here: llama-perplexity's windows give llama.cpp's PPL ${expected} on the same tensors within 0.05%`, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ppl-quantized-"));
    try {
      const { path: file } = await quantize(modelPath("trained", "sotu-l2-23m"), path.join(dir, `${fileType}.gguf`), { type: fileType, threads: THREADS });
      const r = await measure(file, { llamaCppWindows: true });
      t.diagnostic(`PPL ${r.ppl.toFixed(4)} ± ${r.pplError.toFixed(4)} vs llama.cpp ${expected} (${r.seconds.toFixed(0)} s)`);
      assert.ok(within(r.ppl, expected, 0.0005), `PPL ${r.ppl.toFixed(4)} vs llama.cpp ${expected}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("KL divergence of q4_0 from the HF model on the first 4 windows: small, and the top tokens mostly agree", async (t) => {
  const base = await loadModel(modelPath("trained", "sotu-l2-23m"), { threads: THREADS, contextSize: 512 });
  const model = await loadModel(modelPath("trained", "sotu-l2-23m-gguf", "sotu-l2-23m-q4_0.gguf"), { threads: THREADS, contextSize: 512 });
  try {
    const r = await perplexity(model, TEXT, { contextSize: 512, llamaCppWindows: true, base, maxWindows: 4 });
    t.diagnostic(`PPL ${r.ppl.toFixed(4)} (base ${r.kl.basePpl.toFixed(4)}), mean KLD ${r.kl.mean.toFixed(5)}, same top ${(100 * r.kl.top1Agreement).toFixed(2)} %`);
    assert.ok(r.kl.mean > 0 && r.kl.mean < 0.1, `mean KLD ${r.kl.mean}`);
    assert.ok(r.kl.top1Agreement > 0.8 && r.kl.top1Agreement < 1, `top-1 agreement ${r.kl.top1Agreement}`);
    assert.ok(r.ppl > r.kl.basePpl, "q4_0 is worse than the bf16 weights it came from");
  } finally {
    await model.dispose();
    await base.dispose();
  }
});
