"use strict";
// Tool calling in the library: rendering tools, calls and results (a template's own way when it knows tools, the
// built-in Llama 3.1 JSON format otherwise), parsing a reply into calls, and sessions that call tools: prompt
// with tools, submitToolResults and promptWithTools. The trained models do not call tools on their own, so the
// replies are scripted (helpers/scripted.js: a logitsProcessor forcing the text through the real decode loop).
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { loadModel } = require("../dist/cjs/index.js");
const { parseToolCalls, mayBeToolCalls } = require("../dist/cjs/chat/tools.js");
const { writeTinyModel } = require("./helpers/tiny-model.js");
const { scriptProcessor } = require("./helpers/scripted.js");
const { modelPath, skipFileWithoutReferenceModels } = require("./helpers/models.js");

const WEATHER = {
  name: "get_weather",
  description: "The weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};
const TIME = { name: "get_time", parameters: { type: "object", properties: {} } };
const CALL_TEXT = '{"name": "get_weather", "parameters": {"city": "Paris"}}';

test("parseToolCalls: calls alone (one per line, an array, after <|python_tag|>) are calls; anything else is text", () => {
  const tools = [WEATHER, TIME];
  const one = parseToolCalls(`  ${CALL_TEXT}\n`, tools);
  assert.equal(one.length, 1);
  assert.equal(one[0].name, "get_weather");
  assert.deepEqual(JSON.parse(one[0].arguments), { city: "Paris" });
  assert.match(one[0].id, /^call_[0-9a-f]{24}$/);
  const two = parseToolCalls(`${CALL_TEXT}\n{"name": "get_time", "arguments": "{}"}`, tools);
  assert.deepEqual(two.map((c) => [c.name, c.arguments]), [["get_weather", '{"city":"Paris"}'], ["get_time", "{}"]]);
  assert.equal(parseToolCalls(`[${CALL_TEXT}, {"name": "get_time"}]`, tools).length, 2);
  assert.equal(parseToolCalls(`<|python_tag|>${CALL_TEXT}`, tools).length, 1);
  for (const text of ["It is sunny.", `Sure: ${CALL_TEXT}`, `${CALL_TEXT} and more`, '{"name": "unknown_tool", "parameters": {}}',
    '{"name": "get_weather", "parameters": [1]}', '{"name": "get_weather", "parameters": {"city": ', "", "{}"]) {
    assert.equal(parseToolCalls(text, tools), undefined, text);
  }
  assert.ok(mayBeToolCalls("  ") && mayBeToolCalls(' {"na') && mayBeToolCalls("[") && mayBeToolCalls("<|pyth"));
  assert.ok(!mayBeToolCalls("Hello") && !mayBeToolCalls(" The {"));
});

test("a template that knows tools renders them itself, from HF's variables", async () => {
  const template =
    "{% if tools %}TOOLS {% for t in tools %}{{ t.function.name }}:{{ t.function.parameters | tojson }};{% endfor %}|{% endif %}" +
    "{% for m in messages %}[{{ m.role }}]{% if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.id }} {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}" +
    "{% else %}{{ m.content }}{% endif %}{% if m.tool_call_id %} (for {{ m.tool_call_id }}){% endif %}|{% endfor %}";
  const model = await loadModel(writeTinyModel({ metadata: [["tokenizer.chat_template", { type: "string", value: template }]] }), { threads: 1 });
  try {
    const { text } = model.applyChatTemplate(
      [
        { role: "user", content: "Weather?" },
        { role: "assistant", content: "", toolCalls: [{ id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' }] },
        { role: "tool", content: "sunny", toolCallId: "call_1" },
      ],
      { tools: [WEATHER] },
    );
    assert.equal(
      text,
      'TOOLS get_weather:{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]};|' +
        '[user]Weather?|[assistant]CALL call_1 get_weather {"city": "Paris"}|[tool]sunny (for call_1)|',
    );
  } finally {
    await model.dispose();
  }
});

let l3;
before(async () => {
  if (skipFileWithoutReferenceModels()) return;
  l3 = await loadModel(modelPath("trained", "sotu-l3-26m"), { threads: 1, contextSize: 1024 });
});
after(() => l3?.dispose());

const needsModels = { skip: skipFileWithoutReferenceModels() };

test("the built-in Llama 3.1 format: tools in the system message, calls as JSON, results in ipython turns", needsModels, () => {
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Weather in Paris and the time?" },
    { role: "assistant", content: "", toolCalls: [{ id: "call_a", name: "get_weather", arguments: '{"city":"Paris"}' }, { id: "call_b", name: "get_time", arguments: "{}" }] },
    { role: "tool", content: "sunny", toolCallId: "call_a" },
    { role: "tool", content: "noon", toolCallId: "call_b" },
  ];
  const { text } = l3.applyChatTemplate(messages, { tools: [WEATHER, TIME] });
  const system = text.slice(0, text.indexOf("<|eot_id|>"));
  assert.match(system, /^<\|begin_of_text\|><\|start_header_id\|>system<\|end_header_id\|>\n\nBe brief\.\n\nYou have access to the following functions/);
  assert.ok(system.includes('"name": "get_weather"') && system.includes('"description": "The weather in a city"') && system.includes('"name": "get_time"'));
  assert.ok(text.includes('<|start_header_id|>assistant<|end_header_id|>\n\n{"name":"get_weather","parameters":{"city":"Paris"}}\n{"name":"get_time","parameters":{}}<|eot_id|>'));
  assert.ok(text.includes('<|start_header_id|>ipython<|end_header_id|>\n\n{"name":"get_weather","output":"sunny"}\n{"name":"get_time","output":"noon"}<|eot_id|>'));
  assert.ok(text.endsWith("<|start_header_id|>assistant<|end_header_id|>\n\n"));
  // Without tools the conversation renders as before.
  assert.equal(l3.applyChatTemplate(messages.slice(0, 2)).text.includes("functions"), false);
  assert.throws(() => l3.applyChatTemplate(messages, { tools: [{ name: "bad name" }] }), { name: "InvalidArgumentError", option: "tools" });
  assert.throws(() => l3.applyChatTemplate(messages, { tools: [WEATHER, WEATHER] }), { name: "InvalidArgumentError", option: "tools" });
});

test("session.prompt with tools returns toolCalls; submitToolResults answers them and the reply is text", needsModels, async () => {
  const session = await l3.createSession();
  const logitsProcessor = scriptProcessor(l3, [CALL_TEXT, "It is sunny in Paris."]);
  const asked = await session.prompt("What is the weather in Paris?", { tools: [WEATHER], logitsProcessor, temperature: 0 });
  assert.equal(asked.toolCalls.length, 1);
  assert.equal(asked.toolCalls[0].name, "get_weather");
  assert.deepEqual(JSON.parse(asked.toolCalls[0].arguments), { city: "Paris" });
  assert.deepEqual(session.history.at(-1), { role: "assistant", content: "", toolCalls: asked.toolCalls });

  assert.throws(() => session.submitToolResults([{ toolCallId: "call_other", content: "x" }]), { name: "InvalidArgumentError" });
  const answer = await session.submitToolResults([{ toolCallId: asked.toolCalls[0].id, content: "sunny" }], { tools: [WEATHER], logitsProcessor, temperature: 0 });
  assert.equal(answer.toolCalls, undefined);
  assert.equal(answer.text.trim(), "It is sunny in Paris.");
  assert.deepEqual(session.history.slice(-2), [
    { role: "tool", content: "sunny", toolCallId: asked.toolCalls[0].id },
    { role: "assistant", content: answer.text },
  ]);
  session.dispose();
});

test("promptWithTools runs the handlers and feeds results back until a text reply; errors go back as results", needsModels, async () => {
  const session = await l3.createSession();
  const calls = [];
  const functions = {
    get_weather: { ...WEATHER, handler: async ({ city }) => (calls.push(city), { city, sky: "sunny" }) },
    get_time: { parameters: TIME.parameters, handler: () => { throw new Error("clock broken"); } },
  };
  const logitsProcessor = scriptProcessor(l3, [`${CALL_TEXT}\n{"name": "get_time", "parameters": {}}`, "Sunny; the clock is broken."]);
  const result = await session.promptWithTools("Weather and time?", functions, { logitsProcessor, temperature: 0 });
  assert.equal(result.text.trim(), "Sunny; the clock is broken.");
  assert.deepEqual(calls, ["Paris"]);
  const results = session.history.filter((m) => m.role === "tool").map((m) => JSON.parse(m.content));
  assert.deepEqual(results, [{ city: "Paris", sky: "sunny" }, { error: "clock broken" }]);

  const looping = scriptProcessor(l3, [CALL_TEXT]);
  await assert.rejects(session.promptWithTools("Again?", functions, { logitsProcessor: looping, temperature: 0, maxRounds: 2 }), /after 2 rounds/);
  session.dispose();
});
