/**
 * The generation loop: prefill what the KV cache does not already hold, then decode one token at a time, sampling
 * in TypeScript from what the engine returns, streaming text through the detokenizer and the stop-string matcher,
 * until a stop condition. Every forward pass goes through the model's scheduler, so concurrent generations share
 * passes.
 */
import { performance } from "node:perf_hooks";
import { ContextOverflowError } from "../errors";
import type { EngineContext } from "../native/engine";
import type { Sampler } from "../sampling/sampler";
import { StreamingDetokenizer } from "../tokenizer/stream";
import type { Tokenizer } from "../tokenizer/types";
import type { DecodeScheduler } from "./scheduler";
import { StopStringMatcher } from "./stop-strings";
import type { Completion, ContextOverflowPolicy, FinishReason, GeneratedToken, TokenLogprob } from "./types";

/** A KV cache and the tokens it holds, in order: what the next prompt on it can reuse. */
export interface Sequence {
  context: EngineContext;
  tokens: number[];
}

export interface GenerationRequest {
  sequence: Sequence;
  scheduler: DecodeScheduler;
  tokenizer: Tokenizer;
  promptIds: number[];
  sampler: Sampler;
  maxTokens: number;
  stop: readonly string[];
  stopIds: ReadonlySet<number>;
  signal?: AbortSignal;
  overflow: ContextOverflowPolicy;
  /** Tokens at the start that truncate-middle never drops (the system prompt of a session; BOS otherwise). */
  keepTokens: number;
  /** Checked before each step: throws when the model was disposed. */
  assertUsable: () => void;
}

/** How many leading tokens a and b share. */
export function commonPrefixLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Drops the older half of what follows the first `keep` tokens (llama.cpp's context shift). */
export function truncateMiddle(tokens: readonly number[], keep: number): number[] {
  const keepHead = Math.min(keep, tokens.length - 1);
  const drop = Math.ceil((tokens.length - keepHead) / 2);
  return [...tokens.slice(0, keepHead), ...tokens.slice(keepHead + drop)];
}

/**
 * The prompt made to fit the context: unchanged when it fits, shortened from the middle under truncate-middle,
 * else a ContextOverflowError with the numbers.
 */
export function fitPrompt(promptIds: number[], contextSize: number, policy: ContextOverflowPolicy, keep: number): number[] {
  if (promptIds.length <= contextSize) return promptIds;
  if (policy === "error") {
    throw new ContextOverflowError(
      `the prompt has ${promptIds.length} tokens but the context holds ${contextSize}`,
      promptIds.length,
      contextSize,
    );
  }
  let ids = promptIds;
  while (ids.length >= contextSize) ids = truncateMiddle(ids, keep);
  return ids;
}

export async function* runGeneration(req: GenerationRequest): AsyncGenerator<GeneratedToken, Completion> {
  const { sequence, sampler, tokenizer } = req;
  const { context } = sequence;
  const promptIds = fitPrompt(req.promptIds, context.contextSize, req.overflow, req.keepTokens);
  const detok = new StreamingDetokenizer(tokenizer, promptIds);
  const stops = new StopStringMatcher(req.stop);
  const decodeOptions = {
    logits: sampler.needsLogits ? ("last" as const) : ("none" as const),
    topK: sampler.candidatesNeeded,
    speculate: sampler.picksEngineTop,
  };
  const pieceDecoder = new TextDecoder();
  const piece = (id: number) => pieceDecoder.decode(tokenizer.tokenBytes(id));
  const withText = (alternatives: { id: number; logprob: number }[]): TokenLogprob[] =>
    alternatives.map(({ id, logprob }) => ({ id, text: piece(id), logprob }));

  /** Brings the cache to hold `ids` (reusing its common prefix) and returns the last position's output. */
  const evaluate = async (ids: number[]) => {
    const reuse = Math.min(commonPrefixLength(sequence.tokens, ids), ids.length - 1);
    sequence.tokens.length = reuse;
    req.assertUsable();
    const out = await req.scheduler.decode(context, ids.slice(reuse), reuse, decodeOptions);
    sequence.tokens.push(...ids.slice(reuse));
    return { out, evaluated: ids.length - reuse };
  };

  const history = [...promptIds];
  const tokens: number[] = [];
  let text = "";
  let finishReason: FinishReason = "length";
  let stopString: string | undefined;

  const prefillStart = performance.now();
  let { out, evaluated: prefillTokens } = await evaluate(promptIds);
  const prefillMs = performance.now() - prefillStart;
  let decodeMs = 0;
  let decodes = 0;

  try {
    for (;;) {
      if (req.signal?.aborted) {
        finishReason = "abort";
        break;
      }
      const pick = sampler.sample(out.logits, out.top, history);
      const { id } = pick;
      if (req.stopIds.has(id)) {
        finishReason = "stop";
        // Text held back as a possible stop-string start was not one after all: the end token releases it.
        const held = stops.push(detok.flush()).emit + stops.flush();
        if (held) {
          text += held;
          yield { id, text: held };
        }
        break;
      }
      tokens.push(id);
      history.push(id);
      const full = sequence.tokens.length >= context.contextSize && req.overflow === "error";
      const last = tokens.length >= req.maxTokens || full;
      const released = stops.push(detok.push(id) + (last ? detok.flush() : ""));
      const delta = released.emit + (last && !released.stopped ? stops.flush() : "");
      text += delta;
      const step: GeneratedToken = { id, text: delta };
      if (pick.logprob !== undefined) {
        step.logprob = pick.logprob;
        step.piece = piece(id);
      }
      if (pick.topLogprobs) step.topLogprobs = withText(pick.topLogprobs);
      if (released.stopped) {
        finishReason = "stop";
        stopString = released.stop;
        if (delta) yield step;
        break;
      }
      yield step;
      if (last) break;
      const stepStart = performance.now();
      if (sequence.tokens.length < context.contextSize) {
        req.assertUsable();
        out = await req.scheduler.decode(context, [id], sequence.tokens.length, decodeOptions);
        sequence.tokens.push(id);
      } else {
        // truncate-middle: the context is full; drop the middle and evaluate what follows the kept start again.
        ({ out } = await evaluate(truncateMiddle([...sequence.tokens, id], req.keepTokens)));
      }
      decodeMs += performance.now() - stepStart;
      decodes++;
    }
  } finally {
    // The engine may be running the step after the last token ahead: the context is the sequence's again (for
    // the next turn, a fork or a save) once that pass is over.
    if (decodeOptions.speculate) await req.scheduler.finish(context);
  }
  return {
    text,
    tokens,
    finishReason,
    ...(stopString !== undefined && { stopString }),
    stats: {
      promptTokens: promptIds.length,
      prefillTokens,
      genTokens: tokens.length,
      prefillTps: prefillTokens / (prefillMs / 1000),
      decodeTps: decodes > 0 ? decodes / (decodeMs / 1000) : 0,
    },
  };
}
