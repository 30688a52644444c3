#include <math.h>

#include "ops.h"

int llm_argmax(const float *values, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (values[i] > values[best] || (isnan(values[best]) && !isnan(values[i]))) best = i;
  return best;
}

/* Ranking used by top-k: a beats b when its value is larger, or equal with a lower index. NaN loses to all. */
static int beats(const float *values, int32_t a, int32_t b) {
  float va = values[a], vb = values[b];
  if (isnan(va) || isnan(vb)) return isnan(vb) && (!isnan(va) || a < b);
  return va > vb || (va == vb && a < b);
}

/* Restores the min-heap (weakest at the root) below `i`. */
static void sift_down(const float *values, int32_t *heap, int size, int i) {
  for (;;) {
    int weakest = i, left = 2 * i + 1, right = left + 1;
    if (left < size && beats(values, heap[weakest], heap[left])) weakest = left;
    if (right < size && beats(values, heap[weakest], heap[right])) weakest = right;
    if (weakest == i) return;
    int32_t tmp = heap[i];
    heap[i] = heap[weakest];
    heap[weakest] = tmp;
    i = weakest;
  }
}

void llm_top_k(const float *values, int n, int k, int32_t *out_ids) {
  /* out_ids doubles as the heap of the k best seen so far. */
  for (int i = 0; i < k; i++) out_ids[i] = i;
  for (int i = k / 2 - 1; i >= 0; i--) sift_down(values, out_ids, k, i);
  for (int i = k; i < n; i++) {
    if (beats(values, i, out_ids[0])) {
      out_ids[0] = i;
      sift_down(values, out_ids, k, 0);
    }
  }
  /* Heap sort: repeatedly move the weakest to the end, leaving the strongest first. */
  for (int size = k - 1; size > 0; size--) {
    int32_t tmp = out_ids[0];
    out_ids[0] = out_ids[size];
    out_ids[size] = tmp;
    sift_down(values, out_ids, size, 0);
  }
}
