/** The generation options `run` and `chat` share: spelled once, with the seeds' option names. */
import type { GenerateOptions } from "../generation/types";
import { SAMPLING_DEFAULTS } from "../sampling/sampler";
import type { OptionSpec, ParsedOptions } from "./args";

export const SAMPLING_OPTIONS: Record<string, OptionSpec> = {
  "max-tokens": { type: "string", number: "int", short: "n", placeholder: "N", description: "Tokens to generate (default 256)" },
  temperature: { type: "string", number: "float", placeholder: "T", description: `Sampling temperature, 0 = greedy (default ${SAMPLING_DEFAULTS.temperature})` },
  "top-k": { type: "string", number: "int", placeholder: "K", description: `Keep the K most likely tokens, 0 = off (default ${SAMPLING_DEFAULTS.topK})` },
  "top-p": { type: "string", number: "float", placeholder: "P", description: `Nucleus sampling mass, 1 = off (default ${SAMPLING_DEFAULTS.topP})` },
  "min-p": { type: "string", number: "float", placeholder: "M", description: `Drop tokens below M x the top probability (default ${SAMPLING_DEFAULTS.minP})` },
  "repeat-penalty": { type: "string", number: "float", placeholder: "R", description: "Penalize the last 64 tokens, 1 = off (default 1)" },
  seed: { type: "string", number: "int", short: "s", placeholder: "S", description: "Random seed (default: random)" },
  "ignore-eos": { type: "boolean", description: "Keep generating past end-of-sequence tokens" },
};

export function generateOptions(o: ParsedOptions): GenerateOptions {
  return {
    maxTokens: (o["max-tokens"] as number | undefined) ?? 256,
    temperature: o.temperature as number | undefined,
    topK: o["top-k"] as number | undefined,
    topP: o["top-p"] as number | undefined,
    minP: o["min-p"] as number | undefined,
    repeatPenalty: o["repeat-penalty"] as number | undefined,
    seed: o.seed as number | undefined,
    ignoreEos: o["ignore-eos"] as boolean | undefined,
  };
}
