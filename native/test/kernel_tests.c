/* Kernel checks: every SIMD kernel against its scalar reference at awkward sizes, rope against a naive
 * formula, top-k against a full sort. Prints one line per check; exits non-zero if any fails. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"
#include "matmul.h"
#include "ops.h"

static int failures = 0;

static void report(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int ok, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  printf("%s ", ok ? "ok  " : "FAIL");
  vprintf(fmt, args);
  printf("\n");
  va_end(args);
  if (!ok) failures++;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float uniform(void) { /* [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

static uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}

/* Round-to-nearest half, normal range only (test values are in [-1, 1) and not tiny). */
static uint16_t f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  int32_t exponent = (int32_t)((u >> 23) & 0xff) - 127 + 15;
  uint32_t mantissa = u & 0x7fffff;
  if (exponent <= 0) return (uint16_t)sign;
  uint32_t h = sign | ((uint32_t)exponent << 10) | (mantissa >> 13);
  if ((mantissa & 0x1fff) > 0x1000 || ((mantissa & 0x1fff) == 0x1000 && (h & 1))) h++;
  return (uint16_t)h;
}

static void *random_weights(enum llm_type type, int64_t n) {
  void *data = malloc((size_t)n * llm_type_size(type));
  for (int64_t i = 0; i < n; i++) {
    float v = uniform();
    if (type == LLM_F32) ((float *)data)[i] = v;
    else if (type == LLM_F16) ((uint16_t *)data)[i] = f32_to_f16(v);
    else ((uint16_t *)data)[i] = f32_to_bf16(v);
  }
  return data;
}

/* Scalar matmul vs the dispatched one (AVX2 where available) and, with a pool, the threaded split. Error is
 * relative to sum |w*x|, the scale of rounding in a reordered float sum. */
static void check_matmul(struct llm_threadpool *pool, enum llm_type type, int64_t rows, int64_t cols, int n_tokens) {
  struct llm_tensor w = { random_weights(type, rows * cols), type, rows, cols };
  float *x = malloc((size_t)(n_tokens * cols) * sizeof(float));
  for (int64_t i = 0; i < n_tokens * cols; i++) x[i] = uniform();
  float *expected = malloc((size_t)(n_tokens * rows) * sizeof(float));
  float *actual = malloc((size_t)(n_tokens * rows) * sizeof(float));
  llm_matmul_rows_scalar(expected, &w, x, n_tokens, 0, rows);
  llm_matmul(pool, actual, &w, x, n_tokens);
  double worst = 0.0;
  for (int t = 0; t < n_tokens; t++) {
    for (int64_t r = 0; r < rows; r++) {
      double magnitude = 0.0;
      for (int64_t c = 0; c < cols; c++) magnitude += fabs(llm_tensor_get(w.data, type, r * cols + c) * x[t * cols + c]);
      double err = fabs(expected[t * rows + r] - actual[t * rows + r]) / (magnitude + 1e-30);
      if (err > worst) worst = err;
    }
  }
  report(worst < 1e-6, "matmul %-4s rows %3lld cols %3lld tokens %2d (%s, %d threads): max relative error %.2e",
         llm_type_name(type), (long long)rows, (long long)cols, n_tokens, llm_kernel_set_name(llm_kernel_set()),
         llm_threadpool_size(pool), worst);
  free((void *)w.data);
  free(x);
  free(expected);
  free(actual);
}

/* Three products sharing their input in one parallel loop (chunks straddle matrix boundaries) vs scalar. */
static void check_matmul_many(struct llm_threadpool *pool, int n_tokens) {
  const int64_t cols = 45, rows[3] = { 30, 9, 17 };
  const enum llm_type types[3] = { LLM_F32, LLM_BF16, LLM_F16 };
  struct llm_tensor w[3];
  float *outs[3], *expected[3];
  const struct llm_tensor *ws[3];
  float *x = malloc((size_t)(n_tokens * cols) * sizeof(float));
  for (int64_t i = 0; i < n_tokens * cols; i++) x[i] = uniform();
  for (int p = 0; p < 3; p++) {
    w[p] = (struct llm_tensor){ random_weights(types[p], rows[p] * cols), types[p], rows[p], cols };
    ws[p] = &w[p];
    outs[p] = malloc((size_t)(n_tokens * rows[p]) * sizeof(float));
    expected[p] = malloc((size_t)(n_tokens * rows[p]) * sizeof(float));
    llm_matmul_rows_scalar(expected[p], &w[p], x, n_tokens, 0, rows[p]);
  }
  llm_matmul_many(pool, 3, outs, ws, x, n_tokens);
  double worst = 0.0;
  for (int p = 0; p < 3; p++)
    for (int64_t i = 0; i < n_tokens * rows[p]; i++) worst = fmax(worst, fabs(outs[p][i] - expected[p][i]));
  report(worst < 1e-5, "matmul_many 3 products, tokens %d (%d threads): max error %.2e", n_tokens,
         llm_threadpool_size(pool), worst);
  for (int p = 0; p < 3; p++) {
    free((void *)w[p].data);
    free(outs[p]);
    free(expected[p]);
  }
  free(x);
}

static void check_rope(bool interleaved) {
  const int n_heads = 3, head_dim = 10, half = head_dim / 2;
  float freqs[5];
  for (int i = 0; i < half; i++) freqs[i] = 1.0f / powf(10000.0f, (float)(2 * i) / head_dim);
  for (int pos = 0; pos < 40; pos += 13) {
    float vec[30], ref[30];
    for (int i = 0; i < n_heads * head_dim; i++) vec[i] = ref[i] = uniform();
    llm_rope(vec, n_heads, head_dim, pos, freqs, interleaved);
    /* The textbook formula: complex rotation of each pair by pos * theta_i. */
    for (int h = 0; h < n_heads; h++) {
      for (int i = 0; i < half; i++) {
        int a = h * head_dim + (interleaved ? 2 * i : i), b = h * head_dim + (interleaved ? 2 * i + 1 : i + half);
        double angle = (double)(float)((float)pos * freqs[i]);
        double x0 = ref[a], x1 = ref[b];
        ref[a] = (float)(x0 * cos(angle) - x1 * sin(angle));
        ref[b] = (float)(x1 * cos(angle) + x0 * sin(angle));
      }
    }
    double worst = 0.0;
    for (int i = 0; i < n_heads * head_dim; i++) worst = fmax(worst, fabs(vec[i] - ref[i]));
    report(worst < 1e-5, "rope %-11s pos %2d: max error %.2e", interleaved ? "interleaved" : "half", pos, worst);
  }
}

static const float *sort_values;
static int by_value_desc(const void *a, const void *b) {
  int32_t ia = *(const int32_t *)a, ib = *(const int32_t *)b;
  float va = sort_values[ia], vb = sort_values[ib];
  if (va != vb) return va > vb ? -1 : 1;
  return ia - ib;
}

static void check_top_k(int n, int k, int distinct_values) {
  float *values = malloc((size_t)n * sizeof(float));
  int32_t *sorted = malloc((size_t)n * sizeof(int32_t));
  int32_t *top = malloc((size_t)k * sizeof(int32_t));
  /* Few distinct values force ties, which must come out lower index first. */
  for (int i = 0; i < n; i++) {
    values[i] = distinct_values ? floorf((uniform() + 1.0f) * (float)distinct_values) : uniform();
    sorted[i] = i;
  }
  sort_values = values;
  qsort(sorted, (size_t)n, sizeof(int32_t), by_value_desc);
  llm_top_k(values, n, k, top);
  int ok = memcmp(top, sorted, (size_t)k * sizeof(int32_t)) == 0;
  ok &= llm_argmax(values, n) == sorted[0];
  report(ok, "top-k n %5d k %3d%s matches a sort (and argmax)", n, k, distinct_values ? " with ties" : "");
  free(values);
  free(sorted);
  free(top);
}

int main(void) {
  printf("kernel set: %s\n", llm_kernel_set_name(llm_kernel_set()));
  struct llm_threadpool *single = llm_threadpool_create(1), *pair = llm_threadpool_create(3);
  const enum llm_type types[] = { LLM_F32, LLM_F16, LLM_BF16 };
  const int64_t shapes[][2] = { { 1, 1 }, { 5, 7 }, { 13, 40 }, { 33, 61 }, { 64, 96 }, { 7, 131 } };
  const int token_counts[] = { 1, 2, 3, 4, 5, 6, 7, 17 };
  for (size_t t = 0; t < 3; t++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (size_t n = 0; n < sizeof token_counts / sizeof token_counts[0]; n++)
        check_matmul(single, types[t], shapes[s][0], shapes[s][1], token_counts[n]);
  /* Threaded split, and a column count large enough to take several token passes. */
  for (size_t t = 0; t < 3; t++) {
    check_matmul(pair, types[t], 301, 77, 1);
    check_matmul(pair, types[t], 50, 9000, 40);
  }
  check_matmul_many(pair, 1);
  check_matmul_many(pair, 5);
  check_rope(true);
  check_rope(false);
  check_top_k(1, 1, 0);
  check_top_k(100, 1, 0);
  check_top_k(32000, 40, 0);
  check_top_k(1000, 1000, 0);
  check_top_k(5000, 50, 3);
  check_top_k(64, 64, 2);
  llm_threadpool_free(single);
  llm_threadpool_free(pair);
  if (failures) printf("%d check(s) failed\n", failures);
  else printf("all checks passed\n");
  return failures ? 1 : 0;
}
