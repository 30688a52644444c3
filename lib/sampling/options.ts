/**
 * The sampling options a caller may give per call, their defaults (llama.cpp's), and their validation: every
 * bad value is rejected up front with an InvalidArgumentError that names the option, so nothing fails mid-way
 * through a generation.
 */
import { InvalidArgumentError } from "../errors";
import type { OptionNames } from "../option-names";

/** Every stage of the truncation / temperature part of the chain, in llama.cpp's default order. */
export const SAMPLER_NAMES = Object.freeze(["top_k", "typical_p", "top_p", "min_p", "temperature"] as const);

export type SamplerName = (typeof SAMPLER_NAMES)[number];

/** A user hook on the raw logits of each step; `tokens` is the prompt plus the ids generated so far. */
export type LogitsProcessor = (logits: Float32Array, tokens: readonly number[]) => void;

export interface SamplingOptions {
  /** 0 = greedy (argmax). Default 0.8. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 disables. Default 40. */
  topK?: number;
  /** Keep the smallest set whose probability reaches p, in (0, 1]; 1 disables. Default 0.95. */
  topP?: number;
  /** Drop tokens whose probability is below minP × the top probability, in [0, 1]; 0 disables. Default 0.05. */
  minP?: number;
  /** Locally typical sampling: keep the tokens whose surprisal is closest to the entropy up to mass p, in (0, 1]; 1 disables. Default 1. */
  typicalP?: number;
  /** Divides positive logits and multiplies negative ones of recently seen tokens; > 0, 1 disables. Default 1. */
  repeatPenalty?: number;
  /** How many of the latest tokens the penalties look at; 0 disables them, -1 = the whole history. Default 64. */
  repeatLastN?: number;
  /** Subtracted from a logit once per occurrence in the window (OpenAI uses [-2, 2]). Default 0. */
  frequencyPenalty?: number;
  /** Subtracted from a logit once if the token occurs in the window (OpenAI uses [-2, 2]). Default 0. */
  presencePenalty?: number;
  /** Token id → value added to its logit; -Infinity bans the token. */
  logitBias?: Readonly<Record<number, number>> | ReadonlyMap<number, number>;
  /** Same seed + same input = same tokens. Default: random. */
  seed?: number;
  /** Order of the truncation / temperature stages; a stage left out is not applied. Default: SAMPLER_NAMES. */
  samplers?: readonly SamplerName[];
  /** Report the chosen token's log-probability and this many top alternatives (0 to 20). Default: no logprobs. */
  logprobs?: number;
  /** Called on the full logits of every step before anything else; may change them in place. */
  logitsProcessor?: LogitsProcessor;
}

/** Every option of SamplingOptions, for rejecting unknown (misspelled) ones. */
export const SAMPLING_OPTION_NAMES = {
  temperature: true, topK: true, topP: true, minP: true, typicalP: true, repeatPenalty: true, repeatLastN: true,
  frequencyPenalty: true, presencePenalty: true, logitBias: true, seed: true, samplers: true, logprobs: true, logitsProcessor: true,
} as const satisfies OptionNames<SamplingOptions>;

export const MAX_LOGPROBS = 20;

/** The defaults of every option that has one (seed: random; logitBias, logprobs, logitsProcessor: none). */
export const SAMPLING_DEFAULTS = Object.freeze({
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  typicalP: 1,
  repeatPenalty: 1,
  repeatLastN: 64,
  frequencyPenalty: 0,
  presencePenalty: 0,
  samplers: SAMPLER_NAMES,
} as const);

/** Options after defaults and validation; topK is at most the vocabulary size. */
export interface ResolvedSampling {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly typicalP: number;
  readonly repeatPenalty: number;
  readonly repeatLastN: number;
  readonly frequencyPenalty: number;
  readonly presencePenalty: number;
  readonly logitBias: ReadonlyMap<number, number>;
  readonly seed: number;
  readonly samplers: readonly SamplerName[];
  readonly logprobs: number | undefined;
  readonly logitsProcessor: LogitsProcessor | undefined;
}

export function resolveSampling(options: SamplingOptions, vocabSize: number): ResolvedSampling {
  const d = SAMPLING_DEFAULTS;
  const resolved: ResolvedSampling = {
    temperature: checkNumber("temperature", options.temperature ?? d.temperature, (v) => v >= 0 && v < Infinity, "a finite number >= 0"),
    topK: Math.min(checkNumber("topK", options.topK ?? d.topK, (v) => Number.isInteger(v) && v >= 0, "an integer >= 0"), vocabSize),
    topP: checkNumber("topP", options.topP ?? d.topP, (v) => v > 0 && v <= 1, "in (0, 1]"),
    minP: checkNumber("minP", options.minP ?? d.minP, (v) => v >= 0 && v <= 1, "in [0, 1]"),
    typicalP: checkNumber("typicalP", options.typicalP ?? d.typicalP, (v) => v > 0 && v <= 1, "in (0, 1]"),
    repeatPenalty: checkNumber("repeatPenalty", options.repeatPenalty ?? d.repeatPenalty, (v) => v > 0 && v < Infinity, "a finite number > 0"),
    repeatLastN: checkNumber("repeatLastN", options.repeatLastN ?? d.repeatLastN, (v) => Number.isInteger(v) && v >= -1, "an integer >= -1"),
    frequencyPenalty: checkNumber("frequencyPenalty", options.frequencyPenalty ?? d.frequencyPenalty, Number.isFinite, "a finite number"),
    presencePenalty: checkNumber("presencePenalty", options.presencePenalty ?? d.presencePenalty, Number.isFinite, "a finite number"),
    logitBias: resolveLogitBias(options.logitBias, vocabSize),
    seed: checkNumber("seed", options.seed ?? randomSeed(), Number.isSafeInteger, "a safe integer"),
    samplers: resolveSamplerOrder(options.samplers ?? d.samplers),
    logprobs:
      options.logprobs === undefined
        ? undefined
        : checkNumber("logprobs", options.logprobs, (v) => Number.isInteger(v) && v >= 0 && v <= MAX_LOGPROBS, `an integer in [0, ${MAX_LOGPROBS}]`),
    logitsProcessor: resolveLogitsProcessor(options.logitsProcessor),
  };
  return Object.freeze(resolved);
}

function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}

function checkNumber(name: string, value: unknown, ok: (v: number) => boolean, rule: string): number {
  if (typeof value !== "number" || Number.isNaN(value) || !ok(value)) {
    throw new InvalidArgumentError(`${name} must be ${rule} (got ${describe(value)})`, { option: name });
  }
  return value;
}

function resolveSamplerOrder(samplers: unknown): readonly SamplerName[] {
  if (!Array.isArray(samplers)) {
    throw new InvalidArgumentError(`samplers must be an array of sampler names (got ${describe(samplers)})`, { option: "samplers" });
  }
  const seen = new Set<SamplerName>();
  for (const [i, name] of samplers.entries()) {
    if (!(SAMPLER_NAMES as readonly unknown[]).includes(name)) {
      throw new InvalidArgumentError(`samplers[${i}] must be one of ${SAMPLER_NAMES.join(", ")} (got ${describe(name)})`, { option: "samplers" });
    }
    if (seen.has(name)) throw new InvalidArgumentError(`samplers must not list "${name}" twice`, { option: "samplers" });
    seen.add(name);
  }
  return Object.freeze([...seen]);
}

function resolveLogitBias(bias: SamplingOptions["logitBias"], vocabSize: number): ReadonlyMap<number, number> {
  const resolved = new Map<number, number>();
  if (bias === undefined) return resolved;
  if (typeof bias !== "object" || bias === null) {
    throw new InvalidArgumentError(`logitBias must be an object or a Map of token id → bias (got ${describe(bias)})`, { option: "logitBias" });
  }
  // A Record's keys are strings: only the canonical spelling of an integer names a token ("01" or "1e3" would not).
  const entries: [unknown, unknown][] =
    bias instanceof Map ? [...bias] : Object.entries(bias).map(([key, value]) => [String(Number(key)) === key ? Number(key) : key, value]);
  for (const [id, value] of entries) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new InvalidArgumentError(`logitBias token ids must be integers in [0, ${vocabSize}) (got ${describe(id)})`, { option: "logitBias" });
    }
    // +Infinity would make the softmax Infinity / Infinity; a ban (-Infinity) is fine.
    if (typeof value !== "number" || Number.isNaN(value) || value === Infinity) {
      throw new InvalidArgumentError(`logitBias[${id}] must be a finite number or -Infinity (got ${describe(value)})`, { option: "logitBias" });
    }
    resolved.set(id, value);
  }
  return resolved;
}

function resolveLogitsProcessor(hook: unknown): LogitsProcessor | undefined {
  if (hook !== undefined && typeof hook !== "function") {
    throw new InvalidArgumentError(`logitsProcessor must be a function (got ${describe(hook)})`, { option: "logitsProcessor" });
  }
  return hook as LogitsProcessor | undefined;
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  if (typeof value === "object" && value !== null) return Array.isArray(value) ? "an array" : "an object";
  return String(value);
}
