import type { SamplingOptions } from "../sampling/sampler";

export interface GenerateOptions extends SamplingOptions {
  /** Stop after this many generated tokens. Default: until the context is full. */
  maxTokens?: number;
  /** Aborting stops generation at the next token (finishReason "abort"). */
  signal?: AbortSignal;
  /** Keep generating past the model's end-of-sequence tokens. */
  ignoreEos?: boolean;
}

export interface GeneratedToken {
  id: number;
  /** The text this token adds; may be "" while a multi-byte character is incomplete. */
  text: string;
}

export type FinishReason = "stop" | "length" | "abort";

export interface GenerationStats {
  promptTokens: number;
  genTokens: number;
  /** Prompt tokens per second of prefill (the batched forward pass over the prompt). */
  prefillTps: number;
  /** Generated tokens per second, after the first. */
  decodeTps: number;
}

export interface Completion {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  stats: GenerationStats;
}

/** A prompt as text (tokenized with BOS) or as token ids used as they are. */
export type Prompt = string | { tokens: number[] };
