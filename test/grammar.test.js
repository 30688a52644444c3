"use strict";
// GBNF grammars: the parser and its errors, the engine's matcher on a small vocabulary of known tokens (tokens that
// span several symbols, partial UTF-8, the end ids), and llama.cpp's example grammars generating on a real model.
const { test, describe, before, after } = require("node:test");
const assert = require("node:assert/strict");
const api = require("../dist/cjs/index.js");
const { loadBinding } = require("../dist/cjs/native/binding.js");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");

const { compileGrammar, GrammarError, InvalidArgumentError } = api;

/** The GrammarError compileGrammar throws for `source`. */
function grammarError(source) {
  try {
    compileGrammar(source);
  } catch (err) {
    assert.ok(err instanceof GrammarError, `expected a GrammarError, got ${err}`);
    assert.ok(err instanceof InvalidArgumentError);
    return err;
  }
  assert.fail(`compiled: ${source}`);
}

describe("the GBNF parser", () => {
  test("compiles rules to the engine's table: header, offsets, alternatives", () => {
    const { table, ruleNames } = compileGrammar('root ::= "a" | b\nb ::= [x-z]');
    assert.deepEqual(ruleNames, ["root", "b"]);
    assert.equal(table[0], 2); // rules
    assert.equal(table[1], 0); // root
    const root = Array.from(table.slice(table[2], table[3]));
    // CHARS (not negated, one range a-a) ALT_END, REF b ALT_END, RULE_END
    assert.deepEqual(root, [3, 0, 1, 97, 97, 0, 2, 1, 0, 1]);
    assert.deepEqual(Array.from(table.slice(table[3])), [3, 0, 1, 120, 122, 0, 1]);
  });

  test("accepts the whole syntax: groups, repetitions, classes, escapes, comments, multi-line bodies", () => {
    const source = String.raw`
      # a comment
      root ::= item{2,4} tail? ( "x" | "y" )* [^\n\x00-\x1f] . "\u00e9\U0001F600\t\"\\" end
      item ::= [a-zA-Z_-] [0-9]+
        | "(" ws item ")"   # continued on the next line
      tail ::= "!"{3} "?"{1,} "-"{0,2}
      ws ::= [ \t\n]*
      end ::= "\[\]"
    `;
    const { ruleNames } = compileGrammar(source);
    for (const name of ["root", "item", "tail", "ws", "end"]) assert.ok(ruleNames.includes(name), name);
  });

  test("an undefined rule is named, with where it is used", () => {
    const err = grammarError('root ::= "a" value\n');
    assert.equal(err.rule, "root");
    assert.equal(err.line, 1);
    assert.equal(err.column, 14);
    assert.match(err.message, /"value" is referred to but not defined/);
  });

  test("syntax errors name the rule, the line and the column", () => {
    const cases = [
      ['root ::= "a\n', "root", 1, 10, /unterminated string/],
      ["root ::= [ab", "root", 1, 10, /unterminated character class/],
      ['root ::= "\\q"', "root", 1, 11, /unknown escape/],
      ['root ::= "a"\nb ::= * "x"', "b", 2, 7, /must follow something/],
      ['root ::= ( "a"', "root", 1, 10, /close the group/],
      ['root := "a"', "root", 1, 6, /"::="/],
      ['root ::= "a" {3,2}', "root", 1, 14, /minimum exceeds/],
      ['root ::= [z-a]', "root", 1, 13, /ends before it starts/],
      ['root ::= "a"\nroot ::= "b"', "root", 2, 1, /defined twice/],
      ['root ::= "a" @', "root", 1, 14, /unexpected "@"/],
    ];
    for (const [source, rule, line, column, message] of cases) {
      const err = grammarError(source);
      assert.deepEqual([err.rule, err.line, err.column], [rule, line, column], source);
      assert.match(err.message, message, source);
    }
  });

  test("a grammar without root, or empty, is refused", () => {
    assert.match(grammarError('start ::= "a"').message, /no "root" rule/);
    assert.match(grammarError("  # nothing\n").message, /defines no rule/);
  });

  test("left recursion, direct or through rules that can match nothing, is refused with the rule's name", () => {
    let err = grammarError('root ::= expr\nexpr ::= expr "+" num | num\nnum ::= [0-9]+');
    assert.equal(err.rule, "expr");
    assert.match(err.message, /left-recursive/);
    err = grammarError('root ::= a\na ::= opt a "x" | "y"\nopt ::= "z"?');
    assert.equal(err.rule, "a");
    err = grammarError('root ::= ( "a"? )*');
    assert.equal(err.rule, "root");
    assert.match(err.message, /repeats something that can match nothing/);
  });

  test("generate() rejects a bad grammar and conflicting constraints before any work", async () => {
    const model = await api.loadModel(require("./helpers/models.js").DEFAULT_MODEL, { threads: 1 });
    try {
      await assert.rejects(model.complete("a", { grammar: "root ::= nothing" }), GrammarError);
      await assert.rejects(model.complete("a", { grammar: 'root ::= "a"', json: true }), (err) => err instanceof InvalidArgumentError && err.option === "json");
      await assert.rejects(model.complete("a", { json: "yes" }), (err) => err instanceof InvalidArgumentError && err.option === "json");
    } finally {
      await model.dispose();
    }
  });
});

describe("the engine's matcher on a known vocabulary", () => {
  const binding = loadBinding();
  const encoder = new TextEncoder();
  /** Token i is vocabulary[i]: a string (its UTF-8) or an array of bytes; "" is a control token. */
  const vocabulary = ["", "a", "b", "ab", "ba", "{", "}", '"', '"}', "é", [0xc3], [0xa9], "x", "aab", "\n", "\\", [0xe0, 0x81, 0x9c]];
  const END = 0;
  const LEAD_BYTE = 10; // [0xc3], followed by its continuation [0xa9]
  const trie = (() => {
    const pieces = vocabulary.map((t) => (typeof t === "string" ? encoder.encode(t) : Uint8Array.from(t)));
    const offsets = new Uint32Array(pieces.length + 1);
    pieces.forEach((p, i) => (offsets[i + 1] = offsets[i] + p.length));
    const bytes = new Uint8Array(offsets[pieces.length]);
    pieces.forEach((p, i) => bytes.set(p, offsets[i]));
    return new binding.TokenTrie(bytes, offsets);
  })();
  const matcher = (source) => new binding.Grammar(trie, compileGrammar(source).table);
  /** The tokens the grammar allows now (by their text), the end token as "<end>". */
  const allowed = (grammar) => {
    const logits = new Float32Array(vocabulary.length);
    grammar.mask(logits, Int32Array.of(END));
    return vocabulary.flatMap((t, i) => (logits[i] === 0 ? [i === END ? "<end>" : typeof t === "string" ? t : `0x${t[0].toString(16)}`] : []));
  };
  const id = (text) => vocabulary.indexOf(text);

  test("tokens spanning several symbols are allowed when all of them fit, and the state follows them", () => {
    const g = matcher('root ::= "a"+ "b"');
    assert.deepEqual(allowed(g), ["a", "ab", "aab"]);
    g.accept(id("aab"));
    assert.equal(g.complete, true);
    assert.equal(g.finished, true);
    assert.deepEqual(allowed(g), ["<end>"]);
  });

  test("the end token only when the grammar is complete; finished only when nothing can follow", () => {
    const g = matcher('root ::= "a" "b"*');
    assert.deepEqual(allowed(g), ["a", "ab"]);
    g.accept(id("a"));
    assert.equal(g.complete, true);
    assert.equal(g.finished, false);
    assert.deepEqual(allowed(g), ["<end>", "b"]);
  });

  test("a code point split over tokens: its first byte only where the character can come, then only its rest", () => {
    const g = matcher('root ::= "é" "x"');
    assert.deepEqual(allowed(g), ["é", "0xc3"]);
    g.accept(LEAD_BYTE);
    assert.deepEqual(allowed(g), ["0xa9"]);
    g.accept(LEAD_BYTE + 1);
    assert.deepEqual(allowed(g), ["x"]);
    const ascii = matcher("root ::= [a-z]+");
    assert.ok(!allowed(ascii).includes("0xc3"), "a lead byte of no allowed character");
    const negated = matcher('root ::= [^a-z{}"]');
    assert.deepEqual(allowed(negated), ["é", "0xc3", "\n", "\\"]);
  });

  test("overlong and invalid UTF-8 never match: E0 81 9C is not a backslash", () => {
    assert.deepEqual(allowed(matcher('root ::= "\\\\"')), ["\\"]);
    assert.deepEqual(allowed(matcher("root ::= .")), ["a", "b", "{", "}", '"', "é", "0xc3", "x", "\n", "\\"]);
  });

  test("accepting a token the grammar does not allow is a typed error, and the state stays", () => {
    const g = matcher('root ::= "{" "}"');
    assert.throws(() => g.accept(id("}")), (err) => err.code === "INVALID_ARGUMENT" && err.option === "grammar");
    assert.throws(() => g.accept(END), (err) => err.code === "INVALID_ARGUMENT");
    g.accept(id("{"));
    assert.deepEqual(allowed(g), ["}"]);
  });

  test("a grammar the vocabulary cannot continue is an error, not an empty mask", () => {
    const g = matcher('root ::= "q"');
    assert.throws(() => allowed(g), (err) => err.code === "INVALID_ARGUMENT" && /no token of the vocabulary/.test(err.message));
  });

  test("a grammar too ambiguous to follow is refused, not explored without end", () => {
    assert.throws(
      () => matcher('root ::= x{13} "b"\nx ::= "" | ""'),
      (err) => err.code === "INVALID_ARGUMENT" && /too ambiguous/.test(err.message),
    );
  });

  test("deep nesting: the matcher follows 5,000 open brackets and closes them all", () => {
    const g = matcher('root ::= item\nitem ::= "{" item? "}"');
    for (let i = 0; i < 5000; i++) g.accept(id("{"));
    for (let i = 0; i < 5000; i++) g.accept(id("}"));
    assert.equal(g.finished, true);
  });

  test("malformed tables are refused by the engine", () => {
    const bad = [
      [1, 0],
      [1, 5, 3, 1],
      [1, 0, 3, 2, 7, 0, 1],
      [1, 0, 3, 3, 0, 5, 97, 97, 0, 1],
      [1, 0, 3, 3, 0, 1, 98, 97, 0, 1],
      [1, 0, 3, 9, 1],
      [1, 0, 3, 3, 0, 1, 97, 97],
    ];
    for (const table of bad) {
      assert.throws(() => new binding.Grammar(trie, Int32Array.from(table)), (err) => err.code === "INVALID_ARGUMENT", JSON.stringify(table));
    }
  });

  test("right recursion (repetition) keeps the state flat: one state per position, not per repeat", () => {
    const g = matcher('root ::= "{" ( "a" | "b" )* "}"');
    g.accept(id("{"));
    const first = allowed(g);
    for (let i = 0; i < 2000; i++) g.accept(id(i % 2 ? "ab" : "ba"));
    assert.deepEqual(allowed(g), first);
    g.accept(id("}"));
    assert.equal(g.finished, true);
  });
});

describe("llama.cpp's example grammars on sotu-l3-26m", NEEDS_REFERENCE_MODELS, () => {
  // Written from their public descriptions in llama.cpp's grammars/ folder.
  const ARITHMETIC = String.raw`
root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \t\n]*
`;
  const LIST = String.raw`
root ::= item+
# Excludes various line break characters
item ::= "- " [^\r\n\x0b\x0c\x85\u2028\u2029]+ "\n"
`;
  const JSON_GRAMMAR = String.raw`
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
`;

  /** An independent recogniser of the arithmetic grammar (recursive descent over the text). */
  function acceptsArithmetic(text) {
    let i = 0;
    const ws = () => {
      while (i < text.length && " \t\n".includes(text[i])) i++;
    };
    const term = () => {
      if (/[a-z]/.test(text[i] ?? "")) {
        i++;
        while (/[a-z0-9_]/.test(text[i] ?? "")) i++;
        ws();
        return true;
      }
      if (/[0-9]/.test(text[i] ?? "")) {
        while (/[0-9]/.test(text[i] ?? "")) i++;
        ws();
        return true;
      }
      if (text[i] !== "(") return false;
      i++;
      ws();
      if (!expr() || text[i] !== ")") return false;
      i++;
      ws();
      return true;
    };
    const expr = () => {
      if (!term()) return false;
      while ("-+*/".includes(text[i] ?? "x")) {
        i++;
        if (!term()) return false;
      }
      return true;
    };
    let lines = 0;
    while (i < text.length) {
      if (!expr() || text[i] !== "=") return false;
      i++;
      ws();
      if (!term() || text[i - 1] !== "\n") {
        // the line's "\n" may have been taken by the term's trailing whitespace; the grammar requires one after it
        return false;
      }
      lines++;
    }
    return lines > 0;
  }

  let model;
  before(async () => {
    model = await api.loadModel(modelPath("trained", "sotu-l3-26m"), { threads: 1 });
  });
  after(async () => {
    await model.dispose();
  });

  /** Sampled generations that end: the end tokens (and the tokens closing lines and strings) favoured. */
  const generations = async (grammar, n, bias) => {
    const out = [];
    for (let seed = 0; seed < n; seed++) {
      const { text, finishReason } = await model.complete("The state of the union", { grammar, seed, temperature: 0.8, maxTokens: 200, logitBias: bias });
      out.push({ text, finishReason });
    }
    return out;
  };
  const ids = (text) => model.tokenize(text, { addBos: false });
  /** Raises the tokens of `texts` by `by`, and the end tokens (allowed only once the text is complete) by 15. */
  const favour = (texts, by) => ({
    ...Object.fromEntries(texts.flatMap(ids).map((id) => [id, by])),
    ...Object.fromEntries(model.info.eosIds.map((id) => [id, 15])),
  });

  test("a generation ends once the grammar is complete and nothing can follow, even past the end tokens", async () => {
    const steps = [];
    const it = model.generate("The answer is", { grammar: 'root ::= " yes" | " no"', ignoreEos: true, seed: 1, temperature: 1 });
    let result;
    for (;;) {
      const step = await it.next();
      if (step.done) {
        result = step.value;
        break;
      }
      steps.push(step.value.text);
    }
    assert.equal(result.finishReason, "stop");
    assert.ok(result.text === " yes" || result.text === " no", result.text);
    assert.equal(steps.join(""), result.text);
  });

  test("greedy and top-k decoding (the ranked fast paths) and a logitsProcessor all see the masked logits", async () => {
    const grammar = 'root ::= "{" [0-9]{1,4} "}"';
    for (const options of [{ temperature: 0 }, { temperature: 0, logprobs: 3 }, { temperature: 0.8, topK: 40, seed: 2 }]) {
      const { text, finishReason } = await model.complete("The state of the union", { grammar, maxTokens: 12, ...options });
      assert.equal(finishReason, "stop", JSON.stringify(options));
      assert.match(text, /^\{[0-9]{1,4}\}$/, JSON.stringify(options));
    }
    const allowedCounts = [];
    const { text } = await model.complete("The state of the union", {
      grammar,
      maxTokens: 12,
      temperature: 0,
      logitsProcessor: (logits) => allowedCounts.push(logits.filter((v) => v > -Infinity).length),
    });
    assert.match(text, /^\{[0-9]{1,4}\}$/);
    assert.ok(allowedCounts.length > 0 && allowedCounts.every((n) => n > 0 && n < 2000), String(allowedCounts));
  });

  test("json: true, a JSON Schema through complete(), and a chat session's prompt", async () => {
    const bias = favour(['"', "}", "]"], 8);
    const any = await model.complete("Data:", { json: true, seed: 3, temperature: 0.8, maxTokens: 200, logitBias: bias });
    JSON.parse(any.text);
    const schema = { type: "object", properties: { n: { type: "integer", minimum: 1, maximum: 9 } }, required: ["n"] };
    const complete = await model.complete("Data:", { jsonSchema: schema, seed: 4, maxTokens: 50 });
    assert.ok(Number.isInteger(JSON.parse(complete.text).n));
    const session = await model.createSession({ systemPrompt: "You answer in JSON." });
    const reply = await session.prompt("How many?", { jsonSchema: schema, seed: 5, maxTokens: 50 });
    assert.equal(reply.finishReason, "stop");
    const { n } = JSON.parse(reply.text);
    assert.ok(n >= 1 && n <= 9);
  });

  test("arithmetic", async () => {
    for (const { text, finishReason } of await generations(ARITHMETIC, 6, favour(["\n", "="], 8))) {
      assert.equal(finishReason, "stop", text);
      assert.ok(acceptsArithmetic(text), JSON.stringify(text));
    }
  });

  test("list", async () => {
    for (const { text, finishReason } of await generations(LIST, 6, favour(["\n"], 8))) {
      assert.equal(finishReason, "stop", text);
      assert.match(text, /^(- [^\r\n\x0b\x0c\x85\u2028\u2029]+\n)+$/u);
    }
  });

  test("json", async () => {
    for (const { text, finishReason } of await generations(JSON_GRAMMAR, 6, favour(['"', "}", "]", '",', '"}'], 8))) {
      assert.equal(finishReason, "stop", text);
      const value = JSON.parse(text);
      assert.equal(typeof value, "object");
      assert.ok(value !== null && !Array.isArray(value));
    }
  });
});
