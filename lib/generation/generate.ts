/**
 * A generation: one request to the engine's decode loop (lib/native/decode-loop.ts), which evaluates what the KV
 * cache does not already hold, then samples and evaluates token after token natively, sharing its passes with every
 * other generation on the model, and stops on an end token, maxTokens or a full context. Here its tokens are
 * detokenized, matched against the stop strings (a match cancels the request; tokens the engine ran past it are
 * dropped) and streamed. A logitsProcessor makes the request pause after each pass for the hook to run here.
 */
import { ContextOverflowError } from "../errors";
import type { EngineDecodeLoop, LoopEvent, LoopRequest } from "../native/decode-loop";
import type { NativeGrammar } from "../native/binding";
import type { EngineContext } from "../native/engine";
import type { SampledToken, Sampler } from "../sampling/sampler";
import { StreamingDetokenizer } from "../tokenizer/stream";
import type { Tokenizer } from "../tokenizer/types";
import { StopStringMatcher } from "./stop-strings";
import type { Completion, ContextOverflowPolicy, FinishReason, GeneratedToken, TokenLogprob } from "./types";

/** A KV cache and the tokens it holds, in order: what the next prompt on it can reuse. */
export interface Sequence {
  context: EngineContext;
  tokens: number[];
}

export interface GenerationRequest {
  sequence: Sequence;
  loop: EngineDecodeLoop;
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
  /** The output's constraint (its state carries over when truncate-middle submits again). */
  grammar?: NativeGrammar;
  /** Checked when a request starts and at each of its events: throws when the model was disposed. */
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

/** The most tokens one request may be asked for (the engine counts in 32-bit integers). */
const MAX_REQUEST_TOKENS = 2 ** 31 - 1;

export async function* runGeneration(req: GenerationRequest): AsyncGenerator<GeneratedToken, Completion> {
  const { sequence, sampler, tokenizer } = req;
  const { context } = sequence;
  const promptIds = fitPrompt(req.promptIds, context.contextSize, req.overflow, req.keepTokens);
  const detok = new StreamingDetokenizer(tokenizer, promptIds);
  const stops = new StopStringMatcher(req.stop);
  const pieceDecoder = new TextDecoder();
  const piece = (id: number) => pieceDecoder.decode(tokenizer.tokenBytes(id));
  const withText = (alternatives: { id: number; logprob: number }[]): TokenLogprob[] =>
    alternatives.map(({ id, logprob }) => ({ id, text: piece(id), logprob }));
  const endIds = Int32Array.from(req.stopIds);
  const logprobs = sampler.options.logprobs !== undefined;

  const history = [...promptIds]; // prompt and generated tokens: what the logitsProcessor sees
  const tokens: number[] = [];
  let text = "";
  let finishReason: FinishReason = "length";
  let stopString: string | undefined;

  /**
   * The request running now, and what its cache will hold in order: the ids it was given, then its tokens as
   * they come. Its done event says how many of them the cache holds, and the sequence's record becomes those.
   */
  let request: LoopRequest;
  let timeline: number[];
  /** Whether the current request's done or error event was taken. */
  let over = false;
  /**
   * Brings the cache to hold `ids` and generates after them; returns the tokens it evaluates. The cache keeps the
   * longest prefix of `ids` it can without evaluating: what it holds already, then full blocks other sequences
   * computed (the pool's prefix index), so that even a session's first turn adopts a cached system prompt.
   */
  const submit = (ids: number[]): number => {
    req.assertUsable();
    const reuse = context.adoptPrefix(ids);
    sequence.tokens = ids.slice(0, reuse);
    request = req.loop.submit(context, ids.slice(reuse), reuse, sampler.forDecodeLoop(history), {
      maxTokens: Math.min(req.maxTokens - tokens.length, MAX_REQUEST_TOKENS),
      endIds,
      logprobs,
      pauseEachStep: sampler.hasLogitsProcessor,
      grammar: req.grammar,
    });
    timeline = [...ids];
    over = false;
    return ids.length - reuse;
  };
  /** The request's end: the sequence's record is what its cache holds. */
  const ended = (event: LoopEvent) => {
    over = true;
    sequence.tokens = timeline.slice(0, event.evaluated);
  };

  const prefillTokens = submit(promptIds);
  let prefillMs: number | undefined;
  /** When the first and the last token left the engine (event.seconds), for the decode speed. */
  let firstTokenAt = 0;
  let lastTokenAt = 0;
  /** The pick of a step paused for the logitsProcessor: its token event reports these logprobs. */
  let hookPick: SampledToken | undefined;
  /** Why this side cancelled the request (its tokens until the done event are dropped). */
  let cancelled: "abort" | "stop" | undefined;
  const cancel = (reason: "abort" | "stop") => {
    cancelled ??= reason;
    request.cancel();
  };
  const onAbort = () => cancel("abort");
  req.signal?.addEventListener("abort", onAbort);
  if (req.signal?.aborted) onAbort();

  try {
    for (;;) {
      const event = await request!.next();
      // A disposed model ends its generations with a DisposedError at their next step.
      req.assertUsable();
      prefillMs ??= request!.firstEventAt! - request!.submittedAt;
      if (event.kind === "error") {
        ended(event);
        throw event.error;
      }
      if (event.kind === "logits") {
        if (cancelled) continue;
        hookPick = sampler.sampleInLoop(event.logits!, history);
        request!.resume(hookPick.id);
        continue;
      }
      if (event.kind === "done") {
        ended(event);
        if (cancelled || event.finish === "abort") {
          finishReason = cancelled ?? "abort";
          break;
        }
        if (event.finish === "stop" || event.finish === "grammar") {
          finishReason = "stop";
          // Text held back as a possible stop-string start was not one after all: the end token releases it.
          const held = stops.push(detok.flush()).emit + stops.flush();
          if (held) {
            text += held;
            yield { id: event.token!, text: held };
          }
          break;
        }
        if (event.finish === "context_full" && req.overflow === "truncate-middle") {
          // Drop the middle and evaluate what follows the kept start again (its last token, never evaluated, too).
          submit(truncateMiddle(timeline!, req.keepTokens));
          continue;
        }
        break; // "length", or the context is full under the "error" policy
      }
      // A token.
      const id = event.token!;
      timeline!.push(id);
      if (cancelled) continue;
      history.push(id);
      tokens.push(id);
      lastTokenAt = event.seconds;
      if (tokens.length === 1) firstTokenAt = lastTokenAt;
      const next = request!.peek();
      const last =
        next?.kind === "done" && (next.finish === "length" || next.finish === "grammar" || (next.finish === "context_full" && req.overflow === "error"));
      const released = stops.push(detok.push(id) + (last ? detok.flush() : ""));
      const delta = released.emit + (last && !released.stopped ? stops.flush() : "");
      text += delta;
      const step: GeneratedToken = { id, text: delta };
      const pick = event.logprob !== undefined ? { logprob: event.logprob, topLogprobs: event.top } : hookPick?.id === id ? hookPick : undefined;
      hookPick = undefined;
      if (pick?.logprob !== undefined) {
        step.logprob = pick.logprob;
        step.piece = piece(id);
      }
      if (pick?.topLogprobs) step.topLogprobs = withText(pick.topLogprobs);
      if (released.stopped) {
        stopString = released.stop;
        cancel("stop");
        if (delta) yield step;
        continue; // to the request's done event
      }
      yield step;
    }
  } finally {
    req.signal?.removeEventListener("abort", onAbort);
    // The consumer may have left early (break, return, a throw): the request ends before the sequence is reused.
    if (!over) {
      request!.cancel();
      for (;;) {
        const event = await request!.next();
        if (event.kind === "token") timeline!.push(event.token!);
        else if (event.kind === "done" || event.kind === "error") {
          ended(event);
          break;
        }
      }
    }
  }
  const decodes = tokens.length - 1;
  return {
    text,
    tokens,
    finishReason,
    ...(stopString !== undefined && { stopString }),
    stats: {
      promptTokens: promptIds.length,
      prefillTokens,
      genTokens: tokens.length,
      prefillTps: prefillTokens / ((prefillMs ?? 0) / 1000),
      decodeTps: decodes > 0 ? decodes / (lastTokenAt - firstTokenAt) : 0,
    },
  };
}
