"use strict";
// JSON Schema constrained generation: the compiler's subset and its errors, then 1,000 random schemas within the
// subset (a seeded generator) each with a sampled generation on sotu-l3-26m, every output parsed and validated by
// ajv (with ajv-formats for date, date-time and uuid).
const { test, describe, before, after } = require("node:test");
const assert = require("node:assert/strict");
const Ajv = require("ajv").default;
const addFormats = require("ajv-formats").default;
const api = require("../dist/cjs/index.js");
const { NEEDS_REFERENCE_MODELS, modelPath } = require("./helpers/models.js");
const { makeRandom } = require("./helpers/random.js");

const { compileGrammar, jsonSchemaToGbnf, constraintFromJsonSchema, UnsupportedSchemaError, InvalidArgumentError } = api;

const SCHEMAS = 1000;
/** Generations in flight at once: they share the decode loop's passes. */
const CONCURRENCY = 16;

/** A random schema of the supported subset; `defs` collects definitions for $ref. */
function randomSchema(random, depth, defs) {
  const pick = (list) => list[Math.floor(random() * list.length)];
  const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
  const word = () => pick(["alpha", "beta", "union", "state", "tax", "war", "peace", "é-accent", 'quote"d', "back\\slash", ""]);
  const leaf = () => {
    switch (pick(["string", "enum", "const", "pattern", "format", "integer", "number", "boolean", "null"])) {
      case "string":
        return { type: "string" };
      case "enum":
      {
        const values = Array.from({ length: int(1, 4) }, () => (random() < 0.7 ? word() : pick([1, -2.5, true, null, [1, "a"], { k: "v" }])));
        return { enum: values.filter((v, i) => values.findIndex((w) => JSON.stringify(w) === JSON.stringify(v)) === i) };
      }
      case "const":
        return { const: random() < 0.5 ? word() : int(-50, 50) };
      case "pattern":
        return { type: "string", pattern: pick(["^[a-z]{2,5}$", "^\\d{3}-\\d{4}$", "^(yes|no)$", "^[A-Z][a-z]{1,10}$", "^id_[0-9]{1,6}$", "^(ab){1,4}c?$", "^\\w{1,8}@\\w{1,8}\\.com$", "^[^\\s]{1,4}$", "x.y"]) };
      case "format":
        return { type: "string", format: pick(["date", "date-time", "uuid"]) };
      case "integer": {
        const schema = { type: "integer" };
        if (random() < 0.7) schema.minimum = int(-1000, 1000);
        if (random() < 0.7) schema.maximum = (schema.minimum ?? int(-1000, 0)) + int(0, 5000);
        return schema;
      }
      case "number": {
        const schema = { type: "number" };
        if (random() < 0.6) schema.minimum = int(-100, 100) + pick([0, 0.25, 0.5]);
        if (random() < 0.6) schema.maximum = (schema.minimum ?? -100) + int(1, 300) + pick([0, 0.75]);
        return schema;
      }
      case "boolean":
        return { type: "boolean" };
      default:
        return { type: "null" };
    }
  };
  if (depth >= 3) return leaf();
  const kind = pick(["leaf", "leaf", "leaf", "object", "object", "array", "anyOf", "oneOf", "ref", "nullable", "typeList"]);
  switch (kind) {
    case "object": {
      const names = Array.from({ length: int(1, 4) }, (_, i) => `${word() || "p"}${i}`);
      const schema = { type: "object", properties: Object.fromEntries(names.map((n) => [n, randomSchema(random, depth + 1, defs)])) };
      const required = names.filter(() => random() < 0.6);
      if (required.length > 0) schema.required = required;
      if (random() < 0.7) schema.additionalProperties = false;
      return schema;
    }
    case "array": {
      const schema = { type: "array", items: randomSchema(random, depth + 1, defs) };
      if (random() < 0.6) schema.minItems = int(0, 2);
      schema.maxItems = (schema.minItems ?? 0) + int(0, 3);
      return schema;
    }
    case "anyOf":
      return { anyOf: Array.from({ length: int(2, 3) }, () => randomSchema(random, depth + 1, defs)) };
    case "oneOf":
      // Branches of different types, so that a value matches exactly one.
      return { oneOf: [{ type: "string", pattern: "^[a-z]{1,12}$" }, { type: "integer", minimum: 0, maximum: 99 }, { type: "boolean" }].slice(0, int(2, 3)) };
    case "ref": {
      const name = `def${Object.keys(defs).length}`;
      defs[name] = null; // taken before the definition's own references pick names
      defs[name] = randomSchema(random, depth + 1, defs);
      return { $ref: `#/$defs/${name}` };
    }
    case "nullable": {
      // OpenAPI's nullable goes with a type (ajv requires one).
      let typed = leaf();
      while (typed.type === undefined) typed = leaf();
      return { ...typed, nullable: true, description: "may be null" };
    }
    case "typeList":
      return { type: pick([["string", "null"], ["integer", "boolean"], ["number", "string"]]) };
    default:
      return leaf();
  }
}

function randomRootSchema(random) {
  const defs = {};
  const body = randomSchema(random, 0, defs);
  return Object.keys(defs).length > 0 ? { ...body, $defs: defs } : body;
}

describe("the JSON Schema compiler", () => {
  test("every random schema of the subset compiles", () => {
    const random = makeRandom(7);
    for (let i = 0; i < 200; i++) compileGrammar(jsonSchemaToGbnf(randomRootSchema(random)));
  });

  test("unsupported keywords are an UnsupportedSchemaError naming them and where they are", () => {
    const cases = [
      [{ type: "string", minLength: 3 }, "minLength", ""],
      [{ type: "object", properties: { a: { type: "number", multipleOf: 2 } } }, "multipleOf", "/properties/a"],
      [{ allOf: [{ type: "string" }] }, "allOf", ""],
      [{ type: "array", items: { not: {} } }, "not", "/items"],
      [{ type: "string", format: "email" }, "format", ""],
      [{ type: "object", additionalProperties: { type: "string" } }, "additionalProperties", ""],
      [{ type: "string", pattern: "(?=a)b" }, "pattern", ""],
      [{ type: "string", pattern: "(a)\\1" }, "pattern", ""],
      [{ $ref: "https://example.com/schema" }, "$ref", ""],
      [{ $ref: "#/$defs/missing" }, "$ref", ""],
      [{ type: "object", required: ["x"], properties: {} }, "required", ""],
      [{ type: "integer", minimum: 5, maximum: 4 }, "minimum", ""],
      [{ type: "widget" }, "type", ""],
      [{ type: "array", maxItems: 5000 }, "maxItems", ""],
    ];
    for (const [schema, keyword, path] of cases) {
      assert.throws(
        () => jsonSchemaToGbnf(schema),
        (err) => err instanceof UnsupportedSchemaError && err instanceof InvalidArgumentError && err.keyword === keyword && err.path === path,
        JSON.stringify(schema),
      );
    }
  });

  test("integer bounds are exact: every integer of a range and nothing outside it", async () => {
    // Checked on the engine's matcher over a vocabulary of single characters.
    const { loadBinding } = require("../dist/cjs/native/binding.js");
    const binding = loadBinding();
    const chars = ["", ..."-0123456789"];
    const encoder = new TextEncoder();
    const offsets = new Uint32Array(chars.length + 1);
    chars.forEach((c, i) => (offsets[i + 1] = offsets[i] + encoder.encode(c).length));
    const trie = new binding.TokenTrie(encoder.encode(chars.join("")), offsets);
    const matches = (table, text) => {
      const g = new binding.Grammar(trie, table);
      try {
        for (const c of text) g.accept(chars.indexOf(c));
      } catch {
        return false;
      }
      return g.complete;
    };
    for (const [minimum, maximum] of [[-123, 45], [7, 1003], [-5, -1], [0, 0], [99, 101], [-1000, -999]]) {
      const { table } = constraintFromJsonSchema({ type: "integer", minimum, maximum });
      for (let v = minimum - 30; v <= maximum + 30; v++) {
        assert.equal(matches(table, String(v)), v >= minimum && v <= maximum, `${v} in [${minimum}, ${maximum}]`);
      }
      assert.equal(matches(table, `0${Math.abs(maximum)}`), false, "a leading zero");
    }
  });
});

describe("1,000 random schemas on sotu-l3-26m", NEEDS_REFERENCE_MODELS, () => {
  let model;
  before(async () => {
    model = await api.loadModel(modelPath("trained", "sotu-l3-26m"), { threads: 1 });
  });
  after(async () => {
    await model.dispose();
  });

  test("every output parses and validates", async () => {
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    // The model writes prose: the tokens that close strings, arrays and objects are favoured so that generations
    // end within maxTokens. The grammar alone decides which tokens are possible.
    const bias = Object.fromEntries(['"', '",', '"}', '"]', ' "', "]", "}", "],", "},"].flatMap((t) => model.tokenize(t, { addBos: false })).map((id) => [id, 8]));
    const random = makeRandom(2024);
    const schemas = Array.from({ length: SCHEMAS }, () => randomRootSchema(random));
    const failures = [];
    for (let first = 0; first < SCHEMAS; first += CONCURRENCY) {
      const batch = schemas.slice(first, first + CONCURRENCY);
      const results = await Promise.all(
        batch.map((jsonSchema, i) => model.complete("JSON:", { jsonSchema, seed: first + i, temperature: 0.9, maxTokens: 400, logitBias: bias, repeatPenalty: 1.3, repeatLastN: 32 })),
      );
      results.forEach((result, i) => {
        const schema = batch[i];
        let value;
        try {
          value = JSON.parse(result.text);
        } catch (err) {
          failures.push({ schema, text: result.text, finishReason: result.finishReason, error: err.message });
          return;
        }
        if (!ajv.validate(schema, value)) failures.push({ schema, text: result.text, errors: ajv.errorsText() });
      });
    }
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${SCHEMAS} outputs failed`);
  });
});
