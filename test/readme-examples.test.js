"use strict";
// Every TypeScript / JavaScript example in README.md runs: each fenced ts/js block is written to an .mjs file (they
// are plain ES modules with top-level await) in a fresh folder of a project whose node_modules/llama-napi is this
// checkout (its dist/), paths that no clone has replaced by reference-set files, and run in a child process. A block
// that cannot run here carries the line `<!-- readme-example: skip: REASON -->` right above it; the test reports each
// such block as skipped with that reason, and runs all the others.
const { test, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");

const ROOT = path.resolve(__dirname, "..");
/**
 * The paths the examples name that no clone has, and the reference-set files that stand in for them; an example
 * that names one is skipped, with the reason, where the set is absent. (The package's own model needs no stand-in:
 * the examples name it as DEFAULT_MODEL_PATH.)
 */
const PLACEHOLDERS = {
  "models/my-llama-hf": () => modelPath("trained", "sotu-l2-23m"),
};
const SKIP_MARKER = /^<!-- readme-example: skip: (.+) -->$/;

/** The ts/js blocks of the README: where each starts, the heading it is under, its code, and a skip reason. */
function readmeExamples() {
  const lines = fs.readFileSync(path.join(ROOT, "README.md"), "utf8").split("\n");
  const blocks = [];
  let heading = "README";
  for (let i = 0; i < lines.length; i++) {
    if (/^#+ /.test(lines[i])) heading = lines[i].replace(/^#+ /, "");
    const marker = SKIP_MARKER.exec(lines[i]);
    if (marker) assert.match(lines[i + 1] ?? "", /^```(ts|js)$/, `README.md:${i + 1}: a skip marker must stand right above a ts/js block`);
    const fence = /^```(\w*)$/.exec(lines[i]);
    if (!fence) continue;
    const end = lines.indexOf("```", i + 1);
    if (["ts", "js"].includes(fence[1])) {
      const skip = SKIP_MARKER.exec(lines[i - 1] ?? "")?.[1];
      blocks.push({ line: i + 1, heading, code: lines.slice(i + 1, end).join("\n"), skip });
    }
    i = end;
  }
  return blocks;
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), "llama-napi-readme-"));
after(() => fs.rmSync(work, { recursive: true, force: true }));
fs.mkdirSync(path.join(work, "node_modules"));
fs.symlinkSync(ROOT, path.join(work, "node_modules", "llama-napi"), "dir");

const examples = readmeExamples();

test("the README has runnable examples, and every skipped one says why", () => {
  assert.ok(examples.filter((e) => !e.skip).length >= 5, "the parser found the examples");
  for (const e of examples.filter((x) => x.skip)) assert.ok(e.skip.trim().length > 10, `README.md:${e.line}: a reason`);
});

for (const example of examples) {
  const name = `README.md:${example.line} (${example.heading})`;
  if (example.skip) {
    test(name, { skip: example.skip }, () => {});
    continue;
  }
  const placeholders = Object.keys(PLACEHOLDERS).filter((placeholder) => example.code.includes(JSON.stringify(placeholder)));
  test(name, placeholders.length > 0 ? NEEDS_REFERENCE_MODELS : {}, () => {
    let code = example.code;
    for (const placeholder of placeholders) code = code.replaceAll(JSON.stringify(placeholder), JSON.stringify(PLACEHOLDERS[placeholder]()));
    // Each in a folder of its own inside the project: the files an example writes (a GGUF, a session) land there.
    const dir = fs.mkdtempSync(path.join(work, "example-"));
    const file = path.join(dir, "example.mjs");
    fs.writeFileSync(file, code);
    const run = spawnSync(process.execPath, [file], { cwd: dir, encoding: "utf8", timeout: 300_000 });
    assert.equal(run.status, 0, `${name} failed:\n${run.stderr}\n--- the code run:\n${code}`);
  });
}
