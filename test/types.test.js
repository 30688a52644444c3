"use strict";
// The package's type declarations compile in a strict TypeScript project that has neither the DOM nor @types/node
// typings (lib ["es2022"], types [], skipLibCheck false), through require (CommonJS) and import (ESM, nodenext).
const { test, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const ROOT = path.resolve(__dirname, "..");
const TSC = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-types-"));
after(() => fs.rmSync(work, { recursive: true, force: true }));
fs.mkdirSync(path.join(work, "node_modules"));
fs.symlinkSync(ROOT, path.join(work, "node_modules", "llama-napi"), "dir");

/** A user's code over the public API: options with a signal, a disposable model and session, tools, embeddings, the error classes. */
const USER_CODE = (specifier) => `import { loadModel, InvalidArgumentError, type GenerateOptions } from "${specifier}";

export async function main(signal: GenerateOptions["signal"]): Promise<string> {
  await using model = await loadModel("model.gguf", { threads: 1 });
  using session = await model.createSession();
  let text = "";
  for await (const t of model.generate("Once", { maxTokens: 4, signal })) text += t.text;
  const reply = await session.prompt("Hi", { maxTokens: 4, tools: [{ name: "get_time" }] });
  const calls = reply.toolCalls?.map((call) => call.name).join() ?? "";
  const [vector] = await model.embed(["Hi"], { pooling: "mean" });
  return text + reply.text + calls + String(vector.length) + String(new InvalidArgumentError("x") instanceof Error);
}
`;

function compile(name, compilerOptions, file, code) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, file), code);
  const options = { target: "es2022", lib: ["es2022"], types: [], strict: true, skipLibCheck: false, noEmit: true, ...compilerOptions };
  fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions: options, files: [file] }));
  return spawnSync(process.execPath, [TSC, "-p", dir], { encoding: "utf8" });
}

test("the declarations compile with lib es2022 and no DOM or Node typings: CommonJS", () => {
  const r = compile("cjs", { module: "commonjs", moduleResolution: "node10" }, "use.ts", USER_CODE("llama-napi"));
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test("the declarations compile with lib es2022 and no DOM or Node typings: ESM (nodenext)", () => {
  const r = compile("esm", { module: "nodenext", moduleResolution: "nodenext" }, "use.mts", USER_CODE("llama-napi"));
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
