#!/usr/bin/env node
// Fuzzes the model and tokenizer loaders. Seed files (a tiny generated model in each format, plus the tokenizer files
// of the shared test data) are mutated (bit flips, byte overwrites, truncation, integer fields set to huge, negative
// or zero values, JSON values replaced) and loaded in child processes with a bounded heap and a time limit per file.
// Each file is classified: loaded, typed error (by class), untyped error, signal (the child crashed) or hang.
// Exits 1 when any file gave an untyped error, a signal or a hang; the inputs that did are kept for reproduction.
//
// Usage: npm run fuzz -- [--seconds N] [--seed S] [--per-child N] [--heap MB] [--case-timeout S] [--json] [--verbose]
"use strict";
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { parseArgs } = require("node:util");

const ROOT = path.join(__dirname, "..");
const { modelPath } = require(path.join(ROOT, "test/helpers/models.js"));
const { makeRandom } = require(path.join(ROOT, "test/helpers/random.js"));

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    seed: { type: "string" },
    "per-child": { type: "string", default: "16" },
    heap: { type: "string", default: "256" },
    "case-timeout": { type: "string", default: "20" },
    json: { type: "boolean", default: false },
    verbose: { type: "boolean", default: false }, // print every file's outcome as it comes
    child: { type: "string" }, // internal: the cases file a child process loads
  },
});

// ---------------------------------------------------------------------------------------------------------------
// Child: loads each case in turn and prints one JSON line per case as it finishes.

async function loadCase(lib, c) {
  if (c.kind === "tokenizer") {
    const tokenizer = await lib.loadTokenizer(lib.tokenizerSourceFromFile(c.path));
    tokenizer.detokenize(tokenizer.tokenize("Once upon a time, 42 émigrés"));
    return;
  }
  const model = await lib.loadModel(c.path, { tokenizer: c.tokenizer, device: "cpu", threads: 1, contextSize: 16 });
  try {
    await model.complete("Once upon", { maxTokens: 2 });
  } finally {
    await model.dispose();
  }
}

async function runChild(casesFile) {
  const lib = {
    ...require(path.join(ROOT, "dist/cjs/index.js")),
    ...require(path.join(ROOT, "dist/cjs/tokenizer/index.js")),
    ...require(path.join(ROOT, "dist/cjs/formats/tokenizer-file.js")),
  };
  const { LlamaNapiError } = require(path.join(ROOT, "dist/cjs/errors.js"));
  for (const c of JSON.parse(fs.readFileSync(casesFile, "utf8"))) {
    let outcome;
    try {
      await loadCase(lib, c);
      outcome = { cls: "loaded" };
    } catch (err) {
      const typed = err instanceof LlamaNapiError;
      const name = err instanceof Error ? err.name : typeof err;
      const message = err instanceof Error ? err.message : String(err);
      outcome = { cls: typed ? "typed" : "untyped", name, message: message.slice(0, 300) };
      // Every error about a file must name it (the case's mutated file, or its directory).
      if (typed && err.name === "ModelFormatError" && !message.includes(c.dir)) {
        outcome = { cls: "untyped", name: "ModelFormatError without the path", message: message.slice(0, 300) };
      }
    }
    process.stdout.write(`${JSON.stringify(outcome)}\n`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Seeds: what is mutated, and how each is loaded.

/** The harness's random choices, from the tests' xorshift32 generator, so a run reproduces from its seed. */
function makeRng(seed) {
  const next = makeRandom(seed);
  const int = (n) => Math.floor(next() * n);
  return { next, int, pick: (items) => items[int(items.length)] };
}

/** A tiny HF directory (tied F32 safetensors, stories260K's 512-token vocab size). */
function writeHfSeed(dir) {
  const { hfLayerTensors, writeSafetensors } = require(path.join(ROOT, "test/helpers/tiny-hf-model.js"));
  const dim = 16, hidden = 32, vocab = 512;
  const t = (...shape) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01) });
  writeSafetensors(path.join(dir, "model.safetensors"), {
    "model.embed_tokens.weight": t(vocab, dim),
    "model.norm.weight": t(dim),
    ...hfLayerTensors(0, { dim, kvDim: dim / 2, hidden }, t, t),
  });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({
    architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: dim, intermediate_size: hidden,
    num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
    rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: vocab, bos_token_id: 1, eos_token_id: 2, tie_word_embeddings: true,
  }));
}

/** A tiny Meta checkpoint directory (params.json, consolidated.00.pth of F32 tensors, 512-token vocab size). */
function writeMetaSeed(dir) {
  const { statePickle, zip } = require(path.join(ROOT, "test/helpers/torch-checkpoint.js"));
  const dim = 8, hidden = 32, vocab = 512;
  const specs = [
    ["tok_embeddings.weight", [vocab, dim]], ["norm.weight", [dim]], ["output.weight", [vocab, dim]],
    ["layers.0.attention.wq.weight", [dim, dim]], ["layers.0.attention.wk.weight", [dim / 2, dim]],
    ["layers.0.attention.wv.weight", [dim / 2, dim]], ["layers.0.attention.wo.weight", [dim, dim]],
    ["layers.0.feed_forward.w1.weight", [hidden, dim]], ["layers.0.feed_forward.w2.weight", [dim, hidden]],
    ["layers.0.feed_forward.w3.weight", [hidden, dim]], ["layers.0.attention_norm.weight", [dim]],
    ["layers.0.ffn_norm.weight", [dim]],
  ];
  const tensors = specs.map(([name, shape], i) => ({ name, key: String(i), shape, numel: shape.reduce((a, b) => a * b, 1) }));
  const storages = tensors.map((t) => [`archive/data/${t.key}`, Buffer.from(new Float32Array(t.numel).fill(0.01).buffer)]);
  const entries = [["archive/data.pkl", statePickle(tensors)], ...storages, ["archive/version", Buffer.from("3\n")]];
  fs.writeFileSync(path.join(dir, "consolidated.00.pth"), zip(entries));
  fs.writeFileSync(path.join(dir, "params.json"), JSON.stringify({ dim, multiple_of: 16, n_heads: 2, n_kv_heads: 1, n_layers: 1, norm_eps: 1e-5, vocab_size: vocab }));
}

/**
 * Mutation targets: the file mutated (`file`, inside `dir`; the model is `dir` itself when directoryModel), its
 * mutation style, how the case is loaded, and a weight (the 9 MB tokenizer.json takes seconds a load, so it is tried less often).
 */
function buildTargets(seedDir) {
  const { writeTinyModel } = require(path.join(ROOT, "test/helpers/tiny-model.js"));
  const tok512 = modelPath("tinystories", "tok512.bin");
  const hfDir = path.join(seedDir, "hf");
  const metaDir = path.join(seedDir, "meta");
  fs.mkdirSync(hfDir);
  fs.mkdirSync(metaDir);
  writeHfSeed(hfDir);
  writeMetaSeed(metaDir);
  const ggufModel = writeTinyModel({ dim: 16, layers: 2, heads: 4, kvHeads: 2, hidden: 32 });
  const model = (name, dir, file, style, extra = {}) => ({
    name, kind: "model", dir, file, style, tokenizer: tok512, weight: 1, directoryModel: dir === hfDir || dir === metaDir, ...extra,
  });
  const tokenizer = (name, file, style, weight = 1) => ({ name, kind: "tokenizer", dir: path.dirname(file), file, style, weight });
  return [
    model("GGUF model", path.dirname(ggufModel), ggufModel, "gguf", { tokenizer: undefined }),
    model("llama2.c model", path.dirname(modelPath("tinystories", "stories260K.bin")), modelPath("tinystories", "stories260K.bin"), "llama2c"),
    model("HF config.json", hfDir, path.join(hfDir, "config.json"), "json"),
    model("HF model.safetensors", hfDir, path.join(hfDir, "model.safetensors"), "safetensors"),
    model("Meta params.json", metaDir, path.join(metaDir, "params.json"), "json"),
    model("Meta consolidated.00.pth", metaDir, path.join(metaDir, "consolidated.00.pth"), "binary"),
    tokenizer("tok512.bin", tok512, "binary"),
    tokenizer("llama2 tokenizer.bin", modelPath("llama2", "tokenizer.bin"), "binary"),
    tokenizer("llama2 tokenizer.model", modelPath("llama2", "tokenizer.model"), "binary"),
    tokenizer("llama3 tokenizer.model (tiktoken)", modelPath("llama3", "tokenizer.model"), "binary", 0.5),
    tokenizer("llama3 tokenizer.json", modelPath("llama3", "tokenizer.json"), "json", 0.2),
    tokenizer("vocab GGUF (SPM)", modelPath("vocab", "ggml-vocab-llama-spm.gguf"), "gguf"),
    tokenizer("vocab GGUF (BPE)", modelPath("vocab", "ggml-vocab-deepseek-coder.gguf"), "gguf"),
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// Mutations.

/** Integers that break size arithmetic: zero, one, sign flips, the int32/uint32/2^53 edges, huge counts. */
const INTERESTING_INTS = [0n, 1n, -1n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 10n ** 9n, 2n ** 40n, 2n ** 53n + 1n, 2n ** 63n, -(2n ** 31n)];
const INTERESTING_JSON = [0, -1, 1e9, 2 ** 53, 1e308, -1e9, 0.5, null, "x", [], {}, true, "9".repeat(400), [1e9], { a: 1e9 }];

/** A byte position, most often in the first 64 KiB (headers, metadata) or the last 4 KiB (a ZIP's directory). */
function position(rng, size) {
  const r = rng.next();
  if (r < 0.6) return rng.int(Math.min(size, 65536));
  if (r < 0.75) return Math.max(0, size - 1 - rng.int(Math.min(size, 4096)));
  return rng.int(size);
}

function writeInt(bytes, offset, width, value) {
  const bits = BigInt.asUintN(width * 8, value);
  for (let i = 0; i < width && offset + i < bytes.length; i++) bytes[offset + i] = Number((bits >> BigInt(8 * i)) & 0xffn);
}

/** Byte offsets and widths of a GGUF's integer fields: metadata integers, tensor dimension counts, dims and offsets. */
function ggufIntFields(file) {
  const { readGguf } = require(path.join(ROOT, "dist/cjs/formats/gguf.js"));
  const { ggufValueAt, INT_WIDTHS } = require(path.join(ROOT, "test/helpers/gguf-patch.js"));
  const bytes = fs.readFileSync(file);
  const g = readGguf(file);
  const fields = [{ offset: 8, width: 8 }, { offset: 16, width: 8 }]; // tensor count, key/value count
  for (const key of g.metadata.keys()) {
    const { type, offset } = ggufValueAt(bytes, key);
    if (INT_WIDTHS.has(type)) fields.push({ offset, width: INT_WIDTHS.get(type) });
    if (type === 9) fields.push({ offset: offset + 4, width: 8 }); // an array's item count
  }
  for (const t of g.tensors) {
    const name = Buffer.from(t.name);
    const at = bytes.indexOf(name, 24) + name.length;
    fields.push({ offset: at, width: 4 });
    t.dims.forEach((_, i) => fields.push({ offset: at + 4 + 8 * i, width: 8 }));
    fields.push({ offset: at + 4 + 8 * t.dims.length, width: 4 }, { offset: at + 8 + 8 * t.dims.length, width: 8 });
  }
  return fields;
}

const LLAMA2C_FIELDS = [0, 4, 8, 12, 16, 20, 24].map((offset) => ({ offset, width: 4 }));

function mutateBinary(rng, bytes, intFields) {
  switch (rng.int(intFields ? 4 : 3)) {
    case 0: {
      for (let n = 1 + rng.int(8); n > 0; n--) {
        const at = position(rng, bytes.length);
        bytes[at] ^= 1 << rng.int(8);
      }
      return bytes;
    }
    case 1: {
      const at = position(rng, bytes.length);
      const fill = rng.pick([0x00, 0xff, 0x7f, 0x80, -1]);
      for (let i = at, end = Math.min(bytes.length, at + 1 + rng.int(16)); i < end; i++) bytes[i] = fill < 0 ? rng.int(256) : fill;
      return bytes;
    }
    case 2:
      return bytes.subarray(0, position(rng, bytes.length));
    default: {
      const { offset, width } = rng.pick(intFields);
      writeInt(bytes, offset, width, rng.pick(INTERESTING_INTS));
      return bytes;
    }
  }
}

/** Replaces, deletes or adds one value at a random place in a parsed JSON document. */
function mutateJsonValue(rng, doc) {
  let node = doc;
  for (let depth = 0; depth < 6; depth++) {
    const keys = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
    if (keys.length === 0) break;
    const key = keys.length > 64 && rng.next() < 0.5 ? keys[rng.int(64)] : rng.pick(keys);
    const child = node[key];
    if (child !== null && typeof child === "object" && rng.next() < 0.7) {
      node = child;
      continue;
    }
    const r = rng.next();
    if (r < 0.75) node[key] = rng.pick(INTERESTING_JSON);
    else if (r < 0.9 && !Array.isArray(node)) delete node[key];
    else if (Array.isArray(node)) node.push(rng.pick(INTERESTING_JSON));
    else node[`${String(key)}_${rng.int(100)}`] = rng.pick(INTERESTING_JSON);
    return;
  }
}

function mutateJson(rng, bytes) {
  let doc;
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch {
    doc = undefined; // an earlier byte-level mutation broke it: keep mutating bytes
  }
  if (doc === null || typeof doc !== "object" || rng.next() < 0.2) return mutateBinary(rng, bytes);
  for (let n = 1 + rng.int(3); n > 0; n--) mutateJsonValue(rng, doc);
  return Buffer.from(JSON.stringify(doc));
}

/** Mutates the JSON header of a safetensors file (or, at times, its bytes), keeping the tensor data. */
function mutateSafetensors(rng, bytes) {
  if (rng.next() < 0.3) return mutateBinary(rng, bytes);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = mutateJson(rng, bytes.subarray(8, 8 + headerLength));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, header, bytes.subarray(8 + headerLength)]);
}

function mutate(rng, target, bytes) {
  switch (target.style) {
    case "json": return mutateJson(rng, bytes);
    case "safetensors": return mutateSafetensors(rng, bytes);
    case "gguf": return mutateBinary(rng, bytes, target.intFields);
    case "llama2c": return mutateBinary(rng, bytes, LLAMA2C_FIELDS);
    default: return mutateBinary(rng, bytes);
  }
}

/** Writes one mutated case: its own directory, the mutated file, links to the rest of a directory model. */
function writeCase(rng, target, caseDir) {
  fs.mkdirSync(caseDir);
  const name = path.basename(target.file);
  if (target.directoryModel) {
    for (const f of fs.readdirSync(target.dir)) if (f !== name) fs.symlinkSync(path.join(target.dir, f), path.join(caseDir, f));
  } else if (name === "tokenizer.json") {
    fs.symlinkSync(path.join(target.dir, "tokenizer_config.json"), path.join(caseDir, "tokenizer_config.json"));
  }
  let bytes = Buffer.from(fs.readFileSync(target.file));
  for (let n = 1 + rng.int(2); n > 0; n--) bytes = mutate(rng, target, bytes.length > 0 ? bytes : Buffer.alloc(1));
  const file = path.join(caseDir, name);
  fs.writeFileSync(file, bytes);
  return { kind: target.kind, path: target.directoryModel ? caseDir : file, dir: caseDir, tokenizer: target.tokenizer };
}

// ---------------------------------------------------------------------------------------------------------------
// Parent: runs batches in child processes until the time is up, then prints the summary.

/** Runs `cases` in one child; returns one outcome per case it got to (a crash or hang ends the batch there). */
function runBatch(cases, casesFile, heapMb, caseTimeoutMs) {
  fs.writeFileSync(casesFile, JSON.stringify(cases));
  return new Promise((resolve) => {
    const outcomes = [];
    const child = spawn(process.execPath, [`--max-old-space-size=${heapMb}`, __filename, "--child", casesFile], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let hung = false;
    let timer;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        hung = true;
        child.kill("SIGKILL");
      }, caseTimeoutMs);
    };
    arm();
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      for (let nl = stdout.indexOf("\n"); nl >= 0; nl = stdout.indexOf("\n")) {
        outcomes.push(JSON.parse(stdout.slice(0, nl)));
        stdout = stdout.slice(nl + 1);
        arm();
      }
    });
    child.stderr.on("data", (chunk) => {
      stderr = (stderr + chunk).slice(-2000);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (outcomes.length < cases.length) {
        const cls = hung ? "hang" : signal ? "signal" : "untyped";
        const name = hung ? `no result in ${caseTimeoutMs / 1000} s` : signal ?? `child exited with code ${code}`;
        outcomes.push({ cls, name, message: stderr.trim().split("\n").slice(-3).join(" | ") });
      }
      resolve(outcomes);
    });
  });
}

const CLASSES = ["loaded", "typed", "untyped", "signal", "hang"];

function printTable(summary) {
  const rows = [["seed file", "tried", ...CLASSES]];
  for (const [name, s] of Object.entries(summary.targets)) rows.push([name, s.tried, ...CLASSES.map((c) => s[c])]);
  rows.push(["total", summary.tried, ...CLASSES.map((c) => summary.totals[c])]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const r of rows) console.log(r.map((v, i) => (i === 0 ? String(v).padEnd(widths[i]) : String(v).padStart(widths[i]))).join("  "));
  console.log(`typed errors by class: ${Object.entries(summary.typedByName).map(([n, k]) => `${n} ${k}`).join(", ") || "none"}`);
}

async function main() {
  if (args.child) return runChild(args.child);
  const seconds = Number(args.seconds);
  const seed = args.seed === undefined ? Date.now() % 2 ** 31 : Number(args.seed);
  const perChild = Number(args["per-child"]);
  const heapMb = Number(args.heap);
  const caseTimeoutMs = Number(args["case-timeout"]) * 1000;
  if (![seconds, seed, perChild, heapMb, caseTimeoutMs].every((v) => Number.isInteger(v) && v >= 0) || perChild < 1) {
    console.error("usage: fuzz.js [--seconds N] [--seed S] [--per-child N] [--heap MB] [--case-timeout S] [--json]");
    process.exit(2);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-fuzz-"));
  const failures = path.join(os.tmpdir(), `llama-napi-fuzz-failures-${seed}`);
  process.on("exit", () => fs.rmSync(work, { recursive: true, force: true }));
  const seedDir = path.join(work, "seeds");
  fs.mkdirSync(seedDir);
  const targets = buildTargets(seedDir);
  for (const t of targets) if (t.style === "gguf") t.intFields = ggufIntFields(t.file);

  // Every unmutated seed must load: otherwise the outcomes below say nothing about mutations.
  const seedCases = targets.map((t) => ({ kind: t.kind, path: t.directoryModel ? t.dir : t.file, dir: t.dir, tokenizer: t.tokenizer }));
  const seedOutcomes = await runBatch(seedCases, path.join(work, "seeds.json"), heapMb, caseTimeoutMs);
  seedOutcomes.forEach((o, i) => {
    if (o.cls !== "loaded") throw new Error(`seed ${targets[i].name} does not load unmutated: ${o.name}: ${o.message}`);
  });

  const rng = makeRng(seed);
  const totalWeight = targets.reduce((n, t) => n + t.weight, 0);
  const pickTarget = () => {
    let r = rng.next() * totalWeight;
    return targets.find((t) => (r -= t.weight) < 0) ?? targets[targets.length - 1];
  };
  const summary = { seed, seconds, tried: 0, targets: {}, totals: Object.fromEntries(CLASSES.map((c) => [c, 0])), typedByName: {}, failures: [] };
  for (const t of targets) summary.targets[t.name] = { tried: 0, ...Object.fromEntries(CLASSES.map((c) => [c, 0])) };

  const deadline = Date.now() + seconds * 1000;
  let caseNumber = 0;
  let pending = [];
  while (Date.now() < deadline || pending.length > 0) {
    while (pending.length < perChild && Date.now() < deadline) {
      const target = pickTarget();
      const caseDir = path.join(work, `case-${caseNumber++}`);
      pending.push({ target, caseDir, spec: writeCase(rng, target, caseDir) });
    }
    const outcomes = await runBatch(pending.map((p) => p.spec), path.join(work, "cases.json"), heapMb, caseTimeoutMs);
    outcomes.forEach((o, i) => {
      const { target, caseDir } = pending[i];
      const s = summary.targets[target.name];
      s.tried++;
      s[o.cls]++;
      summary.tried++;
      summary.totals[o.cls]++;
      if (o.cls === "typed") summary.typedByName[o.name] = (summary.typedByName[o.name] ?? 0) + 1;
      if (args.verbose) console.error(`${target.name}: ${o.cls}${o.name ? ` ${o.name}: ${o.message}` : ""}`);
      if (o.cls !== "loaded" && o.cls !== "typed") {
        const kept = path.join(failures, path.basename(caseDir));
        fs.mkdirSync(failures, { recursive: true });
        fs.cpSync(caseDir, kept, { recursive: true, verbatimSymlinks: true });
        summary.failures.push({ seedFile: target.name, outcome: o, input: kept });
      }
    });
    // A crash or hang ends a batch early: the cases after it go to the next child.
    for (const p of pending.slice(0, outcomes.length)) fs.rmSync(p.caseDir, { recursive: true, force: true });
    pending = pending.slice(outcomes.length);
  }

  if (args.json) console.log(JSON.stringify(summary));
  else {
    console.log(`fuzz: seed ${seed}, ${seconds} s, ${summary.tried} mutated files, heap ${heapMb} MB, ${caseTimeoutMs / 1000} s per file`);
    printTable(summary);
    for (const f of summary.failures) console.log(`FAIL ${f.outcome.cls} (${f.seedFile}): ${f.outcome.name}: ${f.outcome.message}\n  input kept in ${f.input}`);
  }
  process.exitCode = summary.failures.length > 0 ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
