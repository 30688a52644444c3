/**
 * Constrained generation: `grammar` (GBNF), `jsonSchema` and `json: true` compiled to the table the engine's matcher
 * reads. The tokens that cannot continue a valid output are masked in the native sampler, so the output parses.
 */
import { InvalidArgumentError } from "../errors";
import { compileGrammar, type CompiledGrammar } from "./gbnf";
import { JSON_GBNF, jsonSchemaToGbnf } from "./json-schema";

export { compileGrammar, type CompiledGrammar } from "./gbnf";
export { JSON_GBNF, jsonSchemaToGbnf } from "./json-schema";

/** The generation options that constrain the output; at most one of them. */
export interface ConstraintOptions {
  /** A GBNF grammar (llama.cpp's syntax) the output must match from its `root` rule. */
  grammar?: string;
  /** A JSON Schema (see jsonSchemaToGbnf for the supported subset) the output must be a valid instance of. */
  jsonSchema?: object | boolean;
  /** The output is one JSON value. */
  json?: boolean;
}

/** The grammar of a JSON Schema: what tools and response formats constrain their output with. */
export function constraintFromJsonSchema(schema: unknown): CompiledGrammar {
  return compileGrammar(jsonSchemaToGbnf(schema));
}

/** The compiled constraint the options ask for, or undefined; typed errors for a bad or conflicting one. */
export function resolveConstraint(options: ConstraintOptions): CompiledGrammar | undefined {
  const { grammar, jsonSchema, json } = options;
  if (json !== undefined && typeof json !== "boolean") throw new InvalidArgumentError(`json must be a boolean (got ${typeof json})`, { option: "json" });
  const given = (["grammar", "jsonSchema", "json"] as const).filter((k) => options[k] !== undefined && options[k] !== false);
  if (given.length > 1) {
    throw new InvalidArgumentError(`${given.join(" and ")} cannot be combined: each constrains the whole output`, { option: given[1] });
  }
  if (grammar !== undefined) {
    if (typeof grammar !== "string") throw new InvalidArgumentError("grammar must be a string of GBNF", { option: "grammar" });
    return compileGrammar(grammar);
  }
  if (jsonSchema !== undefined) return constraintFromJsonSchema(jsonSchema);
  return json ? compileGrammar(JSON_GBNF) : undefined;
}
