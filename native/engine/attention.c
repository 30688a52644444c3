#include <math.h>

#include "cpu_features.h"
#include "ops.h"

#if LLM_HAVE_AVX2_KERNELS
#include <immintrin.h>
#endif

/* The two vector primitives of attention: q.k for the scores, out += weight * v for the mix. */
struct attention_kernels {
  float (*dot)(const float *a, const float *b, int n);
  void (*axpy)(float *y, float alpha, const float *x, int n);
};

static float dot_scalar(const float *a, const float *b, int n) {
  float sum = 0.0f;
  for (int i = 0; i < n; i++) sum += a[i] * b[i];
  return sum;
}

static void axpy_scalar(float *y, float alpha, const float *x, int n) {
  for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

#if LLM_HAVE_AVX2_KERNELS
LLM_TARGET_AVX2 static float dot_avx2(const float *a, const float *b, int n) {
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

LLM_TARGET_AVX2 static void axpy_avx2(float *y, float alpha, const float *x, int n) {
  __m256 a = _mm256_set1_ps(alpha);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += alpha * x[i];
}
#endif

static struct attention_kernels attention_kernels(void) {
#if LLM_HAVE_AVX2_KERNELS
  if (llm_kernel_set() >= LLM_KERNELS_AVX2) return (struct attention_kernels){ dot_avx2, axpy_avx2 };
#endif
  return (struct attention_kernels){ dot_scalar, axpy_scalar };
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

  float max_score = -INFINITY;
  for (int p = 0; p < n_visible; p++) {
    scores[p] = kernels->dot(q, keys + p * kv_stride, head_dim) * scale;
    if (scores[p] > max_score) max_score = scores[p];
  }
  float sum = 0.0f;
  for (int p = 0; p < n_visible; p++) {
    scores[p] = expf(scores[p] - max_score);
    sum += scores[p];
  }
  float inv_sum = 1.0f / sum;

  float *out = seq->out + ((int64_t)token * a->n_heads + head) * head_dim;
  for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
  for (int p = 0; p < n_visible; p++) kernels->axpy(out, scores[p] * inv_sum, values + p * kv_stride, head_dim);
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
  for (int s = 0; s < args->n_seqs; s++) tasks += (size_t)args->n_heads * (size_t)args->seqs[s].n_tokens;
  llm_parallel_for(pool, tasks, attention_task, &job);
}
