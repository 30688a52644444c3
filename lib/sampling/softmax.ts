/** Softmax arithmetic in float64 over logits, shifted by their maximum so that exp never overflows. */
import type { CandidateList } from "./candidates";

/** ln Σ exp(values[i]) over the first n values; NaN counts as -Infinity (probability 0), as in the ranking. */
export function logSumExp(values: Float32Array | Float64Array, n: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (values[i] > max) max = values[i];
  let total = 0;
  for (let i = 0; i < n; i++) if (values[i] > -Infinity) total += Math.exp(values[i] - max);
  return max + Math.log(total);
}

export interface Draw {
  /** The drawn position in the list. */
  position: number;
  /** ln Σ exp(logit) over the list: a logit minus this is that token's log-probability. */
  logNormalizer: number;
}

/**
 * Draws a position with probability softmax(list logits), by inverse CDF over the list in its order with one
 * uniform `u` in [0, 1).
 */
export function drawPosition(list: CandidateList, u: number): Draw {
  const { logits, size } = list;
  let max = logits[0];
  if (!list.ranked) for (let i = 1; i < size; i++) if (logits[i] > max) max = logits[i];
  let total = 0;
  for (let i = 0; i < size; i++) total += Math.exp(logits[i] - max);
  const logNormalizer = max + Math.log(total);
  const target = u * total;
  let mass = 0;
  let lastPossible = 0;
  for (let i = 0; i < size; i++) {
    const weight = Math.exp(logits[i] - max);
    mass += weight;
    if (target < mass) return { position: i, logNormalizer };
    if (weight > 0) lastPossible = i;
  }
  // Only when u × total rounded up to total: the last token that had any probability.
  return { position: lastPossible, logNormalizer };
}
