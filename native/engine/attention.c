#include <math.h>

#include "cpu_features.h"
#include "ops.h"

#if LLM_HAVE_AVX2_KERNELS
#include <immintrin.h>
#endif

/* The two halves of attention for one head, over n positions whose key / value rows lie `stride` floats apart:
 * scores[p] = (q . key_p) * scale, and out = sum over p of weights[p] * value_p. One call per head (not per
 * position) lets the positions overlap in the pipeline. */
struct attention_kernels {
  void (*scores)(float *scores, const float *q, const float *keys, int64_t stride, int n, int head_dim, float scale);
  void (*mix)(float *out, const float *weights, const float *values, int64_t stride, int n, int head_dim);
};

static void scores_scalar(float *scores, const float *q, const float *keys, int64_t stride, int n, int head_dim,
                          float scale) {
  for (int p = 0; p < n; p++) {
    const float *k = keys + p * stride;
    float sum = 0.0f;
    for (int i = 0; i < head_dim; i++) sum += q[i] * k[i];
    scores[p] = sum * scale;
  }
}

static void mix_scalar(float *out, const float *weights, const float *values, int64_t stride, int n, int head_dim) {
  for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
  for (int p = 0; p < n; p++)
    for (int i = 0; i < head_dim; i++) out[i] += weights[p] * values[p * stride + i];
}

#if LLM_HAVE_AVX2_KERNELS
/* The cache rows of one head are a few cache lines, a whole row of all heads apart: too far apart for the
 * hardware prefetcher, and after a layer's weights have streamed through, they come from DRAM. */
#define ATTENTION_PREFETCH_POSITIONS 8
static inline void prefetch_row(const float *row, int n) {
  for (int i = 0; i < n; i += 16) _mm_prefetch((const char *)(row + i), _MM_HINT_T0);
}

LLM_TARGET_AVX2 static inline float dot_avx2(const float *a, const float *b, int n) {
  /* Two accumulators hide the FMA latency for the usual head sizes (64, 128). */
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  float sum = _mm_cvtss_f32(s);
  for (; i < n; i++) sum += a[i] * b[i];
  return sum;
}

LLM_TARGET_AVX2 static void scores_avx2(float *scores, const float *q, const float *keys, int64_t stride, int n,
                                        int head_dim, float scale) {
  for (int p = 0; p < n; p++) {
    if (p + ATTENTION_PREFETCH_POSITIONS < n) prefetch_row(keys + (p + ATTENTION_PREFETCH_POSITIONS) * stride, head_dim);
    scores[p] = dot_avx2(q, keys + p * stride, head_dim) * scale;
  }
}

/* Each 32 floats of the output stay in 4 registers across all positions: accumulating in memory made every
 * position wait for the previous one's store (it was 4% of a stories110M decode, as much as the scores). */
LLM_TARGET_AVX2 static void mix_avx2(float *out, const float *weights, const float *values, int64_t stride, int n,
                                     int head_dim) {
  int i = 0;
  for (; i + 32 <= head_dim; i += 32) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    for (int p = 0; p < n; p++) {
      if (p + ATTENTION_PREFETCH_POSITIONS < n) prefetch_row(values + (p + ATTENTION_PREFETCH_POSITIONS) * stride + i, 32);
      const float *v = values + p * stride + i;
      const __m256 w = _mm256_set1_ps(weights[p]);
      acc0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), acc0);
      acc1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), acc1);
      acc2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), acc2);
      acc3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), acc3);
    }
    _mm256_storeu_ps(out + i, acc0);
    _mm256_storeu_ps(out + i + 8, acc1);
    _mm256_storeu_ps(out + i + 16, acc2);
    _mm256_storeu_ps(out + i + 24, acc3);
  }
  for (; i + 8 <= head_dim; i += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int p = 0; p < n; p++) acc = _mm256_fmadd_ps(_mm256_set1_ps(weights[p]), _mm256_loadu_ps(values + p * stride + i), acc);
    _mm256_storeu_ps(out + i, acc);
  }
  for (; i < head_dim; i++) {
    float acc = 0.0f;
    for (int p = 0; p < n; p++) acc += weights[p] * values[p * stride + i];
    out[i] = acc;
  }
}
#endif

static struct attention_kernels attention_kernels(void) {
#if LLM_HAVE_AVX2_KERNELS
  if (llm_kernel_set() >= LLM_KERNELS_AVX2) return (struct attention_kernels){ scores_avx2, mix_avx2 };
#endif
  return (struct attention_kernels){ scores_scalar, mix_scalar };
}

struct attention_job {
  const struct llm_attention_args *args;
  struct attention_kernels kernels;
};

/* One (head, query) pair of one sequence: scores over the visible positions, softmax, weighted sum of values. */
static void attend(const struct llm_attention_args *a, const struct llm_attention_seq *seq,
                   const struct attention_kernels *kernels, int head, int token, float *scores) {
  const int head_dim = a->head_dim;
  const int64_t kv_stride = (int64_t)a->n_kv_heads * head_dim;
  const int kv_head = head / (a->n_heads / a->n_kv_heads);
  const float *q = seq->q + ((int64_t)token * a->n_heads + head) * head_dim;
  const float *keys = seq->key_cache + (int64_t)kv_head * head_dim;
  const float *values = seq->value_cache + (int64_t)kv_head * head_dim;
  const int n_visible = seq->pos + token + 1;
  const float scale = 1.0f / sqrtf((float)head_dim);

  kernels->scores(scores, q, keys, kv_stride, n_visible, head_dim, scale);
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
  kernels->mix(seq->out + ((int64_t)token * a->n_heads + head) * head_dim, scores, values, kv_stride, n_visible, head_dim);
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
  struct attention_job job = { args, attention_kernels() };
  size_t tasks = 0;
  int64_t multiply_adds = 0; /* scores and the weighted sum: 2 x head_dim per visible position */
  for (int s = 0; s < args->n_seqs; s++) {
    const struct llm_attention_seq *seq = &args->seqs[s];
    tasks += (size_t)args->n_heads * (size_t)seq->n_tokens;
    multiply_adds += (int64_t)args->n_heads * seq->n_tokens * (seq->pos + seq->n_tokens) * 2 * args->head_dim;
  }
  llm_parallel_for_work(pool, tasks, multiply_adds, attention_task, &job);
}
