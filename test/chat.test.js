"use strict";
// Chat templates: the built-in Llama 2 and Llama 3 formats against strings written out by hand from Meta's format,
// the model's own template (tokenizer_config.json, chat_template.jinja, GGUF tokenizer.chat_template), BOS handling,
// generation that ends at the end-of-turn token, and errors for broken templates and messages.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { loadModel, InvalidArgumentError, ModelFormatError } = require("../dist/cjs/index.js");
const { DEFAULT_MODEL, NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { writeConstantOutputModel } = require("./helpers/tiny-model.js");
const { writeChainHfModel } = require("./helpers/tiny-hf-model.js");

const SYSTEM_USER = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Hi there" },
];
const MULTI_TURN = [...SYSTEM_USER, { role: "assistant", content: "Hello." }, { role: "user", content: "More?" }];

const L3_HEADER = (role) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
const L3_SYSTEM_USER = `<|begin_of_text|>${L3_HEADER("system")}You are terse.<|eot_id|>${L3_HEADER("user")}Hi there<|eot_id|>`;
const L3_MULTI_TURN = `${L3_SYSTEM_USER}${L3_HEADER("assistant")}Hello.<|eot_id|>${L3_HEADER("user")}More?<|eot_id|>`;

// Token ids of the Llama 3 vocab used below.
const BEGIN_OF_TEXT = 128000;
const END_OF_TEXT = 128001;
const EOT = 128009;
const NEWLINES = 271; // "\n\n", the end of the assistant header
const HELLO = 9906;
const BANG = 0; // "!"
const PERIOD = 13;

/** A Llama 3 model that answers "Hello!" then <|eot_id|>, and says <|end_of_text|> after "." (see tiny-hf-model.js). */
function writeHelloModel(options = {}) {
  return writeChainHfModel({
    chain: [[NEWLINES, HELLO], [HELLO, BANG], [BANG, EOT], [EOT, HELLO], [PERIOD, END_OF_TEXT]],
    ...options,
  });
}

const llama3Config = () => JSON.parse(fs.readFileSync(modelPath("llama3", "tokenizer_config.json"), "utf8"));
/** tokenizer_config.json without its chat_template: the built-in Llama 3 template applies. */
function configWithout(...keys) {
  const config = llama3Config();
  for (const key of keys) delete config[key];
  return config;
}

async function withModel(pathOrDir, fn) {
  const model = await loadModel(pathOrDir, { threads: 1 });
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

test("built-in Llama 3 template: system + user, multi-turn, with and without the generation prompt", NEEDS_REFERENCE_MODELS, async () => {
  await withModel(writeHelloModel({ tokenizerConfig: configWithout("chat_template") }), (model) => {
    assert.equal(model.chatTemplate, undefined, "the files carry no template");
    const chat = model.applyChatTemplate(SYSTEM_USER);
    assert.equal(chat.text, `${L3_SYSTEM_USER}${L3_HEADER("assistant")}`);
    assert.equal(model.applyChatTemplate(SYSTEM_USER, { addGenerationPrompt: false }).text, L3_SYSTEM_USER);
    assert.equal(model.applyChatTemplate(MULTI_TURN).text, `${L3_MULTI_TURN}${L3_HEADER("assistant")}`);
    assert.equal(model.applyChatTemplate(MULTI_TURN, { addGenerationPrompt: false }).text, L3_MULTI_TURN);
    assert.equal(model.applyChatTemplate([{ role: "user", content: "  padded \n" }], { addGenerationPrompt: false }).text,
      `<|begin_of_text|>${L3_HEADER("user")}padded<|eot_id|>`, "content is trimmed, as Meta's template does");

    // Special tokens are parsed, and the template's own BOS is not doubled.
    assert.deepEqual(chat.tokens, [
      BEGIN_OF_TEXT, 128006, 9125, 128007, NEWLINES, 2675, 527, 51637, 13, EOT,
      128006, 882, 128007, NEWLINES, 13347, 1070, EOT, 128006, 78191, 128007, NEWLINES,
    ]);
    assert.deepEqual(chat.tokens, model.tokenize(chat.text, { special: true, addBos: false }));
  });
});

test("the Llama 3 tokenizer_config.json template renders as the built-in one", NEEDS_REFERENCE_MODELS, async () => {
  const own = writeHelloModel();
  const builtin = writeHelloModel({ tokenizerConfig: configWithout("chat_template") });
  await withModel(own, (ownModel) =>
    withModel(builtin, (builtinModel) => {
      assert.equal(ownModel.chatTemplate, llama3Config().chat_template);
      // That template (Llama 3 base) always ends with the assistant header: compare with the generation prompt on.
      for (const messages of [SYSTEM_USER, MULTI_TURN, [{ role: "user", content: "Hi" }]]) {
        assert.deepEqual(ownModel.applyChatTemplate(messages), builtinModel.applyChatTemplate(messages));
      }
    }),
  );
});

test("built-in Llama 2 template: [INST] and <<SYS>>, BOS and EOS per turn", async () => {
  await withModel(DEFAULT_MODEL, (model) => {
    assert.equal(model.chatTemplate, undefined);
    const systemUser = "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST]";
    assert.equal(model.applyChatTemplate(SYSTEM_USER).text, systemUser);
    assert.equal(model.applyChatTemplate(SYSTEM_USER, { addGenerationPrompt: false }).text, systemUser, "Llama 2 has no assistant header");
    const multiTurn = `${systemUser} Hello. </s><s>[INST] More? [/INST]`;
    assert.equal(model.applyChatTemplate(MULTI_TURN).text, multiTurn);
    assert.equal(model.applyChatTemplate([{ role: "user", content: " Hi " }]).text, "<s>[INST] Hi [/INST]");

    const { tokens } = model.applyChatTemplate(MULTI_TURN);
    assert.equal(tokens[0], 1);
    assert.notEqual(tokens[1], 1, "one BOS, not two");
    assert.deepEqual(tokens.filter((id) => id === 1 || id === 2), [1, 2, 1], "BOS, EOS, BOS as special tokens");
    assert.deepEqual(tokens, model.tokenize(multiTurn, { special: true, addBos: false }));

    assert.throws(() => model.applyChatTemplate([{ role: "assistant", content: "Hi" }]), (err) => {
      assert.ok(err instanceof InvalidArgumentError, String(err));
      assert.match(err.message, /Conversation roles must alternate/);
      return true;
    });
  });
});

test("a template that does not write BOS gets it from the tokenizer", NEEDS_REFERENCE_MODELS, async () => {
  const template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
  const dir = writeHelloModel({ tokenizerConfig: { ...configWithout("chat_template"), chat_template: template } });
  await withModel(dir, (model) => {
    const chat = model.applyChatTemplate([{ role: "user", content: "Hi" }]);
    assert.equal(chat.text, "user: Hi\nassistant:");
    assert.deepEqual(chat.tokens, model.tokenize(chat.text, { addBos: true }));
    assert.equal(chat.tokens[0], BEGIN_OF_TEXT);
  });
});

test("template sources: a named-template list, chat_template.jinja, GGUF tokenizer.chat_template", NEEDS_REFERENCE_MODELS, async () => {
  const listed = writeHelloModel({
    tokenizerConfig: {
      ...configWithout("chat_template"),
      chat_template: [{ name: "tool_use", template: "tools" }, { name: "default", template: "{{ bos_token }}default" }],
    },
  });
  await withModel(listed, (model) => {
    assert.equal(model.chatTemplate, "{{ bos_token }}default");
    assert.deepEqual(model.applyChatTemplate([]), { text: "<|begin_of_text|>default", tokens: [BEGIN_OF_TEXT, 2309] });
  });

  const jinja = writeHelloModel({ tokenizerConfig: configWithout("chat_template") });
  fs.writeFileSync(path.join(jinja, "chat_template.jinja"), "{{ eos_token }}");
  await withModel(jinja, (model) => assert.equal(model.applyChatTemplate([]).text, "<|end_of_text|>"));

  const gguf = writeConstantOutputModel({}, [["tokenizer.chat_template", { type: "string", value: "{{ messages[0].content }}!" }]]);
  await withModel(gguf, (model) => {
    assert.equal(model.chatTemplate, "{{ messages[0].content }}!");
    assert.equal(model.applyChatTemplate([{ role: "user", content: "Hi" }]).text, "Hi!");
  });
});

test("generate from a chat prompt stops at <|eot_id|> (and at <|end_of_text|>)", NEEDS_REFERENCE_MODELS, async () => {
  // generation_config.json names only <|end_of_text|>; <|eot_id|> stops generation because the vocab has it.
  await withModel(writeHelloModel({ generationConfig: { eos_token_id: END_OF_TEXT } }), async (model) => {
    assert.deepEqual(model.info.eosIds, [END_OF_TEXT, EOT]);
    const chat = model.applyChatTemplate([{ role: "user", content: "Hi" }]);
    const reply = await model.complete(chat, { temperature: 0, maxTokens: 10 });
    assert.deepEqual(reply.tokens, [HELLO, BANG]);
    assert.equal(reply.text, "Hello!");
    assert.equal(reply.finishReason, "stop");
    const streamed = [];
    for await (const t of model.generate(chat, { temperature: 0, maxTokens: 10 })) streamed.push(t.text);
    assert.deepEqual(streamed, ["Hello", "!"]);

    const ignoring = await model.complete(chat, { temperature: 0, maxTokens: 5, ignoreEos: true });
    assert.deepEqual(ignoring.tokens, [HELLO, BANG, EOT, HELLO, BANG], "the chain goes on past <|eot_id|>");
    assert.equal(ignoring.finishReason, "length");

    const endOfText = await model.complete({ tokens: [BEGIN_OF_TEXT, PERIOD] }, { temperature: 0, maxTokens: 5 });
    assert.deepEqual([endOfText.tokens, endOfText.finishReason], [[], "stop"]);
  });
});

test("stop ids from generation_config.json eos_token_id lists and GGUF eot_token_id", NEEDS_REFERENCE_MODELS, async () => {
  // A list in generation_config.json: "!" is declared an end token here, so the reply stops before it.
  await withModel(writeHelloModel({ generationConfig: { eos_token_id: [END_OF_TEXT, EOT, BANG] } }), async (model) => {
    assert.deepEqual(model.info.eosIds, [END_OF_TEXT, EOT, BANG]);
    const reply = await model.complete(model.applyChatTemplate([{ role: "user", content: "Hi" }]), { temperature: 0, maxTokens: 10 });
    assert.deepEqual([reply.tokens, reply.finishReason], [[HELLO], "stop"]);
  });
  // GGUF: token 3 always wins; it stops generation only when tokenizer.ggml.eot_token_id names it.
  const eot = [["tokenizer.ggml.eot_token_id", { type: "u32", value: 3 }]];
  await withModel(writeConstantOutputModel({ 3: 10 }, eot), async (model) => {
    assert.deepEqual(model.info.eosIds, [2, 3]);
    const r = await model.complete("Once", { temperature: 0, maxTokens: 4 });
    assert.deepEqual([r.tokens, r.finishReason], [[], "stop"]);
  });
  await withModel(writeConstantOutputModel({ 3: 10 }), async (model) => {
    const r = await model.complete("Once", { temperature: 0, maxTokens: 4 });
    assert.deepEqual([r.tokens, r.finishReason], [[3, 3, 3, 3], "length"]);
  });
});

test("broken templates fail the load with a ModelFormatError naming the file", NEEDS_REFERENCE_MODELS, async () => {
  const broken = "{% for m in messages %}{{ m.content }";
  const hf = writeHelloModel({ tokenizerConfig: { ...configWithout("chat_template"), chat_template: broken } });
  await assert.rejects(loadModel(hf), (err) => {
    assert.ok(err instanceof ModelFormatError, String(err));
    assert.ok(err.message.includes(path.join(hf, "tokenizer_config.json")), err.message);
    assert.match(err.message, /invalid chat template/);
    return true;
  });
  const noDefault = writeHelloModel({ tokenizerConfig: { ...configWithout("chat_template"), chat_template: [{ name: "rag", template: "x" }] } });
  await assert.rejects(loadModel(noDefault), (err) => err instanceof ModelFormatError && /default/.test(err.message));
  const gguf = writeConstantOutputModel({}, [["tokenizer.chat_template", { type: "string", value: "{% if %}" }]]);
  await assert.rejects(loadModel(gguf), (err) => {
    assert.ok(err instanceof ModelFormatError, String(err));
    assert.ok(err.message.includes(gguf) && err.message.includes("tokenizer.chat_template"), err.message);
    return true;
  });
});

test("bad messages are an InvalidArgumentError", async () => {
  await withModel(DEFAULT_MODEL, (model) => {
    for (const messages of [undefined, "hi", [{ role: "user" }], [{ role: 1, content: "x" }], [null]]) {
      assert.throws(() => model.applyChatTemplate(messages), InvalidArgumentError, JSON.stringify(messages));
    }
  });
});
