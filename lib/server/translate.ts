/**
 * OpenAI request bodies (already schema-checked) → what the model runs: prompts as token ids and GenerateOptions.
 * The checks that need the model (context length, vocabulary, the option rules of the sampler) happen here, so a
 * bad request is a 400 at once rather than after waiting for a slot.
 */
import type { ChatMessage } from "../chat/types";
import { InvalidArgumentError, UnsupportedModelError } from "../errors";
import type { GenerateOptions } from "../generation/types";
import { resolveConstraint } from "../grammar";
import type { LlamaModel } from "../model";
import { resolveSampling } from "../sampling/options";
import { ApiError, contextOverflowError, invalidParameter } from "./errors";
import type { ChatCompletionBody, CompletionBody, GenerationBody } from "./schemas";

/** The server's caps on one request, so that no request takes every slot or holds one for ever (fairness). */
export interface RequestLimits {
  /** Choices per prompt (`n`) at most. */
  maxN: number;
  /** Tokens one choice may generate at most; undefined: up to the context. */
  maxTokensCap: number | undefined;
}

export interface GenerationPlan {
  /** The prompts as token ids: chat has one, completions may have several; each is answered `n` times. */
  prompts: number[][];
  n: number;
  /** Options of every choice; a given seed is offset by the choice's index (choiceOptions). */
  options: GenerateOptions;
  stream: boolean;
  /** Stream a last chunk with the usage counts (stream_options.include_usage). */
  includeUsage: boolean;
}

/** OpenAI parameters that map one to one onto a GenerateOptions key (top_k and the like are llama.cpp's names). */
const OPTION_OF_PARAM = {
  temperature: "temperature",
  top_p: "topP",
  top_k: "topK",
  min_p: "minP",
  typical_p: "typicalP",
  repeat_penalty: "repeatPenalty",
  repeat_last_n: "repeatLastN",
  frequency_penalty: "frequencyPenalty",
  presence_penalty: "presencePenalty",
  seed: "seed",
  logit_bias: "logitBias",
  ignore_eos: "ignoreEos",
} as const satisfies Record<string, keyof GenerateOptions>;

const PARAM_OF_OPTION: Record<string, string> = {
  ...Object.fromEntries(Object.entries(OPTION_OF_PARAM).map(([param, option]) => [option, param])),
  logprobs: "logprobs",
};

/** Parameters whose use this server cannot honour: refused rather than silently ignored. */
const CHAT_UNSUPPORTED: Record<string, (value: unknown) => boolean> = {
  tools: (v) => Array.isArray(v) && v.length > 0,
  functions: (v) => Array.isArray(v) && v.length > 0,
  // "none" and "auto" ask nothing of a request without tools; "required" or a named function do.
  tool_choice: (v) => v === "required" || (typeof v === "object" && v !== null),
  function_call: (v) => typeof v === "object" && v !== null,
  audio: (v) => typeof v === "object" && v !== null,
  modalities: (v) => Array.isArray(v) && v.some((m) => m !== "text"),
};
const COMPLETION_UNSUPPORTED: Record<string, (value: unknown) => boolean> = {
  echo: (v) => v === true,
  suffix: (v) => typeof v === "string" && v.length > 0,
  best_of: (v) => typeof v === "number" && v > 1,
};

export function planChatCompletion(body: ChatCompletionBody, model: LlamaModel, limits: RequestLimits): GenerationPlan {
  refuseUnsupported(body, CHAT_UNSUPPORTED);
  if (body.top_logprobs != null && !body.logprobs) {
    throw invalidParameter("Invalid 'top_logprobs': requires 'logprobs' to be true.", "top_logprobs");
  }
  const messages: ChatMessage[] = body.messages.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: typeof m.content === "string" ? m.content : m.content.map((part) => part.text).join(""),
  }));
  let tokens: number[];
  try {
    tokens = model.applyChatTemplate(messages, { addGenerationPrompt: true }).tokens;
  } catch (err) {
    // The template refuses conversations it cannot render (roles out of order, say).
    if (err instanceof InvalidArgumentError || err instanceof UnsupportedModelError) {
      throw invalidParameter(err.message, "messages");
    }
    throw err;
  }
  checkPromptLength(tokens, model, "messages");
  // max_completion_tokens is the newer name of max_tokens, and wins when both are given.
  const options = generateOptions(body, maxTokensOf(body, ["max_completion_tokens", "max_tokens"], limits.maxTokensCap));
  if (body.logprobs) options.logprobs = body.top_logprobs ?? 0;
  return plan(body, model, [tokens], options, limits);
}

/** OpenAI's legacy default for /v1/completions when max_tokens is not given. */
const COMPLETION_DEFAULT_MAX_TOKENS = 16;

export function planCompletion(body: CompletionBody, model: LlamaModel, limits: RequestLimits): GenerationPlan {
  refuseUnsupported(body, COMPLETION_UNSUPPORTED);
  const prompts = completionPrompts(body.prompt).map((prompt) => {
    const tokens = typeof prompt === "string" ? model.tokenize(prompt, { addBos: true }) : prompt;
    const outOfRange = tokens.find((id) => id >= model.info.vocabSize);
    if (outOfRange !== undefined) {
      throw invalidParameter(`Invalid 'prompt': token id ${outOfRange} is out of range (vocabulary size ${model.info.vocabSize}).`, "prompt");
    }
    checkPromptLength(tokens, model, "prompt");
    return tokens;
  });
  const options = generateOptions(body, maxTokensOf(body, ["max_tokens"], limits.maxTokensCap, COMPLETION_DEFAULT_MAX_TOKENS));
  if (body.logprobs != null) options.logprobs = body.logprobs;
  return plan(body, model, prompts, options, limits);
}

/** The options of choice `index` of a prompt: with a seed, each choice gets its own (seed + index). */
export function choiceOptions(plan: GenerationPlan, index: number, signal: AbortSignal): GenerateOptions {
  const { seed } = plan.options;
  return { ...plan.options, seed: seed === undefined ? undefined : seed + index, signal };
}

function plan(body: GenerationBody, model: LlamaModel, prompts: number[][], options: GenerateOptions, limits: RequestLimits): GenerationPlan {
  if (body.stream_options != null && !body.stream) {
    throw invalidParameter("Invalid 'stream_options': only allowed when 'stream' is true.", "stream_options");
  }
  const n = body.n ?? 1;
  if (n > limits.maxN) {
    // OpenAI's wording and code for an integer over its maximum.
    throw new ApiError(400, `Invalid 'n': integer above maximum value. Expected a value <= ${limits.maxN}, but got ${n} instead.`, {
      param: "n",
      code: "integer_above_max_value",
    });
  }
  try {
    // The sampler's own rules (logit_bias ids within the vocabulary, ...), checked before the request waits for a slot.
    resolveSampling(options, model.info.vocabSize);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw invalidParameter(err.message, err.option === undefined ? undefined : PARAM_OF_OPTION[err.option]);
    throw err;
  }
  return {
    prompts,
    n,
    options,
    stream: body.stream ?? false,
    includeUsage: body.stream_options?.include_usage ?? false,
  };
}

/**
 * The tokens each choice may generate: the first of `params` the request gives, else `defaultTokens`, at most the
 * server's cap (undefined: no limit but the context). A value over the cap is a 400 naming its parameter rather
 * than quietly cut short, as OpenAI's API refuses a max_tokens above a model's limit.
 */
function maxTokensOf(body: GenerationBody, params: readonly string[], cap: number | undefined, defaultTokens?: number): number | undefined {
  let asked: number | undefined;
  for (const param of params) {
    const value = body[param] as number | null | undefined;
    if (value == null) continue;
    if (cap !== undefined && value > cap) {
      throw invalidParameter(`'${param}' is too large: ${value}. This server generates at most ${cap} tokens per choice.`, param);
    }
    asked ??= value;
  }
  const limit = Math.min(asked ?? defaultTokens ?? Infinity, cap ?? Infinity);
  return Number.isFinite(limit) ? limit : undefined;
}

function generateOptions(body: GenerationBody, maxTokens: number | null | undefined): GenerateOptions {
  const options: Record<string, unknown> = {};
  for (const [param, option] of Object.entries(OPTION_OF_PARAM)) {
    if (body[param] != null) options[option] = body[param];
  }
  if (maxTokens != null) options.maxTokens = maxTokens;
  if (body.stop != null) options.stop = typeof body.stop === "string" ? [body.stop] : body.stop;
  return { ...options, ...constraintOf(body) } as GenerateOptions;
}

/** What response_format or grammar (one at most) asks of the output, checked now: a bad one is a 400 naming it. */
function constraintOf(body: GenerationBody): GenerateOptions {
  const format = body.response_format;
  const constrains = format != null && format.type !== "text";
  if (body.grammar != null && constrains) {
    throw invalidParameter("'grammar' and 'response_format' cannot be combined: each constrains the whole output.", "grammar");
  }
  if (body.grammar != null) return checkedConstraint({ grammar: body.grammar }, "grammar");
  if (!constrains) return {};
  if (format.type === "json_schema" && format.json_schema == null) {
    throw invalidParameter("Missing required parameter: 'response_format.json_schema'.", "response_format.json_schema");
  }
  // JSON mode is a JSON object; a json_schema without a schema is any object too.
  const schema = format.type === "json_schema" && format.json_schema.schema !== undefined ? format.json_schema.schema : { type: "object" };
  return jsonSchemaConstraint(schema, "response_format");
}

/**
 * The options that constrain the output to instances of a JSON Schema (the subset lib/grammar supports), checked
 * now: an unsupported or malformed schema is a 400 naming `param`. For every parameter that carries a schema.
 */
export function jsonSchemaConstraint(schema: unknown, param: string): GenerateOptions {
  return checkedConstraint({ jsonSchema: schema as object | boolean }, param);
}

function checkedConstraint(options: GenerateOptions, param: string): GenerateOptions {
  try {
    resolveConstraint(options);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw invalidParameter(`Invalid '${param}': ${err.message}`, param);
    throw err;
  }
  return options;
}

function completionPrompts(prompt: CompletionBody["prompt"]): (string | number[])[] {
  if (typeof prompt === "string") return [prompt];
  if (typeof prompt[0] === "number") return [prompt as number[]];
  return prompt as string[] | number[][];
}

function checkPromptLength(tokens: number[], model: LlamaModel, param: string): void {
  if (tokens.length === 0) throw invalidParameter(`Invalid '${param}': the prompt is empty.`, param);
  if (tokens.length > model.info.contextSize) throw contextOverflowError(tokens.length, model.info.contextSize, param);
}

function refuseUnsupported(body: GenerationBody, unsupported: Record<string, (value: unknown) => boolean>): void {
  for (const [param, isUsed] of Object.entries(unsupported)) {
    if (isUsed(body[param])) {
      throw new ApiError(400, `'${param}' is not supported by this server.`, { param, code: "unsupported_parameter" });
    }
  }
}
