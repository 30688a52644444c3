/**
 * JSON schemas of the request bodies, checked by the framework before a handler runs (wrong types and
 * out-of-range values become 400s naming the parameter, see errors.ts), and the body types they guarantee.
 * Optional parameters accept null as "not given", as OpenAI's API does. OpenAI parameters this server does not
 * implement are typed too, so a wrong type is a 400 like any other (translate.ts refuses the uses it cannot honour);
 * parameters unknown to OpenAI's API are ignored.
 */

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

const number = (range: { minimum?: number; maximum?: number; exclusiveMinimum?: number }) => ({ type: ["number", "null"], ...range });
const integer = (range: { minimum?: number; maximum?: number }) => ({ type: ["integer", "null"], ...range });
const boolean = { type: ["boolean", "null"] };
const string = { type: ["string", "null"] };
const object = { type: ["object", "null"] };
const array = { type: ["array", "null"] };
const tokenIds = { type: "array", minItems: 1, items: { type: "integer", minimum: 0 } };

/** What both endpoints accept: sampling, length, stop, streaming. */
const generationProperties = {
  model: { type: "string" },
  max_tokens: integer({ minimum: 1 }),
  temperature: number({ minimum: 0, maximum: 2 }),
  // 0 is greedy decoding (translate.ts), as OpenAI's API takes it.
  top_p: number({ minimum: 0, maximum: 1 }),
  frequency_penalty: number({ minimum: -2, maximum: 2 }),
  presence_penalty: number({ minimum: -2, maximum: 2 }),
  seed: integer({ minimum: -MAX_SAFE, maximum: MAX_SAFE }),
  // The largest n is the server's option (maxN), checked in translate.ts.
  n: integer({ minimum: 1 }),
  stop: {
    description: "a string or an array of at most 4 non-empty strings",
    anyOf: [{ type: "string", minLength: 1 }, { type: "array", maxItems: 4, items: { type: "string", minLength: 1 } }, { type: "null" }],
  },
  stream: boolean,
  stream_options: { type: ["object", "null"], properties: { include_usage: boolean } },
  logit_bias: {
    type: ["object", "null"],
    propertyNames: { pattern: "^(0|[1-9][0-9]*)$" },
    additionalProperties: { type: "number", minimum: -100, maximum: 100 },
  },
  // Extensions (llama.cpp's names).
  top_k: integer({ minimum: 0 }),
  min_p: number({ minimum: 0, maximum: 1 }),
  typical_p: number({ exclusiveMinimum: 0, maximum: 1 }),
  repeat_penalty: number({ exclusiveMinimum: 0 }),
  repeat_last_n: integer({ minimum: -1 }),
  ignore_eos: boolean,
  // Constrained output (translate.ts compiles it): OpenAI's response_format, and llama.cpp's GBNF `grammar`.
  response_format: {
    type: ["object", "null"],
    required: ["type"],
    properties: {
      type: { enum: ["text", "json_object", "json_schema"] },
      json_schema: {
        type: "object",
        required: ["name"],
        properties: { name: { type: "string" }, description: { type: "string" }, schema: { type: ["object", "boolean"] }, strict: boolean },
      },
    },
  },
  grammar: string,
  // Not implemented: accepted with no effect.
  user: string,
} as const;

/** Chat parameters this server does not implement: accepted with no effect, or refused when used (translate.ts). */
const unimplementedChatProperties = {
  functions: array,
  function_call: { type: ["string", "object", "null"] },
  audio: object,
  modalities: array,
  prediction: object,
  web_search_options: object,
  reasoning_effort: string,
  verbosity: string,
  service_tier: string,
  store: boolean,
  metadata: object,
  prompt_cache_key: string,
  safety_identifier: string,
} as const;

/** A function tool's own fields (chat nests them under `function`; the Responses API gives them flat). */
export const functionProperties = {
  name: { type: "string", minLength: 1 },
  description: string,
  parameters: object,
  strict: boolean,
} as const;

const textContent = {
  description: "a string or an array of text parts",
  anyOf: [
    { type: "string" },
    {
      type: "array",
      items: { type: "object", required: ["type", "text"], properties: { type: { const: "text" }, text: { type: "string" } } },
    },
  ],
} as const;

export const chatCompletionSchema = {
  type: "object",
  required: ["model", "messages"],
  properties: {
    ...generationProperties,
    ...unimplementedChatProperties,
    messages: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        // content may be null only on an assistant message with tool_calls (translate.ts).
        required: ["role"],
        properties: {
          role: { enum: ["system", "developer", "user", "assistant", "tool"] },
          content: { anyOf: [...textContent.anyOf, { type: "null" }], description: textContent.description },
          name: { type: "string" },
          tool_calls: {
            type: ["array", "null"],
            items: {
              type: "object",
              required: ["id", "function"],
              properties: {
                id: { type: "string" },
                type: { const: "function" },
                function: { type: "object", required: ["name", "arguments"], properties: { name: { type: "string" }, arguments: { type: "string" } } },
              },
            },
          },
          tool_call_id: { type: "string" },
        },
      },
    },
    tools: {
      type: ["array", "null"],
      items: {
        type: "object",
        required: ["type", "function"],
        properties: { type: { const: "function" }, function: { type: "object", required: ["name"], properties: functionProperties } },
      },
    },
    tool_choice: {
      description: "'none', 'auto', 'required' or { type: 'function', function: { name } }",
      anyOf: [
        { enum: ["none", "auto", "required", null] },
        { type: "object", required: ["type", "function"], properties: { type: { const: "function" }, function: { type: "object", required: ["name"], properties: { name: { type: "string" } } } } },
      ],
    },
    parallel_tool_calls: boolean,
    max_completion_tokens: integer({ minimum: 1 }),
    logprobs: boolean,
    top_logprobs: integer({ minimum: 0, maximum: 20 }),
  },
} as const;

export const completionSchema = {
  type: "object",
  required: ["model", "prompt"],
  properties: {
    ...generationProperties,
    prompt: {
      description: "a string, an array of strings, an array of token ids or an array of token-id arrays",
      anyOf: [
        { type: "string" },
        { type: "array", minItems: 1, items: { type: "string" } },
        tokenIds,
        { type: "array", minItems: 1, items: tokenIds },
      ],
    },
    logprobs: integer({ minimum: 0, maximum: 20 }),
    // Not implemented: refused when used (translate.ts).
    echo: boolean,
    suffix: string,
    best_of: integer({ minimum: 1 }),
  },
} as const;

export const embeddingsSchema = {
  type: "object",
  required: ["model", "input"],
  properties: {
    model: { type: "string" },
    input: {
      description: "a string, an array of strings, an array of token ids or an array of token-id arrays",
      anyOf: [
        { type: "string" },
        { type: "array", minItems: 1, items: { type: "string" } },
        tokenIds,
        { type: "array", minItems: 1, items: tokenIds },
      ],
    },
    encoding_format: { enum: ["float", "base64", null] },
    dimensions: integer({ minimum: 1 }),
    // Not implemented: accepted with no effect.
    user: string,
  },
} as const;

/** Chat and completion parameters with no meaning in the Responses API (it has its own names for the rest). */
const { max_tokens: _maxTokens, n: _n, stream_options: _streamOptions, ...samplingProperties } = generationProperties;

export const responsesSchema = {
  type: "object",
  required: ["model", "input"],
  properties: {
    ...samplingProperties,
    // Items are checked one by one in responses-route.ts, which names the one at fault.
    input: { description: "a string or an array of input items", anyOf: [{ type: "string" }, { type: "array", items: { type: "object" } }] },
    instructions: string,
    max_output_tokens: integer({ minimum: 1 }),
    previous_response_id: string,
    tools: {
      type: ["array", "null"],
      items: { type: "object", required: ["type"], properties: { type: { type: "string" }, ...functionProperties } },
    },
    tool_choice: {
      description: "'none', 'auto', 'required' or { type: 'function', name }",
      anyOf: [
        { enum: ["none", "auto", "required", null] },
        { type: "object", required: ["type", "name"], properties: { type: { const: "function" }, name: { type: "string" } } },
      ],
    },
    parallel_tool_calls: boolean,
    text: {
      type: ["object", "null"],
      properties: {
        format: {
          type: ["object", "null"],
          required: ["type"],
          properties: { type: { enum: ["text", "json_object", "json_schema"] }, name: { type: "string" }, schema: { type: "object" }, strict: boolean, description: string },
        },
        verbosity: string,
      },
    },
    store: boolean,
    // Not implemented: refused when used (responses-route.ts).
    background: boolean,
    conversation: { type: ["string", "object", "null"] },
    prompt: object,
    top_logprobs: integer({ minimum: 0, maximum: 20 }),
    // Not implemented: accepted with no effect.
    include: array,
    metadata: object,
    reasoning: object,
    truncation: string,
    service_tier: string,
    max_tool_calls: integer({ minimum: 1 }),
    prompt_cache_key: string,
    safety_identifier: string,
  },
} as const;

type Optional<T> = T | null | undefined;

export interface GenerationBody {
  model: string;
  max_tokens?: Optional<number>;
  temperature?: Optional<number>;
  top_p?: Optional<number>;
  frequency_penalty?: Optional<number>;
  presence_penalty?: Optional<number>;
  seed?: Optional<number>;
  n?: Optional<number>;
  stop?: Optional<string | string[]>;
  stream?: Optional<boolean>;
  stream_options?: Optional<{ include_usage?: Optional<boolean> }>;
  logit_bias?: Optional<Record<string, number>>;
  top_k?: Optional<number>;
  min_p?: Optional<number>;
  typical_p?: Optional<number>;
  repeat_penalty?: Optional<number>;
  repeat_last_n?: Optional<number>;
  ignore_eos?: Optional<boolean>;
  response_format?: Optional<ResponseFormat>;
  grammar?: Optional<string>;
  /** Parameters this server does not implement (tools, echo, ...) are looked up by name to refuse them. */
  [unknown: string]: unknown;
}

/** OpenAI's response_format: free text, any JSON object, or an instance of a JSON Schema. */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name: string; description?: string; schema?: object | boolean; strict?: Optional<boolean> } };

export type TextPart = { type: "text"; text: string };

/** A function tool's fields, as functionProperties checks them. */
export interface FunctionToolBody {
  name: string;
  description?: Optional<string>;
  parameters?: Optional<Record<string, unknown>>;
  strict?: Optional<boolean>;
}

export interface ChatCompletionBody extends GenerationBody {
  messages: {
    role: "system" | "developer" | "user" | "assistant" | "tool";
    content?: string | TextPart[] | null;
    name?: string;
    tool_calls?: Optional<{ id: string; type?: "function"; function: { name: string; arguments: string } }[]>;
    tool_call_id?: string;
  }[];
  tools?: Optional<{ type: "function"; function: FunctionToolBody }[]>;
  tool_choice?: Optional<"none" | "auto" | "required" | { type: "function"; function: { name: string } }>;
  parallel_tool_calls?: Optional<boolean>;
  max_completion_tokens?: Optional<number>;
  logprobs?: Optional<boolean>;
  top_logprobs?: Optional<number>;
}

/** An input item as the route reads it (checked there, item by item). */
export interface ResponseInputItem {
  type?: string;
  role?: string;
  content?: unknown;
  call_id?: unknown;
  name?: unknown;
  arguments?: unknown;
  output?: unknown;
  id?: unknown;
}

export interface ResponsesBody extends GenerationBody {
  input: string | ResponseInputItem[];
  instructions?: Optional<string>;
  max_output_tokens?: Optional<number>;
  previous_response_id?: Optional<string>;
  tools?: Optional<({ type: string } & Partial<FunctionToolBody>)[]>;
  tool_choice?: Optional<"none" | "auto" | "required" | { type: "function"; name: string }>;
  parallel_tool_calls?: Optional<boolean>;
  text?: Optional<{ format?: Optional<{ type: "text" | "json_object" | "json_schema"; name?: string; schema?: Record<string, unknown>; strict?: Optional<boolean> }> }>;
  store?: Optional<boolean>;
}

export interface EmbeddingsBody {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: Optional<"float" | "base64">;
  dimensions?: Optional<number>;
}

export interface CompletionBody extends GenerationBody {
  prompt: string | string[] | number[] | number[][];
  logprobs?: Optional<number>;
}
