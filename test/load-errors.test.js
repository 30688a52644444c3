"use strict";
// loadModel on corrupted copies of the real model files: every failure is a typed error naming the file.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { loadModel, ModelFormatError, UnsupportedModelError, InvalidArgumentError, OutOfMemoryError, DeviceError } = require("../dist/cjs/index.js");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { writeTinyModel } = require("./helpers/tiny-model.js");
const { ggufArrayItemOffset, setGgufInt } = require("./helpers/gguf-patch.js");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-corrupt-"));
process.on("exit", () => fs.rmSync(tmp, { recursive: true, force: true }));

function corruptCopy(name, source, mutate) {
  const bytes = Buffer.from(fs.readFileSync(source));
  const out = path.join(tmp, name);
  fs.writeFileSync(out, mutate(bytes));
  return out;
}

async function assertLoadFails(file, errorClass, pattern, options) {
  await assert.rejects(loadModel(file, options), (err) => {
    assert.ok(err instanceof errorClass, `${file}: expected ${errorClass.name}, got ${err.name}: ${err.message}`);
    assert.ok(err.message.includes(file), `message should name ${file}: ${err.message}`);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

const gguf = () => DEFAULT_MODEL;

test("GGUF: wrong magic", async () => {
  const f = corruptCopy("magic.gguf", gguf(), (b) => (b.write("GGUX", 0), b));
  // Not GGUF any more, and not a plausible llama2.c header either.
  await assertLoadFails(f, ModelFormatError);
});

test("GGUF: truncated inside the header", async () => {
  await assertLoadFails(corruptCopy("head.gguf", gguf(), (b) => b.subarray(0, 200)), ModelFormatError);
});

test("GGUF: truncated inside the tensor data (a tensor runs past the end of the file)", async () => {
  const f = corruptCopy("data.gguf", gguf(), (b) => b.subarray(0, b.length - 4096));
  await assertLoadFails(f, ModelFormatError, /output\.weight|past the end|truncated/);
});

test("GGUF: unknown architecture", async () => {
  const f = corruptCopy("arch.gguf", gguf(), (b) => {
    const key = b.indexOf("general.architecture");
    const value = b.indexOf("llama", key + 20);
    b.write("gemma", value);
    return b;
  });
  await assertLoadFails(f, UnsupportedModelError, /gemma/);
});

test("GGUF: an impossible tensor count", async () => {
  const f = corruptCopy("count.gguf", gguf(), (b) => (b.writeBigUInt64LE(1n << 40n, 8), b));
  await assertLoadFails(f, ModelFormatError);
});

test("llama2.c .bin: truncated", NEEDS_REFERENCE_MODELS, async () => {
  const bin = modelPath("tinystories", "stories260K.bin");
  const f = corruptCopy("short.bin", bin, (b) => b.subarray(0, b.length - 1000));
  await assertLoadFails(f, ModelFormatError, /\d+/, { tokenizer: modelPath("tinystories", "tok512.bin") });
});

test("llama2.c tokenizer.bin: truncated", NEEDS_REFERENCE_MODELS, async () => {
  const tok = corruptCopy("tok.bin", modelPath("tinystories", "tok512.bin"), (b) => b.subarray(0, 3000));
  await assert.rejects(loadModel(modelPath("tinystories", "stories260K.bin"), { tokenizer: tok }), (err) => {
    assert.ok(err instanceof ModelFormatError, err.message);
    assert.ok(err.message.includes(tok), err.message);
    return true;
  });
});

/** A copy of sotu-l2-23m with config.json / generation_config.json edited by `config` / `generation`. */
function hfCopy(name, { config, generation, safetensors } = {}) {
  const src = modelPath("trained", "sotu-l2-23m");
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(src)) {
    if (f === "model.safetensors" && safetensors) continue;
    fs.symlinkSync(path.join(src, f), path.join(dir, f));
  }
  for (const [file, edit] of [["config.json", config], ["generation_config.json", generation]]) {
    if (!edit) continue;
    fs.rmSync(path.join(dir, file));
    fs.writeFileSync(path.join(dir, file), JSON.stringify(edit(JSON.parse(fs.readFileSync(path.join(src, file), "utf8")))));
  }
  if (safetensors) corruptCopy(path.join(name, "model.safetensors"), path.join(src, "model.safetensors"), safetensors);
  return dir;
}

test("HF: a shape that does not match config.json", NEEDS_REFERENCE_MODELS, async () => {
  const dir = hfCopy("shape", { config: (c) => ({ ...c, intermediate_size: 1024 }) });
  await assertLoadFails(dir, ModelFormatError, /ffn_gate|gate_proj|1024/);
});

test("HF: an unknown architecture", NEEDS_REFERENCE_MODELS, async () => {
  const dir = hfCopy("arch", { config: (c) => ({ ...c, model_type: "mistral", architectures: ["MistralForCausalLM"] }) });
  await assertLoadFails(dir, UnsupportedModelError, /mistral/i);
});

test("HF: safetensors header length past the end of the file", NEEDS_REFERENCE_MODELS, async () => {
  const dir = hfCopy("header", { safetensors: (b) => (b.writeBigUInt64LE(1n << 40n, 0), b) });
  await assertLoadFails(dir, ModelFormatError);
});

test("HF: safetensors truncated inside the weights", NEEDS_REFERENCE_MODELS, async () => {
  const dir = hfCopy("truncated", { safetensors: (b) => b.subarray(0, b.length >> 1) });
  await assertLoadFails(dir, ModelFormatError);
});

test("a missing path", async () => {
  await assertLoadFails(path.join(tmp, "nope.gguf"), ModelFormatError);
});

test("contextSize beyond the trained context is an InvalidArgumentError naming the value and the limit", async () => {
  const file = DEFAULT_MODEL; // trained context 2048
  for (const contextSize of [1e9, 2049]) {
    await assert.rejects(loadModel(file, { contextSize }), (err) => {
      assert.ok(err instanceof InvalidArgumentError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(`contextSize ${contextSize}`) && err.message.includes("2048") && err.message.includes(file), err.message);
      return true;
    });
  }
  const model = await loadModel(file, { contextSize: 2048, threads: 1 });
  try {
    assert.equal(model.info.contextSize, 2048);
    // A session's own cache has the same limit.
    await assert.rejects(model.createSession({ contextSize: 4096 }), (err) => err instanceof InvalidArgumentError && /contextSize 4096.*2048/.test(err.message));
  } finally {
    await model.dispose();
  }
});

test("linear rope scaling allows contextSize up to the trained context times its factor", async () => {
  const file = writeTinyModel({
    metadata: [
      ["llama.rope.scaling.type", { type: "string", value: "linear" }],
      ["llama.rope.scaling.factor", { type: "f32", value: 4 }],
    ],
  }); // trained context 64
  const model = await loadModel(file, { contextSize: 256, threads: 1 });
  await model.dispose();
  await assert.rejects(loadModel(file, { contextSize: 257 }), (err) => err instanceof InvalidArgumentError && /257.*256 \(trained context 64 × linear rope scaling 4\)/.test(err.message));
});

test("a KV pool larger than the machine's memory is an OutOfMemoryError carrying the bytes needed", async () => {
  // Per layer 2 KV heads × 32 floats, keys and values: 512 bytes per position. Enough layers that the trained context
  // past the memory stays near 2^22 positions, within the loaders' bound on a context length (2^24) on any machine.
  const layers = Math.ceil(os.totalmem() / (2 ** 22 * 512));
  const perPosition = layers * 2 * 2 * 32 * 4;
  const contextSize = Math.ceil(os.totalmem() / perPosition) + 1;
  const file = writeTinyModel({ dim: 64, layers, heads: 2, kvHeads: 2, contextLength: contextSize });
  // The default pool (8 contexts) does not fit, and neither does the one context it falls back to, in whole blocks.
  await assert.rejects(loadModel(file, { contextSize, threads: 1, device: "cpu", kvCacheType: "f32" }), (err) => {
    assert.ok(err instanceof OutOfMemoryError, `${err.name}: ${err.message}`);
    assert.ok(err instanceof DeviceError);
    assert.equal(err.bytesNeeded, Math.ceil(contextSize / 32) * 32 * perPosition);
    assert.equal(err.bytesAvailable, os.totalmem());
    assert.ok(err.message.includes(String(err.bytesNeeded)) && err.message.includes(file), err.message);
    return true;
  });
});

test('device "cuda" without an NVIDIA driver says the driver is missing', { skip: fs.existsSync("/dev/nvidiactl") || fs.existsSync("/proc/driver/nvidia") ? "this machine has an NVIDIA driver" : false }, async () => {
  await assert.rejects(loadModel(DEFAULT_MODEL, { device: "cuda" }), (err) => {
    assert.ok(err instanceof DeviceError, `${err.name}: ${err.message}`);
    assert.match(err.message, /no NVIDIA driver is installed or loaded/);
    assert.doesNotMatch(err.message, /insufficient/);
    return true;
  });
});
test("GGUF: an invalid vocabulary in the tokenizer keys names the file", async () => {
  const f = corruptCopy("token-type.gguf", gguf(), (b) => (b.writeInt32LE(99, ggufArrayItemOffset(b, "tokenizer.ggml.token_type", 0)), b));
  await assertLoadFails(f, ModelFormatError, /invalid SentencePiece vocab: token 0 has unknown type 99/);
});

test("GGUF: a BOS id outside the vocabulary is refused at load", async () => {
  const f = corruptCopy("bos.gguf", gguf(), (b) => setGgufInt(b, "tokenizer.ggml.bos_token_id", 512));
  await assertLoadFails(f, ModelFormatError, /bos id 512/);
});

test("a tokenizer with more tokens than the model's vocabulary is refused at load", NEEDS_REFERENCE_MODELS, async () => {
  const tokenizer = modelPath("llama2", "tokenizer.bin"); // 32000 tokens, stories260K has 512
  await assert.rejects(loadModel(modelPath("tinystories", "stories260K.bin"), { tokenizer }), (err) => {
    assert.ok(err instanceof ModelFormatError, `${err.name}: ${err.message}`);
    assert.ok(err.message.includes(tokenizer), err.message);
    assert.match(err.message, /32000 tokens.*vocabulary of 512/);
    return true;
  });
});

test("HF: a BOS id in generation_config.json outside the vocabulary is refused at load", NEEDS_REFERENCE_MODELS, async () => {
  const dir = hfCopy("bos", { generation: (g) => ({ ...g, bos_token_id: 40000 }) });
  await assertLoadFails(dir, ModelFormatError, /BOS token id 40000 is outside the model's vocabulary of 32000/);
});

test("a tokenizer path that is a text file naming another tokenizer is refused, not followed", NEEDS_REFERENCE_MODELS, async () => {
  // What a git symlink checked out without symlink support looks like: the relative target as text.
  const stub = path.join(tmp, "tokenizer-stub.bin");
  fs.writeFileSync(stub, path.relative(tmp, modelPath("tinystories", "tok512.bin")));
  await assert.rejects(loadModel(modelPath("tinystories", "stories260K.bin"), { tokenizer: stub }), (err) => {
    assert.ok(err instanceof ModelFormatError, `${err.name}: ${err.message}`);
    assert.ok(err.message.includes(stub), err.message);
    assert.match(err.message, /not a tokenizer file/);
    return true;
  });
});
