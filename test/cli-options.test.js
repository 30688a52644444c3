"use strict";
// The options every command shares: -t is threads everywhere, values checked before any model loads (a usage
// error exits 2 with nothing on stdout), --version, --offline, and run's prompt sources, --stop and --system.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { DEFAULT_MODEL: STORIES } = require("./helpers/models.js");

const ROOT = path.resolve(__dirname, "..");
const CLI = path.join(ROOT, "dist", "cjs", "cli", "main.js");
const cli = (args, input) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", input: input ?? "" });

// The commands that load a model, with the arguments each needs besides the option under test.
const MODEL_COMMANDS = {
  run: [],
  chat: [],
  serve: ["--port", "0"],
  bench: ["--pp", "8", "--tg", "4", "-r", "1"],
  perplexity: ["--file", __filename],
};

test("--version prints the package's version", () => {
  const r = cli(["--version"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `llama-napi ${require("../package.json").version}\n`);
});

test("-t is --threads in every command, and --temp / --temperature is the temperature", () => {
  for (const command of [...Object.keys(MODEL_COMMANDS), "quantize", "convert"]) {
    const help = cli([command, "--help"]);
    assert.equal(help.status, 0, command);
    assert.match(help.stdout, /-t, --threads /, command);
  }
  for (const command of ["run", "chat"]) assert.match(cli([command, "--help"]).stdout, / {4}--temperature, --temp T /, command);
  // -t 0 is a thread count, refused as one (it was temperature 0 in run).
  const zero = cli(["run", "-m", STORIES, "-t", "0", "-p", "hi"]);
  assert.equal(zero.status, 2);
  assert.match(zero.stderr, /--threads: threads must be a positive integer \(got 0\)\n$/);
  // --temp and --temperature are one option: the same greedy text either way; both at once is a usage error.
  const run = (...extra) => cli(["run", "-m", STORIES, "-p", "Once upon a time", "-n", "12", "-t", "1", ...extra]);
  const temp = run("--temp", "0");
  assert.equal(temp.status, 0, temp.stderr);
  assert.equal(run("--temperature", "0").stdout, temp.stdout);
  assert.equal(run("--temp", "0", "--temperature", "0").status, 2);
});

test("bad option values are usage errors (exit 2, nothing on stdout) found before the model loads", () => {
  // A model path that does not exist: a check made only at load would show as exit 1 and a ModelFormatError.
  const missing = "/nonexistent/model.gguf";
  const cases = [
    [["run", "-m", missing, "--top-p", "2", "-p", "hi"], /--top-p: topP must be in \(0, 1\] \(got 2\)/],
    [["run", "-m", missing, "--temp=-1"], /--temperature: temperature must be/],
    [["run", "-m", missing, "--min-p", "1.5"], /--min-p: minP must be in \[0, 1\]/],
    [["run", "-m", missing, "--top-k=-3"], /--top-k: topK must be an integer >= 0/],
    [["run", "-m", missing, "--repeat-penalty", "0"], /--repeat-penalty: repeatPenalty must be/],
    [["run", "-m", missing, "--max-tokens", "0"], /--max-tokens: maxTokens must be a positive integer/],
    [["run", "-m", missing, "--seed", "1e300"], /--seed: seed must be a safe integer/],
    [["run", "-m", missing, "--ctx-size=-5"], /--ctx-size: contextSize must be a positive integer/],
    [["run", "-m", missing, "--stop", ""], /--stop: /],
    [["run", "-m", missing, "--prompt", "a", "--file", __filename], /--prompt or --file, not both/],
    [["chat", "-m", missing, "--top-p", "0"], /--top-p: topP/],
    [["chat", "-m", missing, "--threads", "1.5"], /--threads must be an integer/],
    [["serve", "-m", missing, "-c", "0"], /--ctx-size: contextSize/],
    [["serve", "-m", missing, "-t", "0"], /--threads: threads/],
    [["bench", "-m", missing, "-t", "2,0"], /--threads/],
    [["bench", "-m", missing, "--pp=-1"], /--pp: pp must be an integer >= 0/],
    [["bench", "-m", missing, "-r", "0"], /--repetitions: repetitions must be an integer >= 1/],
    [["perplexity", "-m", missing, "-f", __filename, "--ctx", "7"], /--ctx: perplexity: contextSize must be an even integer/],
    [["perplexity", "-m", missing, "-f", __filename, "-t", "0"], /--threads: threads/],
    [["perplexity", "-m", missing, "-f", __filename, "--chunks", "0"], /--chunks: perplexity: maxWindows must be a positive integer/],
    [["info", missing, "--ctx-size", "0"], /--ctx-size: contextSize/],
    [["run", "-m", missing, "--kv-type", "f17"], /--kv-type: kvCacheType must be "f32", "f16" or "q8_0" \(got f17\)/],
    [["chat", "-m", missing, "--kv-tokens", "0"], /--kv-tokens: kvCacheTokens must be a positive integer/],
    [["serve", "-m", missing, "--kv-type", "q4_0"], /--kv-type: kvCacheType/],
    [["info", missing, "--kv-tokens=-1"], /--kv-tokens: kvCacheTokens/],
    [["quantize", missing, "out.gguf", "--type", "q8_0", "-t", "0"], /--threads: threads/],
  ];
  for (const [args, message] of cases) {
    const r = cli(args);
    assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stdout, "", args.join(" "));
    assert.match(r.stderr, message, args.join(" "));
    assert.ok(r.stderr.endsWith("\n"), args.join(" "));
  }
  // The same model path with valid options is a runtime error: exit 1, the typed error.
  const load = cli(["run", "-m", missing, "--top-p", "0.5", "-p", "hi"]);
  assert.equal(load.status, 1);
  assert.match(load.stderr, /ModelFormatError: .*\/nonexistent\/model\.gguf/);
});

test("--offline is an option of every command that takes a model", () => {
  for (const [command, extra] of Object.entries(MODEL_COMMANDS)) {
    assert.match(cli([command, "--help"]).stdout, /--offline/, command);
    // A Hub model not in an empty cache: offline, that is a DownloadError (exit 1), not an unknown option (exit 2).
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-cache-"));
    const r = spawnSync(process.execPath, [CLI, command, "-m", "hf:acme/absent/model.gguf", "--offline", ...extra], {
      encoding: "utf8", input: "", env: { ...process.env, LLAMA_NAPI_CACHE: cache, HF_ENDPOINT: "http://127.0.0.1:1" },
    });
    assert.equal(r.status, 1, `${command}: ${r.stderr}`);
    assert.match(r.stderr, /DownloadError: hf:acme\/absent\/model\.gguf is not in the cache .* offline mode is on/, command);
    fs.rmSync(cache, { recursive: true, force: true });
  }
});

test("run reads the prompt from --file or from piped standard input, as it would from --prompt", () => {
  const args = ["run", "-m", STORIES, "-n", "12", "--temp", "0", "-t", "1"];
  const fromFlag = cli([...args, "--prompt", "Once upon a time"]);
  assert.equal(fromFlag.status, 0, fromFlag.stderr);
  assert.match(fromFlag.stdout, /^Once upon a time, there was/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-prompt-"));
  const file = path.join(dir, "prompt.txt");
  fs.writeFileSync(file, "Once upon a time");
  assert.equal(cli([...args, "--file", file]).stdout, fromFlag.stdout);
  assert.equal(cli(args, "Once upon a time\n").stdout, fromFlag.stdout);
  const unreadable = cli([...args, "--file", path.join(dir, "absent.txt")]);
  assert.equal(unreadable.status, 1);
  assert.match(unreadable.stderr, /InvalidArgumentError: --file .*absent\.txt: cannot read/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("run --stop (repeatable) ends the text before the first stop string found", () => {
  const args = ["run", "-m", STORIES, "-p", "Once upon a time", "-n", "40", "--temp", "0", "-t", "1", "--json"];
  const full = JSON.parse(cli(args).stdout);
  assert.match(full.text, /^, there was a little girl named Lily\. She loved/);
  const stopped = JSON.parse(cli([...args, "--stop", "Lily", "--stop", "girl"]).stdout);
  assert.equal(stopped.text, ", there was a little ");
  assert.equal(stopped.finishReason, "stop");
  assert.equal(stopped.stopString, "girl");
});

test("run --system answers the prompt as a user turn of the chat template, as chat does", () => {
  const args = ["-m", STORIES, "--system", "Be brief.", "-n", "8", "--temp", "0", "-t", "1", "--json"];
  const run = cli(["run", ...args, "-p", "Hello."]);
  assert.equal(run.status, 0, run.stderr);
  const chat = cli(["chat", ...args], "Hello.\n");
  assert.equal(chat.status, 0, chat.stderr);
  const [fromRun, fromChat] = [JSON.parse(run.stdout), JSON.parse(chat.stdout)];
  assert.deepEqual(fromRun.tokens, fromChat.tokens);
  assert.equal(fromRun.stats.promptTokens, fromChat.stats.promptTokens);
  // Without --system the prompt is plain text: fewer prompt tokens, no template around it.
  assert.ok(JSON.parse(cli(["run", "-m", STORIES, "-p", "Hello.", "-n", "1", "-t", "1", "--json"]).stdout).stats.promptTokens < fromRun.stats.promptTokens);
});

test("chat answers an unknown /command with its help instead of sending it to the model", () => {
  const r = cli(["chat", "-m", STORIES, "--temp", "0", "-n", "4", "-t", "1", "--json"], "/frobnicate now\n/saved\nHello.\n");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim().split("\n").length, 1, "only Hello. reached the model");
  assert.match(r.stderr, /unknown command \/frobnicate\nCommands: \/reset/);
  assert.match(r.stderr, /unknown command \/saved\n/);
});
