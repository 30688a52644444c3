/**
 * OpenAI request bodies (already schema-checked) → what the model runs: prompts as token ids and GenerateOptions.
 * The checks that need the model (context length, vocabulary, the option rules of the sampler) happen here, so a
 * bad request is a 400 at once rather than after waiting for a slot.
 */
import { checkTools } from "../chat/tools";
import type { ChatMessage, ToolDefinition } from "../chat/types";
import { InvalidArgumentError, UnsupportedModelError } from "../errors";
import type { GenerateOptions } from "../generation/types";
import { resolveConstraint } from "../grammar";
import type { LlamaModel } from "../model";
import { resolveSampling } from "../sampling/options";
import { ApiError, contextOverflowError, invalidParameter, missingParameter, unsupportedParameter } from "./errors";
import type { ChatCompletionBody, CompletionBody, FunctionToolBody, GenerationBody } from "./schemas";

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
  /** Each prompt's length as text, where the legacy logprobs' text_offset of its choices starts (chat: 0). */
  promptTextLengths: number[];
  n: number;
  /** Options of every choice; a given seed is offset by the choice's index (choiceOptions). */
  options: GenerateOptions;
  stream: boolean;
  /** Stream a last chunk with the usage counts (stream_options.include_usage). */
  includeUsage: boolean;
  /** When the model may call tools: replies are parsed into tool calls. */
  tools?: ToolCalling;
}

/** The tools a reply may call, and whether it may make several calls. */
export interface ToolCalling {
  definitions: ToolDefinition[];
  parallel: boolean;
}

/** OpenAI's tool_choice: "none", "auto", "required", or a named function ({ type, function: { name } } in chat, { type, name } in Responses). */
export type ToolChoice = "none" | "auto" | "required" | { type: "function"; name?: string; function?: { name: string } } | null | undefined;

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
  // The deprecated forms of tools and tool_choice.
  functions: (v) => Array.isArray(v) && v.length > 0,
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
  const messages = body.messages.map(chatMessage);
  const tools = toolCalling(body.tools?.map((t) => t.function), body.tool_choice, body.parallel_tool_calls, "tools");
  const tokens = renderConversation(model, messages, tools.calling?.definitions, "messages");
  // max_completion_tokens is the newer name of max_tokens, and wins when both are given.
  const options = { ...generateOptions(body, maxTokensOf(body, ["max_completion_tokens", "max_tokens"], limits.maxTokensCap)), ...tools.options };
  if (body.logprobs) options.logprobs = body.top_logprobs ?? 0;
  return { ...plan(body, model, [tokens], options, limits), tools: tools.calling };
}

function chatMessage(m: ChatCompletionBody["messages"][number], i: number): ChatMessage {
  const toolCalls = m.role === "assistant" ? m.tool_calls?.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments })) : undefined;
  // An assistant message that makes tool calls may have no content; every other message needs one.
  if (m.content == null && !toolCalls?.length) {
    throw missingParameter(`messages[${i}].content`);
  }
  if (m.role === "tool" && typeof m.tool_call_id !== "string") {
    throw missingParameter(`messages[${i}].tool_call_id`);
  }
  return {
    role: m.role === "developer" ? "system" : m.role,
    content: m.content == null ? "" : typeof m.content === "string" ? m.content : m.content.map((part) => part.text).join(""),
    ...(toolCalls?.length && { toolCalls }),
    ...(m.role === "tool" && { toolCallId: m.tool_call_id! }),
  };
}

/** A conversation (with the tools offered) rendered by the model's chat template and tokenized; errors name `param`. */
export function renderConversation(model: LlamaModel, messages: ChatMessage[], tools: ToolDefinition[] | undefined, param: string): number[] {
  let tokens: number[];
  try {
    tokens = model.applyChatTemplate(messages, { addGenerationPrompt: true, tools }).tokens;
  } catch (err) {
    // The template refuses conversations it cannot render (roles out of order, say).
    if (err instanceof InvalidArgumentError || err instanceof UnsupportedModelError) {
      throw invalidParameter(err.message, err instanceof InvalidArgumentError && err.option === "tools" ? "tools" : param);
    }
    throw err;
  }
  checkPromptLength(tokens, model, param);
  return tokens;
}

/**
 * The tools a request offers under its tool_choice: "none" offers none, "auto" (the default) lets the reply be
 * calls or text, "required" and a named function need the reply to be a call, which only constrained generation
 * can promise (jsonSchemaConstraint).
 */
export function toolCalling(
  given: readonly FunctionToolBody[] | null | undefined,
  choice: ToolChoice,
  parallel: boolean | null | undefined,
  param: string,
): { calling?: ToolCalling; options: Partial<GenerateOptions> } {
  const definitions: ToolDefinition[] = (given ?? []).map((t) => ({
    name: t.name,
    ...(t.description != null && { description: t.description }),
    ...(t.parameters != null && { parameters: t.parameters }),
  }));
  try {
    checkTools(definitions, param);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw invalidParameter(err.message, param);
    throw err;
  }
  const names = new Set(definitions.map((t) => t.name));
  const mode = choice ?? "auto";
  if (definitions.length === 0 || mode === "none") {
    if (mode !== "none" && mode !== "auto") throw invalidParameter("Invalid 'tool_choice': the request offers no tools to call.", "tool_choice");
    return { options: {} };
  }
  const calling = { definitions, parallel: parallel ?? true };
  if (mode === "auto") return { calling, options: {} };
  const named = mode === "required" ? undefined : (mode.function?.name ?? mode.name);
  if (mode !== "required" && !names.has(named ?? "")) {
    throw invalidParameter(`Invalid 'tool_choice': no tool is named '${String(named)}'.`, "tool_choice");
  }
  const callable = definitions.filter((t) => named === undefined || t.name === named);
  return { calling, options: jsonSchemaConstraint({ anyOf: callable.map(toolCallSchema) }, "tool_choice") };
}

/** The JSON Schema of one call of `tool` in the built-in format: {"name": ..., "parameters": {...}}. */
function toolCallSchema(tool: ToolDefinition): object {
  return {
    type: "object",
    properties: { name: { const: tool.name }, parameters: tool.parameters ?? { type: "object" } },
    required: ["name", "parameters"],
    additionalProperties: false,
  };
}

/** OpenAI's legacy default for /v1/completions when max_tokens is not given. */
const COMPLETION_DEFAULT_MAX_TOKENS = 16;

export function planCompletion(body: CompletionBody, model: LlamaModel, limits: RequestLimits): GenerationPlan {
  refuseUnsupported(body, COMPLETION_UNSUPPORTED);
  const prompts = completionPrompts(body.prompt).map((prompt) => {
    const tokens = typeof prompt === "string" ? model.tokenize(prompt, { addBos: true }) : prompt;
    checkTokenIds(tokens, model, "prompt");
    checkPromptLength(tokens, model, "prompt");
    return tokens;
  });
  const options = generateOptions(body, maxTokensOf(body, ["max_tokens"], limits.maxTokensCap, COMPLETION_DEFAULT_MAX_TOKENS));
  let textLengths = prompts.map(() => 0);
  if (body.logprobs != null) {
    options.logprobs = body.logprobs;
    textLengths = completionPrompts(body.prompt).map((prompt, i) => (typeof prompt === "string" ? prompt : model.detokenize(prompts[i])).length);
  }
  return plan(body, model, prompts, options, limits, textLengths);
}

/** The options of choice `index` of a prompt: with a seed, each choice gets its own (seed + index). */
export function choiceOptions(plan: GenerationPlan, index: number, signal: AbortSignal): GenerateOptions {
  const { seed } = plan.options;
  return { ...plan.options, seed: seed === undefined ? undefined : seed + index, signal };
}

function plan(
  body: GenerationBody,
  model: LlamaModel,
  prompts: number[][],
  options: GenerateOptions,
  limits: RequestLimits,
  promptTextLengths = prompts.map(() => 0),
): GenerationPlan {
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
  checkSampling(options, model);
  return {
    prompts,
    promptTextLengths,
    n,
    options,
    stream: body.stream ?? false,
    includeUsage: body.stream_options?.include_usage ?? false,
  };
}

/** The sampler's own rules (logit_bias ids within the vocabulary, ...), checked before the request waits for a slot. */
export function checkSampling(options: GenerateOptions, model: LlamaModel): void {
  try {
    resolveSampling(options, model.info.vocabSize);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw invalidParameter(err.message, err.option === undefined ? undefined : PARAM_OF_OPTION[err.option]);
    throw err;
  }
}

/**
 * The tokens each choice may generate: the first of `params` the request gives, else `defaultTokens`, at most the
 * server's cap (undefined: no limit but the context). A value over the cap is a 400 naming its parameter rather
 * than quietly cut short, as OpenAI's API refuses a max_tokens above a model's limit.
 */
export function maxTokensOf(body: GenerationBody, params: readonly string[], cap: number | undefined, defaultTokens?: number): number | undefined {
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

export function generateOptions(body: GenerationBody, maxTokens: number | null | undefined): GenerateOptions {
  const options: Record<string, unknown> = {};
  for (const [param, option] of Object.entries(OPTION_OF_PARAM)) {
    if (body[param] != null) options[option] = body[param];
  }
  // Nucleus sampling over no probability mass keeps only the most likely token: greedy.
  if (body.top_p === 0) {
    delete options.topP;
    options.temperature = 0;
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

export function checkTokenIds(tokens: readonly number[], model: LlamaModel, param: string): void {
  const outOfRange = tokens.find((id) => id >= model.info.vocabSize);
  if (outOfRange !== undefined) {
    throw invalidParameter(`Invalid '${param}': token id ${outOfRange} is out of range (vocabulary size ${model.info.vocabSize}).`, param);
  }
}

export function checkPromptLength(tokens: number[], model: LlamaModel, param: string): void {
  if (tokens.length === 0) throw invalidParameter(`Invalid '${param}': the prompt is empty.`, param);
  if (tokens.length > model.info.contextSize) throw contextOverflowError(tokens.length, model.info.contextSize, param);
}

export function refuseUnsupported(body: GenerationBody, unsupported: Record<string, (value: unknown) => boolean>): void {
  for (const [param, isUsed] of Object.entries(unsupported)) {
    if (isUsed(body[param])) {
      throw unsupportedParameter(`'${param}' is not supported by this server.`, param);
    }
  }
}
