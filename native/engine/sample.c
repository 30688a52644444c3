#include <math.h>

#include "cpu_features.h"
#include "ops.h"
#include "simd_neon.h"

#if LLM_HAVE_AVX2_KERNELS
#include <immintrin.h>

/* Greedy decoding asks for the argmax of every step's logits: two vector passes, the largest value and then its
 * first index, instead of a compare and branch per value (~1% of a stories110M decode).
 * max_avx2: the largest non-NaN value, -INFINITY if none (max_ps returns its second operand when the first is
 * NaN). */
LLM_TARGET_AVX2 static float max_avx2(const float *values, int n) {
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(_mm256_loadu_ps(values + i), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(values + i + 8), m1);
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(values + i), m0);
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
  float max = -INFINITY;
  for (int j = 0; j < 8; j++) max = lanes[j] > max ? lanes[j] : max;
  for (; i < n; i++) max = values[i] > max ? values[i] : max;
  return max;
}

/* The first index holding `target` (== compares, so -0 finds +0), -1 if none. */
LLM_TARGET_AVX2 static int find_avx2(const float *values, int n, float target) {
  const __m256 t = _mm256_set1_ps(target);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(values + i), t, _CMP_EQ_OQ));
    if (mask) return i + __builtin_ctz((unsigned)mask);
  }
  for (; i < n; i++)
    if (values[i] == target) return i;
  return -1;
}
#endif

#if LLM_HAVE_NEON_KERNELS
/* The NEON twins of max_avx2 and find_avx2. vmaxnmq (IEEE maxNum) returns the number when one operand is NaN. */
static float max_neon(const float *values, int n) {
  float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    m0 = vmaxnmq_f32(vld1q_f32(values + i), m0);
    m1 = vmaxnmq_f32(vld1q_f32(values + i + 4), m1);
  }
  for (; i + 4 <= n; i += 4) m0 = vmaxnmq_f32(vld1q_f32(values + i), m0);
  float max = vmaxnmvq_f32(vmaxnmq_f32(m0, m1));
  for (; i < n; i++) max = values[i] > max ? values[i] : max;
  return max;
}

static int find_neon(const float *values, int n, float target) {
  const float32x4_t t = vdupq_n_f32(target);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    if (vmaxvq_u32(vceqq_f32(vld1q_f32(values + i), t))) break; /* then the first of these 4 below */
  }
  for (; i < n; i++)
    if (values[i] == target) return i;
  return -1;
}
#endif

int llm_argmax(const float *values, int n) {
#if LLM_HAVE_AVX2_KERNELS
  if (llm_kernel_set() >= LLM_KERNELS_AVX2) {
    const int first = find_avx2(values, n, max_avx2(values, n));
    return first < 0 ? 0 : first; /* all NaN */
  }
#endif
#if LLM_HAVE_NEON_KERNELS
  if (llm_kernel_set() >= LLM_KERNELS_NEON) {
    const int first = find_neon(values, n, max_neon(values, n));
    return first < 0 ? 0 : first; /* all NaN */
  }
#endif
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
  if (k == 1) {
    out_ids[0] = llm_argmax(values, n); /* the same ranking */
    return;
  }
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
