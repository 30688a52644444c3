import type { ConstraintOptions } from "../grammar";
import type { SamplingOptions } from "../sampling/sampler";

/** What happens when a conversation no longer fits the context. */
export type ContextOverflowPolicy = "error" | "truncate-middle";

/**
 * `grammar`, `jsonSchema` or `json` (one at most) constrain the output: tokens that cannot continue it are masked
 * before sampling, and the generation ends once it is complete and nothing can follow (finishReason "stop").
 */
export interface GenerateOptions extends SamplingOptions, ConstraintOptions {
  /** Stop after this many generated tokens. Default: until the context is full. */
  maxTokens?: number;
  /**
   * Stop when the text contains one of these strings, matched across token boundaries. The stop string and what
   * follows are not emitted; text that might begin one is held back until it is known not to.
   */
  stop?: readonly string[];
  /** Aborting stops generation at the next token (finishReason "abort"). */
  signal?: AbortSignal;
  /** Keep generating past the model's end-of-sequence tokens. */
  ignoreEos?: boolean;
  /**
   * "error" (default): a prompt that does not fit the context throws a ContextOverflowError with the numbers, and
   * generation that fills the context ends with finishReason "length". "truncate-middle": the middle of the
   * sequence is dropped (the start, e.g. the system prompt, is kept) and the rest evaluated again, so the
   * conversation goes on.
   */
  contextOverflow?: ContextOverflowPolicy;
}

export interface TokenLogprob {
  id: number;
  /** The token's text on its own (a piece of a multi-byte character decodes to U+FFFD). */
  text: string;
  /** Natural log of its probability in the distribution the token was drawn from. */
  logprob: number;
}

export interface GeneratedToken {
  id: number;
  /**
   * The text this step releases; may be "" while a multi-byte character is incomplete or while text that could
   * start a stop string is held back.
   */
  text: string;
  /** With `logprobs`: the chosen token's log-probability. */
  logprob?: number;
  /** With `logprobs`: the chosen token's own text, spelled as its alternatives' (" the", with the space). */
  piece?: string;
  /** With `logprobs: n`: the n most likely tokens of the same distribution, most likely first. */
  topLogprobs?: TokenLogprob[];
}

export type FinishReason = "stop" | "length" | "abort";

export interface GenerationStats {
  /** Tokens of the prompt (the whole conversation, for a session). */
  promptTokens: number;
  /** Prompt tokens actually evaluated: fewer than promptTokens when a session's cache already held the rest. */
  prefillTokens: number;
  genTokens: number;
  /** Prompt tokens per second of prefill (the batched forward pass over the prompt). */
  prefillTps: number;
  /** Generated tokens per second, after the first. */
  decodeTps: number;
}

export interface Completion {
  text: string;
  /** Every generated token, including those of a stop string (whose text is not in `text`). */
  tokens: number[];
  finishReason: FinishReason;
  /** The stop string that ended generation, when one did (finishReason "stop" otherwise means an end token). */
  stopString?: string;
  stats: GenerationStats;
}

/** A prompt as text (tokenized with BOS) or as token ids used as they are. */
export type Prompt = string | { tokens: number[] };
