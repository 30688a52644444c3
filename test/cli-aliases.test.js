"use strict";
// The seeds' option names (OPTION_ALIASES in lib/cli/args.ts), each tested by what it does: the model it loads, the
// tokens it generates, the context it sets, the server slots it makes, the file type it writes.
const { test, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { writeConstantOutputModel } = require("./helpers/tiny-model.js");
const { metricValue, scrape, spawnServe } = require("./helpers/server.js");
const { readGguf } = require("../dist/cjs/formats/gguf.js");
const { cudaInfo } = require("../dist/cjs/native/engine.js");
const { OPTION_ALIASES } = require("../dist/cjs/cli/args.js");

const CLI = path.join(__dirname, "..", "dist", "cjs", "cli", "main.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-aliases-"));
after(() => fs.rmSync(work, { recursive: true, force: true }));
const ENV = { ...process.env, LLAMA_NAPI_CACHE: path.join(work, "cache"), HF_HUB_OFFLINE: "1" };
const cli = (...args) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", input: "", env: ENV });

/** `run ARGS --json` (greedy unless ARGS sample), its completion. */
function runJson(...args) {
  const r = cli("run", "-t", "1", "--json", ...args);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** A model no default could be mistaken for: whatever the prompt, token 100 is the argmax. */
const CONSTANT = writeConstantOutputModel({ 100: 8 });
const GREEDY = ["--temp", "0", "-p", "Once upon", "-n", "6"];

test("--model-path, --weight-path and --ckpt_dir load the model they name", () => {
  for (const flag of ["--model-path", "--weight-path", "--ckpt_dir"]) {
    assert.deepEqual(runJson(flag, CONSTANT, ...GREEDY).tokens, Array(6).fill(100), flag);
  }
  assert.notDeepEqual(runJson(...GREEDY).tokens, Array(6).fill(100), "the default model differs");
});

test("--save-to-serialized-model-path writes the model, and --serialized-model-path loads it", () => {
  const file = path.join(work, "constant.llnm");
  const saved = runJson("--model", CONSTANT, "--save-to-serialized-model-path", file, ...GREEDY);
  assert.ok(fs.existsSync(file));
  const loaded = runJson("--serialized-model-path", file, ...GREEDY);
  assert.deepEqual(loaded.tokens, saved.tokens);
  assert.deepEqual(loaded.tokens, Array(6).fill(100));
  for (const command of ["chat", "serve"]) assert.match(cli(command, "--help").stdout, /--save-to-serialized-model-path FILE/, command);
});

test("--tokenizer-path and --tokenizer_path give a llama2.c model its tokenizer", NEEDS_REFERENCE_MODELS, () => {
  const model = modelPath("tinystories", "stories260K.bin");
  const tokenizer = modelPath("tinystories", "tok512.bin");
  const without = cli("run", "-t", "1", "--model", model, ...GREEDY);
  assert.equal(without.status, 1);
  assert.match(without.stderr, /no tokenizer found/);
  const expected = runJson("--model", model, "--tokenizer", tokenizer, ...GREEDY);
  for (const flag of ["--tokenizer-path", "--tokenizer_path"]) {
    assert.deepEqual(runJson("--model", model, flag, tokenizer, ...GREEDY).tokens, expected.tokens, flag);
  }
});

test("--max-new-tokens and --max_gen_len set the tokens generated; --max-new-tokens -1 runs to the end of the context", () => {
  const args = ["--model", CONSTANT, "--temp", "0", "-p", "Once", "--ignore-eos"];
  assert.equal(runJson(...args, "--max-new-tokens", "5").tokens.length, 5);
  assert.equal(runJson(...args, "--max_gen_len", "3").tokens.length, 3);
  // Every position of the context is evaluated; the last one's logits give one more token, which needs no position.
  for (const ctx of ["--max-length", "--max_seq_len"]) {
    const all = runJson(...args, "--max-new-tokens", "-1", ctx, "24");
    assert.equal(all.stats.promptTokens + all.tokens.length, 24 + 1, ctx);
    assert.equal(all.finishReason, "length");
  }
  assert.equal(runJson(...args, "--max-tokens=-1", "--ctx-size", "20").tokens.length, 20 + 1 - 2, "2 prompt tokens (BOS, Once)");
  assert.equal(cli("run", "--max-new-tokens", "-2").status, 2);
  // chat's session drops its middle when full, so there -1 is one context's worth of answer.
  const chat = spawnSync(process.execPath, [CLI, "chat", "-t", "1", "--model", CONSTANT, "--json", "--ignore-eos", "--max-new-tokens", "-1", "--max-length", "32"], {
    encoding: "utf8", input: "Hi\n", env: ENV,
  });
  assert.equal(chat.status, 0, chat.stderr);
  assert.equal(JSON.parse(chat.stdout).tokens.length, 32);
});

test("--max-length and --max_seq_len are the context size: a longer prompt overflows it", () => {
  const prompt = "one two three four five six seven eight nine ten eleven twelve";
  for (const flag of ["--max-length", "--max_seq_len"]) {
    const r = cli("run", "-t", "1", "--model", CONSTANT, flag, "8", "-p", prompt);
    assert.equal(r.status, 1, flag);
    assert.match(r.stderr, /ContextOverflowError: .* the context holds 8/, flag);
  }
});

test("--top_p is --top-p: a tiny nucleus samples the greedy tokens", () => {
  const greedy = runJson("--temp", "0", "-p", "Once upon a time", "-n", "12").tokens;
  const nucleus = runJson("--temp", "1.5", "--seed", "4", "--top_p", "1e-6", "-p", "Once upon a time", "-n", "12").tokens;
  assert.deepEqual(nucleus, greedy);
  const sampled = (...flag) => runJson("--temp", "1", "--seed", "9", "--top-k", "0", ...flag, "-p", "Once upon a time", "-n", "12").tokens;
  assert.deepEqual(sampled("--top_p", "0.6"), sampled("--top-p", "0.6"));
});

test("--quantization-encoding: quantize's type, and run's default model in that type (made once into the cache)", () => {
  const out = path.join(work, "q8.gguf");
  const q = cli("quantize", DEFAULT_MODEL, out, "--quantization-encoding", "q8_0", "--json");
  assert.equal(q.status, 0, q.stderr);
  assert.equal(JSON.parse(q.stdout).type, "q8_0");
  const completion = runJson("--quantization-encoding", "q8_0", ...GREEDY);
  assert.equal(completion.tokens.length, 6);
  const cached = path.join(ENV.LLAMA_NAPI_CACHE, "default-model", "stories260K.q8_0.gguf");
  const types = readGguf(cached).tensors.map((t) => t.ggmlType);
  assert.ok(types.includes(8), "holds q8_0 tensors (ggml type 8)");
  const f32 = runJson("--quantization-encoding", "f32", ...GREEDY);
  assert.deepEqual(f32.tokens, runJson(...GREEDY).tokens, "f32 is the packaged model itself");
  const withModel = cli("run", "--model", CONSTANT, "--quantization-encoding", "q8_0");
  assert.equal(withModel.status, 2);
  assert.match(withModel.stderr, /default model/);
});

test("--use-gpu is --device cuda", () => {
  const r = cli("run", "-t", "1", "--use-gpu", ...GREEDY, "--json");
  if (cudaInfo().devices === 0) {
    assert.equal(r.status, 1);
    assert.match(r.stderr, /DeviceError: device "cuda" was asked for/);
  } else {
    assert.equal(r.status, 0, r.stderr);
  }
  assert.equal(cli("run", "--use-gpu", "--device", "cpu").status, 2, "the alias and its option together");
});

test("--max-cache-batch-size and --max_batch_size are serve's --parallel (its slots)", async () => {
  for (const flag of ["--max-cache-batch-size", "--max_batch_size"]) {
    const served = spawnServe([flag, "3"], DEFAULT_MODEL);
    try {
      assert.equal(metricValue(await scrape(await served.url), "llama_napi_slots"), 3, flag);
    } finally {
      served.child.kill("SIGTERM");
      await served.exited;
    }
  }
});

test("run --batch-file completes each prompt as a single run does; --max_batch_size groups them", () => {
  const prompts = ["Once upon a time", "The little dog", "Lily and Ben"];
  const lines = path.join(work, "prompts.txt");
  fs.writeFileSync(lines, `${prompts.join("\n")}\n\n`);
  const json = path.join(work, "prompts.json");
  fs.writeFileSync(json, JSON.stringify(prompts));
  const single = prompts.map((p) => runJson("--temp", "0", "-n", "8", "-p", p).tokens);
  for (const args of [["--batch-file", lines], ["--batch-file", json, "--max_batch_size", "2"]]) {
    const r = cli("run", "-t", "1", "--temp", "0", "-n", "8", "--json", ...args);
    assert.equal(r.status, 0, r.stderr);
    const results = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(results.map((c) => c.prompt), prompts);
    assert.deepEqual(results.map((c) => c.tokens), single, args.join(" "));
  }
  const text = cli("run", "-t", "1", "--temp", "0", "-n", "8", "--batch-file", lines);
  assert.equal(text.status, 0, text.stderr);
  assert.equal(text.stdout.split("==================================").length, prompts.length + 1);
  assert.ok(text.stdout.startsWith(`${prompts[0]}\n> `));
  assert.equal(cli("run", "--parallel", "2", "-p", "x").status, 2, "--parallel needs --batch-file");
});

test("serve --huggingface-repo-id REPO is --model hf:REPO; run has no such alias", () => {
  const r = spawnSync(process.execPath, [CLI, "serve", "--huggingface-repo-id", "someone/missing-model", "--port", "0"], { encoding: "utf8", env: ENV });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /hf:someone\/missing-model/);
  assert.equal(cli("run", "--huggingface-repo-id", "someone/missing-model").status, 2);
});

test("--help lists every alias a command takes, with the option it stands for", () => {
  for (const command of ["run", "chat", "serve", "quantize"]) {
    const spec = require(`../dist/cjs/cli/${command}.js`)[`${command}Command`];
    const help = cli(command, "--help").stdout;
    for (const a of OPTION_ALIASES.filter((alias) => alias.from !== undefined)) {
      const takes = Object.hasOwn(spec.options, a.option) && (a.commands === undefined || a.commands.includes(command));
      assert.equal(new RegExp(`--${a.flag}\\b.* = --${a.option}\\b`).test(help), takes, `${command} --help and --${a.flag}`);
    }
  }
  assert.match(cli("serve", "--help").stdout, /--huggingface-repo-id REPO +=/);
});
