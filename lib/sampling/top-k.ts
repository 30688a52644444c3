/**
 * Partial selection of the k largest values, for when the engine's top-k cannot be used (the logits were
 * changed after it ranked them) and for the top-n logprob alternatives. A size-k min-heap holds the best seen
 * so far with the weakest at its root, so a value that does not make the cut — almost all of a 128k vocabulary —
 * costs one comparison: O(n + m log k) for m insertions instead of a full sort.
 */
import type { CandidateList } from "./candidates";

/**
 * Fills `out` with the indices of the k largest `values` and those values, largest first, ties by lower index
 * (the engine's rule). NaN ranks as -Infinity. The heap lives in `out`'s own arrays.
 */
export function selectTopK(values: Float32Array | Float64Array, k: number, out: CandidateList): void {
  const n = values.length;
  const size = Math.min(k, n);
  const ids = out.ids;
  const vals = out.logits;
  for (let i = 0; i < size; i++) {
    const v = values[i];
    ids[i] = i;
    vals[i] = v === v ? v : -Infinity;
  }
  for (let i = (size >> 1) - 1; i >= 0; i--) siftDown(ids, vals, size, i);
  for (let i = size; i < n; i++) {
    const v = values[i];
    // A value equal to the weakest kept one loses the tie: every kept index is lower. NaN fails this test too.
    if (v > vals[0]) {
      ids[0] = i;
      vals[0] = v;
      siftDown(ids, vals, size, 0);
    }
  }
  // Heap sort: moving the weakest to the end, one at a time, leaves the strongest first.
  for (let end = size - 1; end > 0; end--) {
    swap(ids, vals, 0, end);
    siftDown(ids, vals, end, 0);
  }
  out.size = size;
  out.ranked = true;
}

/** Whether entry a ranks below entry b. */
function weaker(vals: Float64Array, ids: Int32Array, a: number, b: number): boolean {
  return vals[a] < vals[b] || (vals[a] === vals[b] && ids[a] > ids[b]);
}

/** Restores the heap (weakest at the root) below `i`. */
function siftDown(ids: Int32Array, vals: Float64Array, size: number, i: number): void {
  for (;;) {
    const left = 2 * i + 1;
    const right = left + 1;
    let weakest = i;
    if (left < size && weaker(vals, ids, left, weakest)) weakest = left;
    if (right < size && weaker(vals, ids, right, weakest)) weakest = right;
    if (weakest === i) return;
    swap(ids, vals, i, weakest);
    i = weakest;
  }
}

function swap(ids: Int32Array, vals: Float64Array, a: number, b: number): void {
  const id = ids[a];
  ids[a] = ids[b];
  ids[b] = id;
  const v = vals[a];
  vals[a] = vals[b];
  vals[b] = v;
}
