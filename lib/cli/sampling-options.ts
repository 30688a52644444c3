/** The generation options `run` and `chat` share: spelled once, with the seeds' option names. */
import { checkGenerateOptions } from "../model";
import type { GenerateOptions } from "../generation/types";
import { resolveSampling, SAMPLING_DEFAULTS, type SamplingOptions } from "../sampling/options";
import type { OptionSpec, ParsedOptions } from "./args";

/** resolveSampling's rule for one option; no vocabulary is known yet, so topK is not capped by one. */
function samplingRule(option: keyof SamplingOptions): (value: number | string) => void {
  return (value) => void resolveSampling({ [option]: value }, Number.MAX_SAFE_INTEGER);
}

const DEFAULT_MAX_TOKENS = 256;
/** --max-tokens -1, as llama.cpp's -n -1: no count, the generation ends at an end token or the end of the context. */
const UNTIL_CONTEXT_ENDS = -1;

export const SAMPLING_OPTIONS: Record<string, OptionSpec> = {
  "max-tokens": {
    type: "string", number: "int", short: "n", placeholder: "N", description: `Tokens to generate (default ${DEFAULT_MAX_TOKENS}; ${UNTIL_CONTEXT_ENDS}: until the context ends)`,
    check: (maxTokens) => maxTokens === UNTIL_CONTEXT_ENDS || checkGenerateOptions({ maxTokens: maxTokens as number }),
  },
  temperature: {
    type: "string", number: "float", placeholder: "T", check: samplingRule("temperature"),
    description: `Sampling temperature, 0 = greedy (default ${SAMPLING_DEFAULTS.temperature})`,
  },
  "top-k": {
    type: "string", number: "int", placeholder: "K", check: samplingRule("topK"),
    description: `Keep the K most likely tokens, 0 = off (default ${SAMPLING_DEFAULTS.topK})`,
  },
  "top-p": {
    type: "string", number: "float", placeholder: "P", check: samplingRule("topP"),
    description: `Nucleus sampling mass, 1 = off (default ${SAMPLING_DEFAULTS.topP})`,
  },
  "min-p": {
    type: "string", number: "float", placeholder: "M", check: samplingRule("minP"),
    description: `Drop tokens below M x the top probability (default ${SAMPLING_DEFAULTS.minP})`,
  },
  "repeat-penalty": {
    type: "string", number: "float", placeholder: "R", check: samplingRule("repeatPenalty"),
    description: `Penalize the last ${SAMPLING_DEFAULTS.repeatLastN} tokens, 1 = off (default ${SAMPLING_DEFAULTS.repeatPenalty})`,
  },
  seed: { type: "string", number: "int", short: "s", placeholder: "S", check: samplingRule("seed"), description: "Random seed (default: random)" },
  "ignore-eos": { type: "boolean", description: "Keep generating past end-of-sequence tokens" },
};

export const STOP_OPTION: OptionSpec = {
  type: "string", multiple: true, placeholder: "TEXT", description: "Stop before this text (may be repeated)",
  check: (stop) => checkGenerateOptions({ stop: [stop as string] }),
};

export function generateOptions(o: ParsedOptions): GenerateOptions {
  return {
    maxTokens: o["max-tokens"] === UNTIL_CONTEXT_ENDS ? undefined : ((o["max-tokens"] as number | undefined) ?? DEFAULT_MAX_TOKENS),
    temperature: o.temperature as number | undefined,
    topK: o["top-k"] as number | undefined,
    topP: o["top-p"] as number | undefined,
    minP: o["min-p"] as number | undefined,
    repeatPenalty: o["repeat-penalty"] as number | undefined,
    seed: o.seed as number | undefined,
    ignoreEos: o["ignore-eos"] as boolean | undefined,
  };
}
