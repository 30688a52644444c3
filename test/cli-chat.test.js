"use strict";
// `llama-napi chat` driven through a pipe: turns, multi-line input, /save, /reset, Ctrl-C stopping an answer.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");
if (skipFileWithoutReferenceModels()) return;

const CLI = path.join(__dirname, "..", "dist", "cjs", "cli", "main.js");
const MODEL = modelPath("trained", "sotu-l2-23m");

function startChat(args) {
  const child = spawn(process.execPath, [CLI, "chat", "--model", MODEL, "--threads", "2", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on("close", (code) => resolve(code)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

test("chat: turns, a multi-line message, /save and /reset, /exit", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-chat-"));
  const file = path.join(dir, "conversation.session");
  const { child, exited, out, err } = startChat(["--temperature", "0", "--max-tokens", "6", "--system", "Be brief."]);
  child.stdin.end(['Hello.', '"""', "first line", "second line", '"""', `/save ${file}`, "/reset", "Again\\", "continued", "/exit", "ignored"].join("\n") + "\n");
  assert.equal(await exited, 0, err());
  assert.match(out(), /\(saved to .*conversation\.session\)/);
  assert.match(out(), /\(conversation reset\)/);
  assert.ok(fs.statSync(file).size > 1000, "the session file holds the KV cache");

  // The saved conversation continues where it stopped.
  const restored = startChat(["--temperature", "0", "--max-tokens", "4", "--restore", file]);
  restored.child.stdin.end("Go on.\n");
  assert.equal(await restored.exited, 0, restored.err());
  fs.rmSync(dir, { recursive: true, force: true });
});

test("chat: Ctrl-C stops the answer being written and the chat goes on; end of input exits", async () => {
  const { child, exited, out, err } = startChat(["--temperature", "0", "--max-tokens", "100000", "--ignore-eos", "--ctx-size", "256"]);
  child.stdin.write("Tell me everything.\n");
  // Wait for the answer to start streaming, then interrupt it.
  while (out().length < 40) await new Promise((r) => setTimeout(r, 50));
  child.kill("SIGINT");
  while (!out().includes("[stopped]")) await new Promise((r) => setTimeout(r, 50));
  child.stdin.end("/exit\n");
  assert.equal(await exited, 0, err());
});
