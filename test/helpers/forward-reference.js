"use strict";
// A plain-JS float64 Llama forward pass, and the tiny random models (f32/f16/bf16 weights, GQA, sizes that are not
// multiples of the SIMD width) it checks the engine on, written as raw addon specs.
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { makeRandom } = require("./random.js");

const TYPE = { f32: 0, f16: 1, bf16: 30 }; // the engine's codes: ggml's numbers

const CONFIG = { dim: 40, hiddenDim: 36, layers: 2, heads: 4, kvHeads: 2, headDim: 10, vocabSize: 67, normEps: 1e-5 };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function halfToNumber(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/**
 * A random tensor: its bytes in the given type and the exact values those bytes hold (what the reference
 * computes with). Matrices get values of magnitude ~scale; norms get values around 1.
 */
function randomTensor(random, type, count, { scale, around = 0 }) {
  const values = new Float64Array(count);
  const bytes = Buffer.alloc(count * (type === "f32" ? 4 : 2));
  for (let i = 0; i < count; i++) {
    f32[0] = around + (random() * 2 - 1) * scale;
    if (type === "f32") {
      bytes.writeFloatLE(f32[0], i * 4);
      values[i] = f32[0];
    } else if (type === "bf16") {
      const bits = u32[0] >>> 16;
      bytes.writeUInt16LE(bits, i * 2);
      u32[0] = bits << 16;
      values[i] = f32[0];
    } else {
      // Random half: sign, exponent near that of `scale`, random mantissa.
      const sign = f32[0] < 0 ? 0x8000 : 0;
      const magnitude = Math.abs(f32[0]) || scale;
      const exponent = Math.min(30, Math.max(1, Math.floor(Math.log2(magnitude)) + 15));
      const bits = sign | (exponent << 10) | Math.floor(random() * 1024);
      bytes.writeUInt16LE(bits, i * 2);
      values[i] = halfToNumber(bits);
    }
  }
  return { bytes, values };
}

/**
 * Writes a random model to temp files. types: { matrix, norm, embedding }; tied: no output.weight;
 * splitOutput: output.weight in a second file. Returns the spec, the reference weights and the file paths.
 */
function writeModel({ types, tied = false, splitOutput = false, ropeInterleaved, seed }) {
  const random = makeRandom(seed);
  const c = CONFIG;
  const qDim = c.heads * c.headDim;
  const kvDim = c.kvHeads * c.headDim;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-forward-"));
  const files = [path.join(dir, "model.bin"), path.join(dir, "output.bin")];
  const chunks = [[], []];
  const sizes = [16, 0]; // a small leading gap so offsets are not all 0
  chunks[0].push(Buffer.alloc(16));
  const tensors = [];
  const weights = { layers: [] };
  function add(name, type, shape, init, file = 0) {
    const count = shape.reduce((a, b) => a * b, 1);
    const { bytes, values } = randomTensor(random, type, count, init);
    tensors.push({ name, file, offset: sizes[file], type: TYPE[type], shape });
    chunks[file].push(bytes);
    sizes[file] += bytes.length;
    return values;
  }
  const matrix = { scale: 0.3 };
  const norm = { scale: 0.2, around: 1 };
  weights.tokenEmbd = add("token_embd.weight", types.embedding, [c.vocabSize, c.dim], { scale: 1 });
  for (let l = 0; l < c.layers; l++) {
    const p = `blk.${l}.`;
    weights.layers.push({
      attnNorm: add(p + "attn_norm.weight", types.norm, [c.dim], norm),
      q: add(p + "attn_q.weight", types.matrix, [qDim, c.dim], matrix),
      k: add(p + "attn_k.weight", types.matrix, [kvDim, c.dim], matrix),
      v: add(p + "attn_v.weight", types.matrix, [kvDim, c.dim], matrix),
      o: add(p + "attn_output.weight", types.matrix, [c.dim, qDim], matrix),
      ffnNorm: add(p + "ffn_norm.weight", types.norm, [c.dim], norm),
      gate: add(p + "ffn_gate.weight", types.matrix, [c.hiddenDim, c.dim], matrix),
      up: add(p + "ffn_up.weight", types.matrix, [c.hiddenDim, c.dim], matrix),
      down: add(p + "ffn_down.weight", types.matrix, [c.dim, c.hiddenDim], matrix),
    });
  }
  weights.outputNorm = add("output_norm.weight", types.norm, [c.dim], norm);
  weights.output = tied
    ? weights.tokenEmbd
    : add("output.weight", types.matrix, [c.vocabSize, c.dim], matrix, splitOutput ? 1 : 0);
  fs.writeFileSync(files[0], Buffer.concat(chunks[0]));
  fs.writeFileSync(files[1], Buffer.concat(chunks[1]));
  const ropeFreqs = new Float32Array(c.headDim / 2);
  for (let i = 0; i < ropeFreqs.length; i++) ropeFreqs[i] = 1 / Math.pow(10000, (2 * i) / c.headDim);
  const spec = { files, tensors, threads: 2, config: { ...c, ropeInterleaved, ropeFreqs } };
  return { spec, weights, dir };
}

// ---- float64 reference ----

function matvec(w, x, rows, cols) {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < cols; i++) s += w[r * cols + i] * x[i];
    out[r] = s;
  }
  return out;
}

function rmsnorm(x, w, eps) {
  let ss = 0;
  for (const v of x) ss += v * v;
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * scale * w[i]);
}

function rope(vec, nHeads, headDim, pos, freqs, interleaved) {
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * freqs[i]); // the engine's float32 angle
      const a = h * headDim + (interleaved ? 2 * i : i);
      const b = h * headDim + (interleaved ? 2 * i + 1 : i + half);
      const x0 = vec[a];
      const x1 = vec[b];
      vec[a] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
      vec[b] = x1 * Math.cos(angle) + x0 * Math.sin(angle);
    }
  }
}

/** Logits of every position of `tokens`, computed one token at a time with a KV cache. */
function referenceForward(spec, weights, tokens) {
  const c = spec.config;
  const qDim = c.heads * c.headDim;
  const kvDim = c.kvHeads * c.headDim;
  const cache = weights.layers.map(() => ({ k: [], v: [] }));
  const all = [];
  tokens.forEach((token, pos) => {
    let x = Float64Array.from(weights.tokenEmbd.subarray(token * c.dim, (token + 1) * c.dim));
    weights.layers.forEach((layer, l) => {
      const h = rmsnorm(x, layer.attnNorm, c.normEps);
      const q = matvec(layer.q, h, qDim, c.dim);
      const k = matvec(layer.k, h, kvDim, c.dim);
      const v = matvec(layer.v, h, kvDim, c.dim);
      rope(q, c.heads, c.headDim, pos, c.ropeFreqs, c.ropeInterleaved);
      rope(k, c.kvHeads, c.headDim, pos, c.ropeFreqs, c.ropeInterleaved);
      cache[l].k.push(k);
      cache[l].v.push(v);
      const attn = new Float64Array(qDim);
      for (let head = 0; head < c.heads; head++) {
        const kvHead = Math.floor(head / (c.heads / c.kvHeads));
        const scores = cache[l].k.map((kp) => {
          let s = 0;
          for (let i = 0; i < c.headDim; i++) s += q[head * c.headDim + i] * kp[kvHead * c.headDim + i];
          return s / Math.sqrt(c.headDim);
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const sum = e.reduce((a, b) => a + b, 0);
        cache[l].v.forEach((vp, p) => {
          for (let i = 0; i < c.headDim; i++) attn[head * c.headDim + i] += (e[p] / sum) * vp[kvHead * c.headDim + i];
        });
      }
      const o = matvec(layer.o, attn, c.dim, qDim);
      x = x.map((val, i) => val + o[i]);
      const h2 = rmsnorm(x, layer.ffnNorm, c.normEps);
      const gate = matvec(layer.gate, h2, c.hiddenDim, c.dim);
      const up = matvec(layer.up, h2, c.hiddenDim, c.dim);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
      const down = matvec(layer.down, act, c.dim, c.hiddenDim);
      x = x.map((val, i) => val + down[i]);
    });
    all.push(matvec(weights.output, rmsnorm(x, weights.outputNorm, c.normEps), c.vocabSize, c.dim));
  });
  return all;
}

function randomTokens(seed, n) {
  const random = makeRandom(seed);
  return Int32Array.from({ length: n }, () => Math.floor(random() * CONFIG.vocabSize));
}

module.exports = { CONFIG, writeModel, referenceForward, randomTokens };
