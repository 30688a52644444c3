#include <math.h>

#include "cpu_features.h"
#include "ops.h"
#include "quant.h"

#if LLM_HAVE_AVX2_KERNELS
#include <immintrin.h>
#endif
#include "simd_neon.h"

/* The two halves of attention for one head, over a run of n positions of one block, whose rows (this head's part)
 * lie `stride` bytes apart in the cache's type: scores[p] = (q . key_p) * scale, and out += sum over p of
 * weights[p] * value_p. One call per run (not per position) lets the positions overlap in the pipeline; the caller
 * zeroes out before a head's first run, and accumulating across runs keeps the order of one pass over all positions
 * (f32 results do not depend on where blocks begin). */
struct attention_kernels {
  void (*scores)(float *scores, const float *q, const uint8_t *keys, size_t stride, int n, int head_dim, float scale);
  void (*mix)(float *out, const float *weights, const uint8_t *values, size_t stride, int n, int head_dim);
};

/* ---- Scalar references: each type's row read value by value ---- */

static inline float f32_at(const uint8_t *row, int i) { return ((const float *)row)[i]; }
static inline float f16_at(const uint8_t *row, int i) { return llm_f16_to_f32(((const uint16_t *)row)[i]); }
static inline float q8_0_at(const uint8_t *row, int i) {
  const struct llm_block_q8_0 *b = (const struct llm_block_q8_0 *)row + i / LLM_QK8_0;
  return llm_f16_to_f32(b->d) * (float)b->qs[i % LLM_QK8_0];
}

#define SCALAR_KERNELS(type)                                                                                          \
  static void scores_##type##_scalar(float *scores, const float *q, const uint8_t *keys, size_t stride, int n,       \
                                     int head_dim, float scale) {                                                    \
    for (int p = 0; p < n; p++) {                                                                                     \
      const uint8_t *k = keys + p * stride;                                                                           \
      float sum = 0.0f;                                                                                               \
      for (int i = 0; i < head_dim; i++) sum += q[i] * type##_at(k, i);                                               \
      scores[p] = sum * scale;                                                                                        \
    }                                                                                                                 \
  }                                                                                                                   \
  static void mix_##type##_scalar(float *out, const float *weights, const uint8_t *values, size_t stride, int n,     \
                                  int head_dim) {                                                                     \
    for (int p = 0; p < n; p++)                                                                                       \
      for (int i = 0; i < head_dim; i++) out[i] += weights[p] * type##_at(values + p * stride, i);                   \
  }
SCALAR_KERNELS(f32)
SCALAR_KERNELS(f16)
SCALAR_KERNELS(q8_0)

#if LLM_HAVE_AVX2_KERNELS
/* The cache rows of one head are a few cache lines, a whole row of all heads apart: too far apart for the
 * hardware prefetcher, and after a layer's weights have streamed through, they come from DRAM. */
#define ATTENTION_PREFETCH_POSITIONS 8
static inline void prefetch_row(const uint8_t *row, size_t bytes) {
  for (size_t i = 0; i < bytes; i += 64) _mm_prefetch((const char *)(row + i), _MM_HINT_T0);
}

LLM_TARGET_AVX2 static inline float horizontal_sum(__m256 acc) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* Eight values of a row as floats: f32 loaded, f16 converted (F16C), q8_0 widened (the block's scale apart). */
LLM_TARGET_AVX2 static inline __m256 load8_f32(const uint8_t *row, int i) { return _mm256_loadu_ps((const float *)row + i); }
LLM_TARGET_AVX2 static inline __m256 load8_f16(const uint8_t *row, int i) {
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
}
LLM_TARGET_AVX2 static inline __m256 load8_q8(const int8_t *qs) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)qs)));
}

/* q . row for f32 and f16 rows. Two accumulators hide the FMA latency for the usual head sizes (64, 128). */
#define DOT_AVX2(type)                                                                                                \
  LLM_TARGET_AVX2 static inline float dot_##type##_avx2(const float *q, const uint8_t *row, int n) {                 \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                                    \
    int i = 0;                                                                                                        \
    for (; i + 16 <= n; i += 16) {                                                                                    \
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8_##type(row, i), acc0);                                     \
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8_##type(row, i + 8), acc1);                             \
    }                                                                                                                 \
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8_##type(row, i), acc0);           \
    float sum = horizontal_sum(_mm256_add_ps(acc0, acc1));                                                            \
    for (; i < n; i++) sum += q[i] * type##_at(row, i);                                                               \
    return sum;                                                                                                       \
  }
DOT_AVX2(f32)
DOT_AVX2(f16)

/* q . row for q8_0 rows (head_dim a multiple of 32): each block's products summed, then scaled by its d. */
LLM_TARGET_AVX2 static inline float dot_q8_0_avx2(const float *q, const uint8_t *row, int n) {
  const struct llm_block_q8_0 *blocks = (const struct llm_block_q8_0 *)row;
  __m256 acc = _mm256_setzero_ps();
  for (int b = 0; b < n / LLM_QK8_0; b++) {
    const float *qb = q + b * LLM_QK8_0;
    const int8_t *qs = blocks[b].qs;
    __m256 block = _mm256_mul_ps(_mm256_loadu_ps(qb), load8_q8(qs));
    block = _mm256_fmadd_ps(_mm256_loadu_ps(qb + 8), load8_q8(qs + 8), block);
    block = _mm256_fmadd_ps(_mm256_loadu_ps(qb + 16), load8_q8(qs + 16), block);
    block = _mm256_fmadd_ps(_mm256_loadu_ps(qb + 24), load8_q8(qs + 24), block);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(llm_f16_to_f32(blocks[b].d)), block, acc);
  }
  return horizontal_sum(acc);
}

#define SCORES_AVX2(type)                                                                                             \
  LLM_TARGET_AVX2 static void scores_##type##_avx2(float *scores, const float *q, const uint8_t *keys, size_t stride, \
                                                   int n, int head_dim, float scale) {                               \
    const size_t head_bytes = llm_kv_row_bytes(LLM_KV_##type##_CODE, head_dim);                                       \
    for (int p = 0; p < n; p++) {                                                                                     \
      if (p + ATTENTION_PREFETCH_POSITIONS < n) prefetch_row(keys + (p + ATTENTION_PREFETCH_POSITIONS) * stride, head_bytes); \
      scores[p] = dot_##type##_avx2(q, keys + p * stride, head_dim) * scale;                                          \
    }                                                                                                                 \
  }
#define LLM_KV_f32_CODE LLM_KV_F32
#define LLM_KV_f16_CODE LLM_KV_F16
#define LLM_KV_q8_0_CODE LLM_KV_Q8_0
SCORES_AVX2(f32)
SCORES_AVX2(f16)
SCORES_AVX2(q8_0)

/* Each 32 floats of the output stay in 4 registers across the run's positions: accumulating in memory made every
 * position wait for the previous one's store (it was 4% of a stories110M decode, as much as the scores). */
#define MIX_AVX2(type)                                                                                                \
  LLM_TARGET_AVX2 static void mix_##type##_avx2(float *out, const float *weights, const uint8_t *values,              \
                                                size_t stride, int n, int head_dim) {                                \
    int i = 0;                                                                                                        \
    for (; i + 32 <= head_dim; i += 32) {                                                                             \
      __m256 acc0 = _mm256_loadu_ps(out + i), acc1 = _mm256_loadu_ps(out + i + 8);                                    \
      __m256 acc2 = _mm256_loadu_ps(out + i + 16), acc3 = _mm256_loadu_ps(out + i + 24);                              \
      for (int p = 0; p < n; p++) {                                                                                   \
        if (p + ATTENTION_PREFETCH_POSITIONS < n)                                                                     \
          prefetch_row(values + (p + ATTENTION_PREFETCH_POSITIONS) * stride + i * sizeof(type##_element), 32 * sizeof(type##_element)); \
        const uint8_t *v = values + p * stride;                                                                       \
        const __m256 w = _mm256_set1_ps(weights[p]);                                                                  \
        acc0 = _mm256_fmadd_ps(w, load8_##type(v, i), acc0);                                                          \
        acc1 = _mm256_fmadd_ps(w, load8_##type(v, i + 8), acc1);                                                      \
        acc2 = _mm256_fmadd_ps(w, load8_##type(v, i + 16), acc2);                                                     \
        acc3 = _mm256_fmadd_ps(w, load8_##type(v, i + 24), acc3);                                                     \
      }                                                                                                               \
      _mm256_storeu_ps(out + i, acc0);                                                                                \
      _mm256_storeu_ps(out + i + 8, acc1);                                                                            \
      _mm256_storeu_ps(out + i + 16, acc2);                                                                           \
      _mm256_storeu_ps(out + i + 24, acc3);                                                                           \
    }                                                                                                                 \
    for (; i + 8 <= head_dim; i += 8) {                                                                               \
      __m256 acc = _mm256_loadu_ps(out + i);                                                                          \
      for (int p = 0; p < n; p++)                                                                                     \
        acc = _mm256_fmadd_ps(_mm256_set1_ps(weights[p]), load8_##type(values + p * stride, i), acc);                \
      _mm256_storeu_ps(out + i, acc);                                                                                 \
    }                                                                                                                 \
    for (; i < head_dim; i++) {                                                                                       \
      float acc = out[i];                                                                                             \
      for (int p = 0; p < n; p++) acc += weights[p] * type##_at(values + p * stride, i);                              \
      out[i] = acc;                                                                                                   \
    }                                                                                                                 \
  }
typedef float f32_element;
typedef uint16_t f16_element;
MIX_AVX2(f32)
MIX_AVX2(f16)

/* q8_0 values (head_dim a multiple of 32): each block of 32 in 4 registers across the run, each position's weight
 * times the block's scale. */
LLM_TARGET_AVX2 static void mix_q8_0_avx2(float *out, const float *weights, const uint8_t *values, size_t stride, int n,
                                          int head_dim) {
  for (int b = 0; b < head_dim / LLM_QK8_0; b++) {
    float *o = out + b * LLM_QK8_0;
    __m256 acc0 = _mm256_loadu_ps(o), acc1 = _mm256_loadu_ps(o + 8), acc2 = _mm256_loadu_ps(o + 16),
           acc3 = _mm256_loadu_ps(o + 24);
    for (int p = 0; p < n; p++) {
      const struct llm_block_q8_0 *block = (const struct llm_block_q8_0 *)(values + p * stride) + b;
      const __m256 w = _mm256_set1_ps(weights[p] * llm_f16_to_f32(block->d));
      acc0 = _mm256_fmadd_ps(w, load8_q8(block->qs), acc0);
      acc1 = _mm256_fmadd_ps(w, load8_q8(block->qs + 8), acc1);
      acc2 = _mm256_fmadd_ps(w, load8_q8(block->qs + 16), acc2);
      acc3 = _mm256_fmadd_ps(w, load8_q8(block->qs + 24), acc3);
    }
    _mm256_storeu_ps(o, acc0);
    _mm256_storeu_ps(o + 8, acc1);
    _mm256_storeu_ps(o + 16, acc2);
    _mm256_storeu_ps(o + 24, acc3);
  }
}
#endif

#if LLM_HAVE_NEON_KERNELS
/* The NEON twins of the AVX2 kernels above, 4 floats per vector (both NEON sets: no int8 work here). */
LLM_NEON_INLINE float32x4_t load4_f32_neon(const uint8_t *row, int i) { return vld1q_f32((const float *)row + i); }
LLM_NEON_INLINE float32x4_t load4_f16_neon(const uint8_t *row, int i) { return llm_neon_load4_f16((const uint16_t *)row + i); }

/* q . row for f32 and f16 rows, two accumulators for the FMA latency. */
#define DOT_NEON(type)                                                                                                \
  LLM_NEON_INLINE float dot_##type##_neon(const float *q, const uint8_t *row, int n) {                               \
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);                                                   \
    int i = 0;                                                                                                        \
    for (; i + 8 <= n; i += 8) {                                                                                      \
      acc0 = vfmaq_f32(acc0, vld1q_f32(q + i), load4_##type##_neon(row, i));                                          \
      acc1 = vfmaq_f32(acc1, vld1q_f32(q + i + 4), load4_##type##_neon(row, i + 4));                                  \
    }                                                                                                                 \
    for (; i + 4 <= n; i += 4) acc0 = vfmaq_f32(acc0, vld1q_f32(q + i), load4_##type##_neon(row, i));                 \
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));                                                                    \
    for (; i < n; i++) sum += q[i] * type##_at(row, i);                                                               \
    return sum;                                                                                                       \
  }
DOT_NEON(f32)
DOT_NEON(f16)

/* q . row for q8_0 rows (head_dim a multiple of 32): each block's products summed, then scaled by its d. */
LLM_NEON_INLINE float dot_q8_0_neon(const float *q, const uint8_t *row, int n) {
  const struct llm_block_q8_0 *blocks = (const struct llm_block_q8_0 *)row;
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (int b = 0; b < n / LLM_QK8_0; b++) {
    const float *qb = q + b * LLM_QK8_0;
    float32x4_t block = vdupq_n_f32(0.0f);
    for (int k = 0; k < LLM_QK8_0; k += 8) {
      float32x4_t values[2];
      llm_neon_load8_i8(blocks[b].qs + k, values);
      block = vfmaq_f32(block, vld1q_f32(qb + k), values[0]);
      block = vfmaq_f32(block, vld1q_f32(qb + k + 4), values[1]);
    }
    acc = vfmaq_n_f32(acc, block, llm_f16_to_f32(blocks[b].d));
  }
  return vaddvq_f32(acc);
}

#define SCORES_NEON(type)                                                                                             \
  static void scores_##type##_neon(float *scores, const float *q, const uint8_t *keys, size_t stride, int n,         \
                                   int head_dim, float scale) {                                                      \
    for (int p = 0; p < n; p++) scores[p] = dot_##type##_neon(q, keys + p * stride, head_dim) * scale;              \
  }
SCORES_NEON(f32)
SCORES_NEON(f16)
SCORES_NEON(q8_0)

/* Each 16 floats of the output stay in 4 registers across the run's positions (as MIX_AVX2's 32). */
#define MIX_NEON(type)                                                                                                \
  static void mix_##type##_neon(float *out, const float *weights, const uint8_t *values, size_t stride, int n,       \
                                int head_dim) {                                                                      \
    int i = 0;                                                                                                        \
    for (; i + 16 <= head_dim; i += 16) {                                                                             \
      float32x4_t acc[4];                                                                                             \
      for (int k = 0; k < 4; k++) acc[k] = vld1q_f32(out + i + 4 * k);                                                \
      for (int p = 0; p < n; p++)                                                                                     \
        for (int k = 0; k < 4; k++) acc[k] = vfmaq_n_f32(acc[k], load4_##type##_neon(values + p * stride, i + 4 * k), weights[p]); \
      for (int k = 0; k < 4; k++) vst1q_f32(out + i + 4 * k, acc[k]);                                                 \
    }                                                                                                                 \
    for (; i + 4 <= head_dim; i += 4) {                                                                               \
      float32x4_t acc = vld1q_f32(out + i);                                                                           \
      for (int p = 0; p < n; p++) acc = vfmaq_n_f32(acc, load4_##type##_neon(values + p * stride, i), weights[p]);   \
      vst1q_f32(out + i, acc);                                                                                        \
    }                                                                                                                 \
    for (; i < head_dim; i++) {                                                                                       \
      float acc = out[i];                                                                                             \
      for (int p = 0; p < n; p++) acc += weights[p] * type##_at(values + p * stride, i);                              \
      out[i] = acc;                                                                                                   \
    }                                                                                                                 \
  }
MIX_NEON(f32)
MIX_NEON(f16)

/* q8_0 values (head_dim a multiple of 32): each block of 32 in 8 registers across the run, each position's weight
 * times the block's scale. */
static void mix_q8_0_neon(float *out, const float *weights, const uint8_t *values, size_t stride, int n, int head_dim) {
  for (int b = 0; b < head_dim / LLM_QK8_0; b++) {
    float *o = out + b * LLM_QK8_0;
    float32x4_t acc[8];
    for (int k = 0; k < 8; k++) acc[k] = vld1q_f32(o + 4 * k);
    for (int p = 0; p < n; p++) {
      const struct llm_block_q8_0 *block = (const struct llm_block_q8_0 *)(values + p * stride) + b;
      const float w = weights[p] * llm_f16_to_f32(block->d);
      for (int k = 0; k < 4; k++) {
        float32x4_t v[2];
        llm_neon_load8_i8(block->qs + 8 * k, v);
        acc[2 * k] = vfmaq_n_f32(acc[2 * k], v[0], w);
        acc[2 * k + 1] = vfmaq_n_f32(acc[2 * k + 1], v[1], w);
      }
    }
    for (int k = 0; k < 8; k++) vst1q_f32(o + 4 * k, acc[k]);
  }
}
#endif

static struct attention_kernels attention_kernels(enum llm_kv_type type) {
#if LLM_HAVE_AVX2_KERNELS
  if (llm_kernel_set() >= LLM_KERNELS_AVX2) {
    switch (type) {
    case LLM_KV_F32: return (struct attention_kernels){ scores_f32_avx2, mix_f32_avx2 };
    case LLM_KV_F16: return (struct attention_kernels){ scores_f16_avx2, mix_f16_avx2 };
    case LLM_KV_Q8_0: return (struct attention_kernels){ scores_q8_0_avx2, mix_q8_0_avx2 };
    }
  }
#endif
#if LLM_HAVE_NEON_KERNELS
  if (llm_kernel_set() >= LLM_KERNELS_NEON) {
    switch (type) {
    case LLM_KV_F32: return (struct attention_kernels){ scores_f32_neon, mix_f32_neon };
    case LLM_KV_F16: return (struct attention_kernels){ scores_f16_neon, mix_f16_neon };
    case LLM_KV_Q8_0: return (struct attention_kernels){ scores_q8_0_neon, mix_q8_0_neon };
    }
  }
#endif
  switch (type) {
  case LLM_KV_F16: return (struct attention_kernels){ scores_f16_scalar, mix_f16_scalar };
  case LLM_KV_Q8_0: return (struct attention_kernels){ scores_q8_0_scalar, mix_q8_0_scalar };
  default: return (struct attention_kernels){ scores_f32_scalar, mix_f32_scalar };
  }
}

struct attention_job {
  const struct llm_attention_args *args;
  struct attention_kernels kernels;
};

/* One (head, query) pair of one sequence: scores over the visible positions, block by block, softmax, weighted sum
 * of values. */
static void attend(const struct llm_attention_args *a, const struct llm_attention_seq *seq,
                   const struct attention_kernels *kernels, int head, int token, float *scores) {
  const int head_dim = a->head_dim;
  const int kv_head = head / (a->n_heads / a->n_kv_heads);
  const float *q = seq->q + ((int64_t)token * a->n_heads + head) * head_dim;
  const size_t head_offset = (size_t)kv_head * llm_kv_row_bytes(a->kv_type, head_dim);
  const size_t block_bytes = (size_t)LLM_KV_BLOCK_TOKENS * a->row_bytes;
  const int n_visible = seq->pos + token + 1;
  const float scale = 1.0f / sqrtf((float)head_dim);

  for (int first = 0; first < n_visible; first += LLM_KV_BLOCK_TOKENS) {
    const int n = n_visible - first < LLM_KV_BLOCK_TOKENS ? n_visible - first : LLM_KV_BLOCK_TOKENS;
    const uint8_t *keys = a->keys + (size_t)seq->blocks[first / LLM_KV_BLOCK_TOKENS] * block_bytes + head_offset;
    kernels->scores(scores + first, q, keys, a->row_bytes, n, head_dim, scale);
  }
  float max_score = -INFINITY;
  for (int p = 0; p < n_visible; p++)
    if (scores[p] > max_score) max_score = scores[p];
  float sum = 0.0f;
  for (int p = 0; p < n_visible; p++) {
    scores[p] = expf(scores[p] - max_score);
    sum += scores[p];
  }
  const float inv_sum = 1.0f / sum;
  for (int p = 0; p < n_visible; p++) scores[p] *= inv_sum;
  float *out = seq->out + ((int64_t)token * a->n_heads + head) * head_dim;
  for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
  for (int first = 0; first < n_visible; first += LLM_KV_BLOCK_TOKENS) {
    const int n = n_visible - first < LLM_KV_BLOCK_TOKENS ? n_visible - first : LLM_KV_BLOCK_TOKENS;
    const uint8_t *values = a->values + (size_t)seq->blocks[first / LLM_KV_BLOCK_TOKENS] * block_bytes + head_offset;
    kernels->mix(out, scores + first, values, a->row_bytes, n, head_dim);
  }
}

/* Tasks number the sequences' (head, query) pairs back to back, head-major within a sequence: a chunk of
 * consecutive tasks mixes short (early) and long (late) queries. */
static void attention_task(void *ctx, size_t begin, size_t end, int worker) {
  const struct attention_job *job = ctx;
  const struct llm_attention_args *a = job->args;
  float *scores = a->scores + worker * a->scores_stride;
  size_t first_task = 0;
  for (int s = 0; s < a->n_seqs && first_task < end; s++) {
    const struct llm_attention_seq *seq = &a->seqs[s];
    const size_t tasks = (size_t)a->n_heads * (size_t)seq->n_tokens;
    const size_t lo = begin > first_task ? begin - first_task : 0;
    const size_t hi = end - first_task < tasks ? end - first_task : tasks;
    for (size_t task = lo; task < hi; task++)
      attend(a, seq, &job->kernels, (int)(task / (size_t)seq->n_tokens), (int)(task % (size_t)seq->n_tokens), scores);
    first_task += tasks;
  }
}

void llm_attention(struct llm_threadpool *pool, const struct llm_attention_args *args) {
  struct attention_job job = { args, attention_kernels(args->kv_type) };
  size_t tasks = 0;
  int64_t multiply_adds = 0; /* scores and the weighted sum: 2 x head_dim per visible position */
  for (int s = 0; s < args->n_seqs; s++) {
    const struct llm_attention_seq *seq = &args->seqs[s];
    tasks += (size_t)args->n_heads * (size_t)seq->n_tokens;
    multiply_adds += (int64_t)args->n_heads * seq->n_tokens * (seq->pos + seq->n_tokens) * 2 * args->head_dim;
  }
  llm_parallel_for_work(pool, tasks, multiply_adds, attention_task, &job);
}
