/**
 * The candidate list the truncation stages work on: parallel (id, logit) arrays, allocated once per Sampler and
 * reused every step (no vocabulary-sized allocation per token). The builders here fill it from the engine's output.
 */
import type { RadixSorter } from "./radix-sort";

export class CandidateList {
  readonly ids: Int32Array;
  /** Float64 so that temperature and the softmax add no float32 rounding of their own. */
  readonly logits: Float64Array;
  size = 0;
  /**
   * true: in rank order (logit descending, ties by id ascending), every entry finite. false: the whole vocabulary
   * in id order (position = id, -Infinity kept), which is all that untruncated sampling needs and costs no sort.
   */
  ranked = true;

  constructor(capacity: number) {
    this.ids = new Int32Array(capacity);
    this.logits = new Float64Array(capacity);
  }
}

/** The engine's top-k (already ranked, computed on unmodified logits) with their logits. */
export function takeRanked(list: CandidateList, logits: Float32Array, rankedIds: Int32Array, k: number): void {
  fillRanked(list, logits, rankedIds, Math.min(k, rankedIds.length));
}

/** The list becomes the first n ids of `order` (ranked best first) with their logits. */
function fillRanked(list: CandidateList, logits: Float32Array, order: ArrayLike<number>, n: number): void {
  for (let i = 0; i < n; i++) {
    const id = order[i];
    list.ids[i] = id;
    list.logits[i] = logits[id];
  }
  list.size = n;
  list.ranked = true;
  dropImpossible(list);
}

/**
 * The whole vocabulary in rank order, for a chain whose first truncation needs every token (top-k disabled or
 * behind top-p / typical-p). Sorted here rather than by the engine: a stable LSD radix sort on the float bits is
 * O(n) — about 2 ms for 32000 entries and 10 ms for 128256 on a slow shared core — where the engine's heap
 * sort of the full vocabulary (its top-k with k = n) took 11 ms and 53 ms on the same machine, and it would
 * also be wrong as soon as a hook, a bias or a penalty changes the logits after the engine ranked them.
 */
export function rankVocabulary(list: CandidateList, logits: Float32Array, sorter: RadixSorter): void {
  const n = logits.length;
  const bits = new Uint32Array(logits.buffer, logits.byteOffset, n);
  const keys = sorter.keys;
  for (let i = 0; i < n; i++) keys[i] = descendingKey(bits[i]);
  // Stability keeps equal logits in id order, which is the tie rule.
  fillRanked(list, logits, sorter.sort(n), n);
}

/**
 * The whole vocabulary in id order, for a chain with no truncation stage. NaN counts as -Infinity; the list is
 * left empty when no logit is finite, as the ranked builders leave it.
 */
export function wholeVocabulary(list: CandidateList, logits: Float32Array): void {
  const n = logits.length;
  let possible = false;
  for (let i = 0; i < n; i++) {
    const v = logits[i];
    list.ids[i] = i;
    list.logits[i] = v === v ? v : -Infinity;
    possible ||= v > -Infinity;
  }
  list.size = possible ? n : 0;
  list.ranked = false;
}

/** Drops the banned (-Infinity) and broken (NaN) entries, which rank last, so that no stage can keep one. */
export function dropImpossible(list: CandidateList): void {
  while (list.size > 0 && !(list.logits[list.size - 1] > -Infinity)) list.size--;
}

/**
 * A uint32 that sorts ascending as the float32 with these bits sorts descending. Positive floats order like
 * their bits, negative ones opposite; NaN is ranked with -Infinity and -0 with +0.
 */
function descendingKey(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return 0xff800000;
  if (bits === 0x80000000) return 0x7fffffff;
  return bits >= 0x80000000 ? bits : ~bits & 0x7fffffff;
}
