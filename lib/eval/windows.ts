/**
 * How a token stream (BOS first) is cut into evaluation windows, each run from position 0 on a fresh context.
 *  - "all": every token after the stream's first is predicted exactly once, at most `contextSize` per window:
 *    windows of contextSize + 1 tokens starting every contextSize tokens (each window's first token is the
 *    previous one's last). This is HF transformers' loss over stride-512 windows, the reference val_nll of the
 *    trained models.
 *  - "llama-cpp": llama-perplexity's perplexity(): whole windows of contextSize tokens, BOS put in each window's
 *    first slot, and only the second half scored (positions ctx/2 .. ctx-2 predict tokens ctx/2+1 .. ctx-1).
 */
import { InvalidArgumentError } from "../errors";

export type WindowMode = "all" | "llama-cpp";

export interface EvalWindow {
  /** The window's tokens. */
  ids: Int32Array;
  /** Positions whose logits are scored (each predicts ids[position + 1]). */
  firstScored: number;
  lastScored: number;
}

/** Tokens a window of `mode` holds: what the model's context must fit. */
export function windowLength(contextSize: number, mode: WindowMode): number {
  return mode === "llama-cpp" ? contextSize : contextSize + 1;
}

export function evalWindows(tokens: ArrayLike<number>, contextSize: number, bosId: number, mode: WindowMode): EvalWindow[] {
  const n = tokens.length;
  if (mode === "llama-cpp" && n < 2 * contextSize) {
    throw new InvalidArgumentError(`llama.cpp windows need at least ${2 * contextSize} tokens for a context of ${contextSize}; the text has ${n}`);
  }
  const count = mode === "llama-cpp" ? Math.floor(n / contextSize) : Math.ceil((n - 1) / contextSize);
  const length = windowLength(contextSize, mode);
  const windows: EvalWindow[] = [];
  for (let w = 0; w < count; w++) {
    const ids = Int32Array.from({ length: Math.min(length, n - w * contextSize) }, (_, i) => tokens[w * contextSize + i]);
    if (mode === "llama-cpp") ids[0] = bosId;
    windows.push({ ids, firstScored: mode === "llama-cpp" ? contextSize / 2 : 0, lastScored: ids.length - 2 });
  }
  if (windows.length === 0) throw new InvalidArgumentError(`the text has ${n} tokens: nothing to score`);
  return windows;
}
