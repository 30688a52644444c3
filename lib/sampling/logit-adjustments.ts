/**
 * The changes made to the raw logits before any candidate is chosen, after the user's hook: the logit bias, then
 * the repetition penalties. Both write into the engine's Float32Array, which is why they invalidate its top-k.
 */
import type { ResolvedSampling } from "./options";

export function applyLogitBias(logits: Float32Array, bias: ReadonlyMap<number, number>): void {
  for (const [id, value] of bias) logits[id] += value;
}

type Penalties = Pick<ResolvedSampling, "repeatPenalty" | "repeatLastN" | "frequencyPenalty" | "presencePenalty">;

/** Whether the penalties change anything: a window and at least one penalty that is not neutral. */
export function penaltiesActive(p: Penalties): boolean {
  return p.repeatLastN !== 0 && (p.repeatPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0);
}

/**
 * llama.cpp's penalties over the last repeatLastN tokens (all of them for -1), applied once per distinct token:
 * the repeat penalty divides a positive logit and multiplies a non-positive one (so it always lowers it), then
 * the frequency penalty is subtracted once per occurrence and the presence penalty once.
 */
export function applyPenalties(logits: Float32Array, tokens: readonly number[], p: Penalties): void {
  const start = p.repeatLastN < 0 ? 0 : Math.max(0, tokens.length - p.repeatLastN);
  const counts = new Map<number, number>();
  for (let i = start; i < tokens.length; i++) counts.set(tokens[i], (counts.get(tokens[i]) ?? 0) + 1);
  for (const [id, count] of counts) {
    const logit = logits[id];
    const repeated = logit <= 0 ? logit * p.repeatPenalty : logit / p.repeatPenalty;
    logits[id] = repeated - count * p.frequencyPenalty - p.presencePenalty;
  }
}
