"use strict";
// A model's own chat template renders in a sandbox with bounds on time, memory, stack and output: every runaway
// shape (a huge range, nested loops, doubling strings and lists, a huge join, recursion through macros, endless output) ends in
// a ChatTemplateLimitError naming the template and the bound, fast, and the process renders normally afterwards.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { loadModel, ChatTemplateLimitError, InvalidArgumentError } = require("../dist/cjs/index.js");
const { ChatTemplate } = require("../dist/cjs/chat/template.js");
const { modelPath, NEEDS_REFERENCE_MODELS } = require("./helpers/models.js");
const { writeChainHfModel } = require("./helpers/tiny-hf-model.js");
const { writeConstantOutputModel } = require("./helpers/tiny-model.js");

const VARIABLES = { messages: [{ role: "user", content: "Hi" }], addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>" };
const LIMITS = { timeMs: 300, memoryMb: 32, outputChars: 10_000 };
const NORMAL = "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
/** The issue's template: one render grew the main heap until V8 aborted the process. */
const ISSUE_TEMPLATE = "{% for i in range(100000000) %}{{ i }}{% endfor %}";

/**
 * Asserts `fn` throws a ChatTemplateLimitError naming `origin` for one of `bounds` (a template that allocates as it
 * loops may run out of time or of heap first, by the machine's speed), and returns how long it took.
 */
function assertLimit(fn, origin, bounds) {
  const start = performance.now();
  assert.throws(fn, (err) => {
    assert.ok(err instanceof ChatTemplateLimitError, String(err));
    assert.equal(err.template, origin);
    assert.ok(bounds.includes(err.bound), err.message);
    assert.ok(err.message.includes(origin), err.message);
    return true;
  });
  return performance.now() - start;
}

test("every runaway shape trips a bound: a typed error naming the template, and the next render works", () => {
  const runaways = [
    { name: "range", source: ISSUE_TEMPLATE, bounds: ["memory", "time"] },
    { name: "huge join", source: "{{ range(50000000) | join(',') }}", bounds: ["memory", "time"] },
    // Those with time to spare can only trip the bound they are about (the doubling ones reach the heap's end within
    // a few dozen steps), however loaded the machine.
    { name: "doubling string", source: "{% set s = 'x' %}{% for i in range(40) %}{% set s = s + s %}{% endfor %}{{ s }}", bounds: ["memory"], timeMs: 4000 },
    { name: "doubling list", source: "{% set a = [1] %}{% for i in range(40) %}{% set a = a + a %}{% endfor %}{{ a | length }}", bounds: ["memory"], timeMs: 4000 },
    { name: "nested loops", source: "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}", bounds: ["time"] },
    { name: "macro fan-out", source: "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}", bounds: ["time"] },
    { name: "macro recursion", source: "{% macro f(g) %}{{ g(g) }}{% endmacro %}{{ f(f) }}", bounds: ["stack"], timeMs: 4000 },
    { name: "long output", source: "{% for i in range(2000) %}xxxxxxxxxx{% endfor %}", bounds: ["output"], timeMs: 4000 },
  ];
  const normal = new ChatTemplate(NORMAL, "normal template", false, LIMITS);
  for (const { name, source, bounds, timeMs = LIMITS.timeMs } of runaways) {
    const template = new ChatTemplate(source, `${name} template`, false, { ...LIMITS, timeMs });
    const ms = assertLimit(() => template.render(VARIABLES), `${name} template`, bounds);
    // The time budget plus the cost of replacing a terminated renderer, with room for a loaded machine.
    assert.ok(ms < timeMs + 5000, `${name}: ${ms} ms`);
    assert.equal(normal.render(VARIABLES), "[user] Hi[assistant]", `a render after ${name}`);
  }
});

test("the error carries the bound's value; a template's own errors stay InvalidArgumentErrors", () => {
  const slow = new ChatTemplate("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}", "slow", false, LIMITS);
  assert.throws(() => slow.render(VARIABLES), (err) => err instanceof ChatTemplateLimitError && err.limit === LIMITS.timeMs && err.message.includes("300 ms"));
  const raising = new ChatTemplate("{{ raise_exception('roles must alternate') }}", "raising", false, LIMITS);
  assert.throws(() => raising.render(VARIABLES), (err) => err instanceof InvalidArgumentError && /raising.*roles must alternate/.test(err.message));
});

test("a model directory whose chat_template.jinja never ends: applyChatTemplate throws, the process goes on", NEEDS_REFERENCE_MODELS, async () => {
  // tokenizer_config.json without its chat_template, so the .jinja file beside it is the model's template.
  const { chat_template: _, ...tokenizerConfig } = JSON.parse(fs.readFileSync(modelPath("llama3", "tokenizer_config.json"), "utf8"));
  const dir = writeChainHfModel({ chain: [[1, 2]], tokenizerConfig });
  const jinjaPath = path.join(dir, "chat_template.jinja");
  fs.writeFileSync(jinjaPath, ISSUE_TEMPLATE);
  const model = await loadModel(dir, { threads: 1 });
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      const ms = assertLimit(() => model.applyChatTemplate([{ role: "user", content: "Hi" }]), jinjaPath, ["memory", "time"]);
      assert.ok(ms < 10_000, `${ms} ms`);
    }
    assert.equal(model.tokenize("Hi", { addBos: false }).length, 1, "the model still works");
  } finally {
    await model.dispose();
  }
});

test("loadModel's chatTemplateLimits set the bounds, and are checked at load", async () => {
  const nested = "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}";
  const gguf = writeConstantOutputModel({}, [["tokenizer.chat_template", { type: "string", value: nested }]]);
  for (const chatTemplateLimits of [{ timeMs: 0 }, { memoryMb: 1.5 }, { outputChars: "many" }, "fast"]) {
    await assert.rejects(loadModel(gguf, { chatTemplateLimits }), (err) => err instanceof InvalidArgumentError && /chatTemplateLimits/.test(err.message));
  }
  const model = await loadModel(gguf, { threads: 1, chatTemplateLimits: { timeMs: 200 } });
  try {
    assert.throws(() => model.applyChatTemplate([{ role: "user", content: "Hi" }]), (err) => {
      assert.ok(err instanceof ChatTemplateLimitError, String(err));
      assert.deepEqual([err.bound, err.limit], ["time", 200]);
      assert.ok(err.template.includes(gguf) && err.template.includes("tokenizer.chat_template"), err.template);
      return true;
    });
  } finally {
    await model.dispose();
  }
});
