/* Kernel checks: every SIMD kernel against its scalar reference at awkward sizes, rope against a naive
 * formula, top-k against a full sort, the sampler against rng.ts's numbers and hand-made distributions. Prints one line per check; exits non-zero if any fails. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"
#include "dot.h"
#include "kv_cache.h"
#include "matmul.h"
#include "ops.h"
#include "quant.h"
#include "repack.h"
#include "report.h"
#include "sampler.h"
#include "threadpool.h"

#if LLM_HAVE_AVX2_KERNELS
#include <immintrin.h>
#endif
#include "simd_neon.h"


static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float uniform(void) { /* [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

/* Random weights of a type: uniform f32 values in [-1, 1) converted with the engine's own quantizers. The
 * scalar kernels are the reference for the SIMD ones, and dequantize (checked against hand-made blocks below)
 * is the reference for both. */
static void *random_weights(enum llm_type type, int64_t rows, int64_t cols) {
  float *values = malloc((size_t)(rows * cols) * sizeof(float));
  for (int64_t i = 0; i < rows * cols; i++) values[i] = uniform();
  void *data = malloc((size_t)rows * llm_row_bytes(type, cols));
  llm_quantize_row(type, values, data, rows * cols);
  free(values);
  return data;
}

/* One weight type through the whole driver on the scalar kernels and on the CPU's best (with a pool: the
 * threaded split). Error is relative to sum |w*x|, the scale of rounding in a reordered float sum. For
 * quantized weights the scalar result is also checked against a float64 sum of dequantized weights times the
 * dequantized (quantized) activations: the same number, computed the obvious way. */
static void check_matmul(struct llm_threadpool *pool, enum llm_type type, int64_t rows, int64_t cols, int n_tokens) {
  struct llm_tensor w = { random_weights(type, rows, cols), type, rows, cols };
  const struct llm_tensor *ws[1] = { &w };
  float *x = malloc((size_t)(n_tokens * cols) * sizeof(float));
  for (int64_t i = 0; i < n_tokens * cols; i++) x[i] = uniform();
  float *expected = malloc((size_t)(n_tokens * rows) * sizeof(float));
  float *actual = malloc((size_t)(n_tokens * rows) * sizeof(float));
  float *w_f32 = malloc((size_t)(rows * cols) * sizeof(float));
  float *x_used = malloc((size_t)(n_tokens * cols) * sizeof(float));
  llm_dequantize_row(type, w.data, w_f32, rows * cols);
  /* The activations as the kernels see them: quantized to the kernel's format, then back to f32. */
  enum llm_activation format = llm_dot_kernel(type, LLM_KERNELS_SCALAR)->activation;
  void *x_quantized = malloc(llm_activation_row_bytes(format, cols));
  for (int t = 0; t < n_tokens; t++) {
    llm_quantize_activation_row(format, x + t * cols, x_quantized, cols);
    if (format == LLM_ACTIVATION_Q8_0) llm_dequantize_row_q8_0(x_quantized, x_used + t * cols, cols);
    else if (format == LLM_ACTIVATION_Q8_K) llm_dequantize_row_q8_K(x_quantized, x_used + t * cols, cols);
    else memcpy(x_used + t * cols, x + t * cols, (size_t)cols * sizeof(float));
  }
  free(x_quantized);
  float *expected_out[1] = { expected }, *actual_out[1] = { actual };
  llm_matmul_many_on(pool, LLM_KERNELS_SCALAR, 1, expected_out, ws, x, n_tokens);
  /* Every SIMD set this CPU runs, whatever LLAMA_NAPI_KERNELS picks for production. */
  for (int set = LLM_KERNELS_SCALAR + 1; set < LLM_KERNEL_SET_COUNT; set++) {
  if (!llm_kernel_set_supported((enum llm_kernel_set)set)) continue;
  llm_matmul_many_on(pool, (enum llm_kernel_set)set, 1, actual_out, ws, x, n_tokens);
  double worst = 0.0, worst_vs_f64 = 0.0;
  for (int t = 0; t < n_tokens; t++) {
    for (int64_t r = 0; r < rows; r++) {
      double magnitude = 0.0, exact = 0.0;
      for (int64_t c = 0; c < cols; c++) {
        magnitude += fabs((double)w_f32[r * cols + c] * x_used[t * cols + c]);
        exact += (double)w_f32[r * cols + c] * x_used[t * cols + c];
      }
      worst = fmax(worst, fabs(expected[t * rows + r] - actual[t * rows + r]) / (magnitude + 1e-30));
      worst_vs_f64 = fmax(worst_vs_f64, fabs(expected[t * rows + r] - exact) / (magnitude + 1e-30));
    }
  }
  const double bound = llm_type_is_quantized(type) ? 1e-5 : 1e-6;
  /* The quantized NEON kernels keep the scalar reference's float steps (dot_neon_quant.h): equal bit for bit. */
  const bool exact = llm_type_is_quantized(type) &&
                     (set == LLM_KERNELS_NEON || set == LLM_KERNELS_NEON_DOTPROD || set == LLM_KERNELS_NEON_I8MM);
  const bool identical = memcmp(expected, actual, (size_t)(n_tokens * rows) * sizeof(float)) == 0;
  report(worst < bound && worst_vs_f64 < bound && (!exact || identical),
         "matmul %-4s rows %3lld cols %4lld tokens %2d (%s, %d threads): max relative error %.2e, scalar vs float64 %.2e%s",
         llm_type_name(type), (long long)rows, (long long)cols, n_tokens, llm_kernel_set_name((enum llm_kernel_set)set),
         llm_threadpool_size(pool), worst, worst_vs_f64, exact ? (identical ? ", bit for bit" : ", NOT bit for bit") : "");
  }
  free((void *)w.data);
  free(x);
  free(expected);
  free(actual);
  free(w_f32);
  free(x_used);
}

/* Three products sharing their input in one parallel loop (chunks straddle matrix boundaries, and the
 * activations go to several formats at once) vs scalar. */
static void check_matmul_many(struct llm_threadpool *pool, const enum llm_type types[3], int64_t cols, int n_tokens) {
  const int64_t rows[3] = { 30, 9, 17 };
  struct llm_tensor w[3];
  float *outs[3], *expected[3];
  const struct llm_tensor *ws[3];
  float *x = malloc((size_t)(n_tokens * cols) * sizeof(float));
  for (int64_t i = 0; i < n_tokens * cols; i++) x[i] = uniform();
  for (int p = 0; p < 3; p++) {
    w[p] = (struct llm_tensor){ random_weights(types[p], rows[p], cols), types[p], rows[p], cols };
    ws[p] = &w[p];
    outs[p] = malloc((size_t)(n_tokens * rows[p]) * sizeof(float));
    expected[p] = malloc((size_t)(n_tokens * rows[p]) * sizeof(float));
  }
  llm_matmul_many_on(pool, LLM_KERNELS_SCALAR, 3, expected, ws, x, n_tokens);
  for (int set = LLM_KERNELS_SCALAR + 1; set < LLM_KERNEL_SET_COUNT; set++) {
    if (!llm_kernel_set_supported((enum llm_kernel_set)set)) continue;
    llm_matmul_many_on(pool, (enum llm_kernel_set)set, 3, outs, ws, x, n_tokens);
    double worst = 0.0;
    for (int p = 0; p < 3; p++)
      for (int64_t i = 0; i < n_tokens * rows[p]; i++) worst = fmax(worst, fabs(outs[p][i] - expected[p][i]));
    report(worst < 1e-5 * cols, "matmul_many %s/%s/%s cols %lld, tokens %d (%s, %d threads): max error %.2e",
           llm_type_name(types[0]), llm_type_name(types[1]), llm_type_name(types[2]), (long long)cols, n_tokens,
           llm_kernel_set_name((enum llm_kernel_set)set), llm_threadpool_size(pool), worst);
  }
  for (int p = 0; p < 3; p++) {
    free((void *)w[p].data);
    free(outs[p]);
    free(expected[p]);
  }
  free(x);
}

/* A batch of tokens and the same tokens one at a time must give bit-identical results on the CPU's best set
 * (the forward tests compare batch and step-by-step logits: a last-bit difference can flip the rounding of a
 * quantized activation downstream). */
static void check_batch_equals_steps(struct llm_threadpool *pool, enum llm_type type, int64_t rows, int64_t cols,
                                     int n_tokens) {
  struct llm_tensor w = { random_weights(type, rows, cols), type, rows, cols };
  float *x = malloc((size_t)(n_tokens * cols) * sizeof(float));
  for (int64_t i = 0; i < n_tokens * cols; i++) x[i] = uniform();
  float *batch = malloc((size_t)(n_tokens * rows) * sizeof(float)), *step = malloc((size_t)rows * sizeof(float));
  llm_matmul(pool, batch, &w, x, n_tokens);
  int identical = 1;
  for (int t = 0; t < n_tokens; t++) {
    llm_matmul(pool, step, &w, x + t * cols, 1);
    identical &= memcmp(step, batch + t * rows, (size_t)rows * sizeof(float)) == 0;
  }
  report(identical, "batch == one token at a time, bit for bit: %-4s rows %lld cols %lld tokens %d (%s)",
         llm_type_name(type), (long long)rows, (long long)cols, n_tokens, llm_kernel_set_name(llm_kernel_set()));
  free((void *)w.data);
  free(x);
  free(batch);
  free(step);
}

/* Weights repacked at load (repack.h) on every set with a repacked kernel: within 1e-5 (relative to sum |w x|) of
 * the scalar kernels on the mapped rows, the same bits on every such set and as the AVX-512 kernels on the mapped
 * rows (LLAMA_NAPI_REPACK=0 changes nothing there), and each token the same bits alone as in the batch. */
static void check_repacked(struct llm_threadpool *pool, enum llm_type type, int64_t rows, int64_t cols, int n_tokens) {
  struct llm_tensor w = { random_weights(type, rows, cols), type, rows, cols };
  const size_t group_bytes = llm_repack_group_bytes(type, cols), w_stride = llm_row_bytes(type, cols);
  char *repacked = aligned_alloc(64, llm_repacked_bytes(type, rows, cols));
  for (int64_t first = 0; first < rows; first += LLM_REPACK_ROWS)
    llm_repack_group(type, cols, (const char *)w.data + first * (int64_t)w_stride, w_stride,
                     rows - first < LLM_REPACK_ROWS ? (int)(rows - first) : LLM_REPACK_ROWS,
                     repacked + first / LLM_REPACK_ROWS * (int64_t)group_bytes);
  struct llm_tensor packed = w;
  packed.repacked = repacked;
  const struct llm_tensor *mapped[1] = { &w }, *ws[1] = { &packed };
  float *x = malloc((size_t)(n_tokens * cols) * sizeof(float));
  for (int64_t i = 0; i < n_tokens * cols; i++) x[i] = uniform();
  const size_t out_bytes = (size_t)(n_tokens * rows) * sizeof(float);
  float *expected = malloc(out_bytes), *first_set = NULL, *actual = malloc(out_bytes), *step = malloc((size_t)rows * sizeof(float));
  float *expected_out[1] = { expected }, *actual_out[1] = { actual }, *step_out[1] = { step };
  llm_matmul_many_on(pool, LLM_KERNELS_SCALAR, 1, expected_out, mapped, x, n_tokens);
  double magnitude = 0.0; /* the largest sum |w x| of any row and token, from the dequantized weights */
  float *w_f32 = malloc((size_t)(rows * cols) * sizeof(float));
  llm_dequantize_row(type, w.data, w_f32, rows * cols);
  for (int t = 0; t < n_tokens; t++)
    for (int64_t r = 0; r < rows; r++) {
      double m = 0.0;
      for (int64_t c = 0; c < cols; c++) m += fabs((double)w_f32[r * cols + c] * x[t * cols + c]);
      magnitude = fmax(magnitude, m);
    }
  for (int set = LLM_KERNELS_SCALAR + 1; set < LLM_KERNEL_SET_COUNT; set++) {
    if (!llm_kernel_set_supported((enum llm_kernel_set)set) || !llm_repacked_kernel(type, (enum llm_kernel_set)set)) continue;
    llm_matmul_many_on(pool, (enum llm_kernel_set)set, 1, actual_out, ws, x, n_tokens);
    double worst = 0.0;
    for (int64_t i = 0; i < n_tokens * rows; i++) worst = fmax(worst, fabs(actual[i] - expected[i]));
    int same_as_first = 1, steps_same = 1;
    if (!first_set) {
      first_set = malloc(out_bytes);
      memcpy(first_set, actual, out_bytes);
    } else {
      same_as_first = memcmp(first_set, actual, out_bytes) == 0;
    }
    for (int t = 0; t < n_tokens; t++) {
      llm_matmul_many_on(pool, (enum llm_kernel_set)set, 1, step_out, ws, x + t * cols, 1);
      steps_same &= memcmp(step, actual + t * rows, (size_t)rows * sizeof(float)) == 0;
    }
    report(worst < 1e-5 * magnitude && same_as_first && steps_same,
           "repacked %-4s rows %3lld cols %4lld tokens %2d (%s, %d threads): max error %.2e of %.2e, same bits as the "
           "first set %d, alone as in the batch %d", llm_type_name(type), (long long)rows, (long long)cols, n_tokens,
           llm_kernel_set_name((enum llm_kernel_set)set), llm_threadpool_size(pool), worst, magnitude, same_as_first,
           steps_same);
  }
  if (first_set && llm_kernel_set_supported(LLM_KERNELS_AVX512)) {
    llm_matmul_many_on(pool, LLM_KERNELS_AVX512, 1, actual_out, mapped, x, n_tokens);
    report(memcmp(first_set, actual, out_bytes) == 0, "repacked %-4s rows %3lld cols %4lld tokens %2d: the same bits as "
           "avx512 on the mapped rows", llm_type_name(type), (long long)rows, (long long)cols, n_tokens);
  }
  free((void *)w.data);
  free(repacked);
  free(w_f32);
  free(x);
  free(expected);
  free(first_set);
  free(actual);
  free(step);
}

/* The AVX-512 activation quantizers against the references, bit for bit: random rows, exact ties (x * id landing
 * on k + 0.5, where roundf and round-half-even differ), repeated maxima of both signs, all-zero blocks. */
static void check_activation_quantizers(void) {
#if LLM_HAVE_AVX512_KERNELS
  if (!llm_kernel_set_supported(LLM_KERNELS_AVX512)) return;
  enum { N = 4096 };
  static float x[N];
  static unsigned char a[N * 2], b[N * 2];
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < N; i++) x[i] = uniform() * (i % 512 < 256 ? 1.0f : 1e-3f);
    if (round == 1) /* ties: amax 127 makes id 1, then halves round away from zero in q8_0 */
      for (int i = 0; i < N; i++) x[i] = i % 32 == 0 ? 127.0f : (float)((i * 7) % 253 - 126) + 0.5f * (i % 2 ? 1 : -1);
    if (round == 2) /* equal magnitudes of both signs: the first one decides q8_K's sign */
      for (int i = 0; i < N; i++) x[i] = i % 3 == 0 ? -2.0f : i % 3 == 1 ? 2.0f : uniform();
    if (round == 3)
      for (int i = 0; i < N; i++) x[i] = i < 1024 ? 0.0f : x[i];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    llm_quantize_row_q8_0_ref(x, a, N);
    llm_quantize_row_q8_0_avx512(x, b, N);
    report(memcmp(a, b, llm_row_bytes(LLM_Q8_0, N)) == 0, "q8_0 activation quantizer avx512 == reference (case %d)", round);
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    llm_quantize_row_q8_K(x, a, N);
    llm_quantize_row_q8_K_avx512(x, b, N);
    report(memcmp(a, b, (N / LLM_QK_K) * sizeof(struct llm_block_q8_K)) == 0,
           "q8_K activation quantizer avx512 == reference (case %d)", round);
  }
#endif
}

static uint16_t half_bits(const void *block) { /* the leading d of a q8_0/q4_0 block */
  uint16_t d;
  memcpy(&d, block, sizeof d);
  return d;
}

/* q8_0 and q4_0 reference quantization on blocks whose result is known by hand: zeros, ties (roundf rounds
 * them away from zero, q4_0's +8.5 truncation rounds them up), the sign of the largest magnitude, clamping, and
 * the round-to-nearest-even of d into a half. */
static void check_reference_blocks(void) {
  float x[32];
  struct llm_block_q8_0 q8;
  uint8_t q4[18];

  memset(x, 0, sizeof x);
  llm_quantize_row_q8_0_ref(x, &q8, 32);
  int ok = q8.d == 0;
  for (int j = 0; j < 32; j++) ok &= q8.qs[j] == 0;
  llm_quantize_row_q4_0_ref(x, q4, 32);
  ok &= half_bits(q4) == 0x8000; /* d = 0 / -8 = -0 */
  for (int j = 0; j < 16; j++) ok &= q4[2 + j] == 0x88;
  report(ok, "q8_0/q4_0 reference: all-zero block (q4_0 d = -0, values 8)");

  /* amax 127: d = 1 exactly, so each value is its own rounding. */
  const float q8_in[12] = { 127, -127, 63.5f, -63.5f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 0.49999997f, 126.5f, 3 };
  const int8_t q8_want[12] = { 127, -127, 64, -64, 1, -1, 2, 3, -3, 0, 127, 3 };
  memset(x, 0, sizeof x);
  memcpy(x, q8_in, sizeof q8_in);
  llm_quantize_row_q8_0_ref(x, &q8, 32);
  ok = q8.d == 0x3c00 && memcmp(q8.qs, q8_want, sizeof q8_want) == 0;
  report(ok, "q8_0 reference: d = 1, ties round away from zero");

  /* d = amax / 127 exactly halfway between two halves: ties to even. */
  memset(x, 0, sizeof x);
  x[3] = 127.0f * (1.0f + 0x1p-11f);
  llm_quantize_row_q8_0_ref(x, &q8, 32);
  ok = q8.d == 0x3c00;
  x[3] = -127.0f * (1.0f + 3 * 0x1p-11f);
  llm_quantize_row_q8_0_ref(x, &q8, 32);
  ok &= q8.d == 0x3c02 && q8.qs[3] == -127;
  report(ok, "q8_0 reference: d rounds to the nearest even half on ties (0x%04x)", q8.d);

  /* Largest magnitude -8: d = 1, values map to round(x) + 8 with ties up, 7.5 clamps to 15. */
  const float q4_in[8] = { -8, 7, 7.5f, 0.5f, -0.5f, 1.5f, -1.5f, 3.2f };
  const int q4_want[8] = { 0, 15, 15, 9, 8, 10, 7, 11 };
  memset(x, 0, sizeof x);
  for (int j = 0; j < 8; j++) x[2 * j] = q4_in[j]; /* low nibbles: values 0..15 */
  x[16] = 8.0f - 1e-3f;                              /* a high nibble */
  llm_quantize_row_q4_0_ref(x, q4, 32);
  ok = half_bits(q4) == 0x3c00;
  for (int j = 0; j < 8; j++) ok &= (q4[2 + 2 * j] & 0x0f) == q4_want[j];
  ok &= (q4[2] >> 4) == 15; /* 7.999 + 8.5 = 16.499 -> 16 -> clamped */
  report(ok, "q4_0 reference: d = max / -8 keeps the sign, ties round up, +8 clamps to 15");

  /* Largest magnitude +8: d = -1, so +8 -> q 0 (value 8) and -8 clamps to 15 (value -7). */
  memset(x, 0, sizeof x);
  x[0] = 8;
  x[1] = -8;
  llm_quantize_row_q4_0_ref(x, q4, 32);
  float back[32];
  llm_dequantize_row_q4_0(q4, back, 32);
  ok = half_bits(q4) == 0xbc00 && (q4[2] & 0x0f) == 0 && (q4[3] & 0x0f) == 15 && back[0] == 8 && back[1] == -7;
  report(ok, "q4_0 reference: positive max gives d = -1 (the -max end clamps to -7)");
}

/* Per-element error bounds of quantize -> dequantize on random rows: q8_0 within d/2 (d the unrounded scale)
 * plus 127 times the half rounding of d; q4_0 within |d|/2 except the clamped end (|d|), plus 8 times the half
 * rounding of d (values are quantized with the unrounded d); K-quants by RMSE relative to the RMS of the data. */
static void check_round_trip(enum llm_type type, int64_t n) {
  float *x = malloc((size_t)n * sizeof(float)), *back = malloc((size_t)n * sizeof(float));
  void *q = malloc(llm_row_bytes(type, n));
  for (int64_t i = 0; i < n; i++) x[i] = uniform() * (i % 64 < 32 ? 1.0f : 0.01f); /* blocks of different scales */
  llm_quantize_row(type, x, q, n);
  llm_dequantize_row(type, q, back, n);
  int ok = 1;
  double err2 = 0, sum2 = 0;
  const int block = llm_type_block_size(type);
  for (int64_t b = 0; b < n / block; b++) {
    float amax = 0;
    for (int j = 0; j < block; j++) amax = fmaxf(amax, fabsf(x[b * block + j]));
    const float d_half = llm_f16_to_f32(half_bits((const char *)q + b * llm_type_block_bytes(type)));
    for (int j = 0; j < block; j++) {
      const int64_t i = b * block + j;
      const double err = fabs((double)back[i] - x[i]);
      err2 += err * err;
      sum2 += (double)x[i] * x[i];
      if (type == LLM_Q8_0) ok &= err <= amax / 127 / 2 + 127 * fabs(d_half - amax / 127) + 1e-7;
      if (type == LLM_Q4_0)
        ok &= err <= fabsf(d_half) * (fabsf(x[i]) > 7.5f * fabsf(d_half) ? 1.0f : 0.5f) + 8 * fabs(fabsf(d_half) - amax / 8) + 1e-6f;
    }
  }
  const double relative_rmse = sqrt(err2 / sum2);
  if (type == LLM_Q4_K) ok &= relative_rmse < 0.08;
  if (type == LLM_Q5_K) ok &= relative_rmse < 0.04;
  if (type == LLM_Q3_K) ok &= relative_rmse < 0.15;
  if (type == LLM_Q2_K) ok &= relative_rmse < 0.35;
  if (type == LLM_IQ4_NL || type == LLM_IQ4_XS || type == LLM_Q4_1) ok &= relative_rmse < 0.08;
  if (type == LLM_Q5_0 || type == LLM_Q5_1) ok &= relative_rmse < 0.04;
  if (type == LLM_Q6_K) ok &= relative_rmse < 0.02;
  report(ok, "round trip %-4s n %lld: relative RMSE %.4f", llm_type_name(type), (long long)n, relative_rmse);
  free(x);
  free(back);
  free(q);
}

#if LLM_HAVE_AVX2_KERNELS
LLM_TARGET_AVX2 static uint16_t hardware_f16(float f) { return _cvtss_sh(f, 0); }
#define HARDWARE_F16 "F16C"
#elif LLM_HAVE_NEON_KERNELS
static uint16_t hardware_f16(float f) { return vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(f))), 0); }
#define HARDWARE_F16 "NEON fcvtn"
#endif

/* The portable f32 -> f16 (which sets every block scale) against the hardware conversion (F16C, or NEON's, which the
 * NEON f16 KV cache stores with) on special values and random bit patterns across the whole range. */
static void check_f16_conversion(void) {
#if defined(HARDWARE_F16)
#if LLM_HAVE_AVX2_KERNELS
  if (llm_kernel_set() < LLM_KERNELS_AVX2) return;
#endif
  const float specials[] = { 0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 1e10f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f,
                             0x1p-14f, 0x1.ffcp-15f, 0x1.002p0f, 0x1.006p0f, INFINITY, -INFINITY };
  int mismatches = 0;
  for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
    mismatches += llm_f32_to_f16(specials[i]) != hardware_f16(specials[i]);
  for (int i = 0; i < 2000000; i++) {
    uint32_t bits = (uint32_t)(rng_state >> 32);
    uniform();
    float f;
    memcpy(&f, &bits, sizeof f);
    if (isnan(f)) continue;
    mismatches += llm_f32_to_f16(f) != hardware_f16(f);
  }
  report(mismatches == 0, "f32 -> f16 matches %s on specials and 2M random patterns (%d mismatches)", HARDWARE_F16, mismatches);
#endif
}

/* Each quantized embedding row comes out as its dequantized row. */
static void check_embedding(enum llm_type type) {
  const int64_t vocab = 5, dim = 512;
  struct llm_tensor table = { random_weights(type, vocab, dim), type, vocab, dim };
  float row[512], all[5 * 512];
  llm_dequantize_row(type, table.data, all, vocab * dim);
  int ok = 1;
  for (int t = 0; t < vocab; t++) {
    llm_embedding(row, &table, t);
    ok &= memcmp(row, all + t * dim, sizeof row) == 0;
  }
  report(ok, "embedding %s: rows equal the dequantized table", llm_type_name(type));
  free((void *)table.data);
}

static void check_rope(bool interleaved) {
  const int n_heads = 3, head_dim = 10, half = head_dim / 2;
  float freqs[5];
  for (int i = 0; i < half; i++) freqs[i] = 1.0f / powf(10000.0f, (float)(2 * i) / head_dim);
  for (int pos = 0; pos < 40; pos += 13) {
    float vec[30], ref[30];
    for (int i = 0; i < n_heads * head_dim; i++) vec[i] = ref[i] = uniform();
    llm_rope(vec, n_heads, head_dim, pos, freqs, interleaved);
    /* The textbook formula: complex rotation of each pair by pos * theta_i, pair i stored at (2i, 2i+1). */
    for (int h = 0; h < n_heads; h++) {
      float in[10];
      memcpy(in, ref + h * head_dim, sizeof in);
      for (int i = 0; i < half; i++) {
        double angle = (double)(float)((float)pos * freqs[i]);
        double x0 = in[interleaved ? 2 * i : i], x1 = in[interleaved ? 2 * i + 1 : i + half];
        ref[h * head_dim + 2 * i] = (float)(x0 * cos(angle) - x1 * sin(angle));
        ref[h * head_dim + 2 * i + 1] = (float)(x1 * cos(angle) + x0 * sin(angle));
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

/* Attention of one sequence (several queries, grouped heads) over a paged cache of the given type, its blocks in
 * reverse order in the pool, against a float64 softmax(q.k / sqrt(d)) v over the values the cache holds (so that
 * the check measures the kernels, not the type's rounding). Run under each kernel set (native-kernels.test.js),
 * this compares the SIMD kernels of each type with the scalar ones through the same reference. */
static void check_attention(struct llm_threadpool *pool, enum llm_kv_type type, int head_dim, int pos, int n_tokens) {
  const int n_heads = 4, n_kv_heads = 2, context = pos + n_tokens;
  const int n_blocks = (context + LLM_KV_BLOCK_TOKENS - 1) / LLM_KV_BLOCK_TOKENS;
  const int64_t q_dim = (int64_t)n_heads * head_dim, kv_dim = (int64_t)n_kv_heads * head_dim;
  const size_t row_bytes = llm_kv_row_bytes(type, kv_dim);
  float *q = malloc((size_t)(n_tokens * q_dim) * sizeof(float)), *out = malloc((size_t)(n_tokens * q_dim) * sizeof(float));
  float *keys = malloc((size_t)(context * kv_dim) * sizeof(float)), *values = malloc((size_t)(context * kv_dim) * sizeof(float));
  uint8_t *key_pool = malloc((size_t)n_blocks * LLM_KV_BLOCK_TOKENS * row_bytes);
  uint8_t *value_pool = malloc((size_t)n_blocks * LLM_KV_BLOCK_TOKENS * row_bytes);
  int32_t *blocks = malloc((size_t)n_blocks * sizeof(int32_t));
  float *scores = malloc((size_t)(llm_threadpool_size(pool) * context) * sizeof(float));
  double *weights = malloc((size_t)context * sizeof(double));
  for (int b = 0; b < n_blocks; b++) blocks[b] = n_blocks - 1 - b;
  for (int64_t i = 0; i < n_tokens * q_dim; i++) q[i] = 2.0f * uniform();
  for (int p = 0; p < context; p++) {
    float row[2 * 128];
    const size_t at = ((size_t)blocks[p / LLM_KV_BLOCK_TOKENS] * LLM_KV_BLOCK_TOKENS + p % LLM_KV_BLOCK_TOKENS) * row_bytes;
    for (int64_t i = 0; i < kv_dim; i++) row[i] = uniform();
    llm_kv_store_row(type, row, key_pool + at, kv_dim);
    llm_kv_load_row(type, key_pool + at, keys + p * kv_dim, kv_dim);
    for (int64_t i = 0; i < kv_dim; i++) row[i] = uniform();
    llm_kv_store_row(type, row, value_pool + at, kv_dim);
    llm_kv_load_row(type, value_pool + at, values + p * kv_dim, kv_dim);
  }
  const struct llm_attention_seq seq = { out, q, blocks, n_tokens, pos };
  const struct llm_attention_args args = { &seq, 1, scores, context, n_heads, n_kv_heads, head_dim, type,
                                           key_pool, value_pool, row_bytes };
  llm_attention(pool, &args);
  double worst = 0.0;
  for (int t = 0; t < n_tokens; t++)
    for (int h = 0; h < n_heads; h++) {
      const float *qh = q + t * q_dim + h * head_dim;
      const int kv = h / (n_heads / n_kv_heads), visible = pos + t + 1;
      double max = -INFINITY, sum = 0.0;
      for (int p = 0; p < visible; p++) {
        double dot = 0.0;
        for (int i = 0; i < head_dim; i++) dot += (double)qh[i] * keys[p * kv_dim + kv * head_dim + i];
        weights[p] = dot / sqrt((double)head_dim);
        max = fmax(max, weights[p]);
      }
      for (int p = 0; p < visible; p++) sum += weights[p] = exp(weights[p] - max);
      for (int i = 0; i < head_dim; i++) {
        double mixed = 0.0;
        for (int p = 0; p < visible; p++) mixed += weights[p] / sum * values[p * kv_dim + kv * head_dim + i];
        worst = fmax(worst, fabs(mixed - out[t * q_dim + h * head_dim + i]));
      }
    }
  report(worst < 1e-5, "attention %-6s %-4s head_dim %3d pos %3d tokens %d on %d threads: max error %.2e",
         llm_kernel_set_name(llm_kernel_set()), llm_kv_type_name(type), head_dim, pos, n_tokens,
         llm_threadpool_size(pool), worst);
  free(q), free(out), free(keys), free(values), free(scores), free(weights), free(key_pool), free(value_pool), free(blocks);
}

/* SwiGLU against float64: random gates over the range where silu bends and saturates, and the ends of the
 * exponent's clamp. The tolerance is a few float roundings of the result. */
static void check_swiglu(void) {
  enum { N = 4099 };
  static float gate[N], up[N], out[N];
  for (int i = 0; i < N; i++) gate[i] = 25.0f * uniform(), up[i] = uniform();
  const float edges[] = { 0.0f, -0.0f, 1e-30f, -1e-30f, 86.9f, -86.9f, 87.5f, -87.5f, 88.5f, -88.5f, 100.0f, -100.0f };
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) gate[i * 7] = edges[i];
  llm_swiglu(out, gate, up, N);
  double worst = 0.0;
  for (int i = 0; i < N; i++) {
    const double ref = (double)gate[i] / (1.0 + exp(-(double)gate[i])) * up[i];
    worst = fmax(worst, fabs(out[i] - ref) / (fabs(ref) + 1e-30));
  }
  /* A value's result must not depend on where it falls in the array (batches of sequences rely on it). */
  float part[13];
  int same = 1;
  for (int start = 0; start < 40; start += 3) {
    llm_swiglu(part, gate + start, up + start, 13);
    same &= memcmp(part, out + start, sizeof part) == 0;
  }
  report(worst < 1e-6 && same, "swiglu %s: max relative error %.2e, same bits at any offset", llm_kernel_set_name(llm_kernel_set()), worst);
}

/* NaNs rank below every number (all NaN: index 0) and -0 ties with +0, in argmax as in top-k. */
static void check_argmax_special(void) {
  const int n = 37;
  float values[37];
  int ok = 1;
  for (int nan_at = -1; nan_at < n; nan_at += 6) {
    for (int i = 0; i < n; i++) values[i] = -1.0f - (float)i;
    values[n - 3] = 0.0f;
    values[5] = -0.0f;
    if (nan_at >= 0) values[nan_at] = NAN;
    values[0] = NAN;
    const int expected = nan_at == 5 ? n - 3 : 5;
    int32_t top;
    llm_top_k(values, n, 1, &top);
    ok &= llm_argmax(values, n) == expected && top == expected;
  }
  for (int i = 0; i < n; i++) values[i] = NAN;
  ok &= llm_argmax(values, n) == 0;
  for (int i = 0; i < n; i++) values[i] = i == 20 ? NAN : -INFINITY;
  ok &= llm_argmax(values, n) == 0 && llm_argmax(values + 1, n - 1) == 0;
  report(ok, "argmax and top-1 with NaNs, signed zeros, all NaN, all -inf");
}

/* ---- The sampler (sampler.c) ---- */

/* The first outputs of lib/sampling/rng.ts for a few seeds (printed by its Rng): the C generator must give them
 * bit for bit, which is what makes a seed mean the same tokens on every machine. */
static void check_sampler_rng(void) {
  static const struct {
    int64_t seed;
    uint32_t first[4];
    double uniform; /* the first llm_rng_uniform of a fresh generator */
  } cases[] = {
    { 0, { 0xe308dc58u, 0x4392d0e4u, 0x03318f97u, 0xac593a63u }, 0.88685395020215940 },
    { 42, { 0xa91e1cacu, 0x207b36e9u, 0x1c987ffau, 0xd09fde9eu }, 0.66061572080016207 },
    { -7, { 0xf4b79f86u, 0x5c54427du, 0x57323a9du, 0x5911887du }, 0.95592686802641069 },
    { 1099511627779LL, { 0x6d89afc4u, 0x4bbb0a26u, 0xd509448cu, 0x79531005u }, 0.42788218182193294 },
    { -9007199254740991LL, { 0xaf0a4c4du, 0x4a312e60u, 0x3211d8f9u, 0x3bcd5cc7u }, 0.68375088490406377 },
  };
  int ok = 1;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    struct llm_rng rng;
    llm_rng_seed(&rng, cases[c].seed);
    for (int i = 0; i < 4; i++) ok &= llm_rng_next(&rng) == cases[c].first[i];
    llm_rng_seed(&rng, cases[c].seed);
    ok &= llm_rng_uniform(&rng) == cases[c].uniform;
  }
  report(ok, "sampler rng: xoshiro128** seeded by splitmix32 gives rng.ts's numbers (seeds 0, 42, -7, 2^40 + 3, -(2^53 - 1))");
}

/* Every stage off, T = 1, no logprobs: what the checks switch on one at a time. */
static struct llm_sampler_options plain_sampling(void) {
  struct llm_sampler_options o = { 0 };
  o.temperature = 1;
  o.top_p = 1;
  o.typical_p = 1;
  o.repeat_penalty = 1;
  o.repeat_last_n = 64;
  o.seed = 1;
  o.logprobs = -1;
  for (int i = 0; i < LLM_STAGE_COUNT; i++) o.stages[i] = (enum llm_sampler_stage)i;
  o.n_stages = LLM_STAGE_COUNT;
  return o;
}

/* Whether one step draws from `expected` (id -> probability, within tol), read through its logprobs report. */
static int draws_from(struct llm_sampler_options o, const float *logits, int n, const double *expected, double tol) {
  o.logprobs = LLM_SAMPLER_MAX_LOGPROBS;
  struct llm_error err;
  struct llm_sampler *s = llm_sampler_create(&o, n, &err);
  float copy[32];
  memcpy(copy, logits, (size_t)n * sizeof *copy);
  struct llm_sampled out;
  int ok = s && llm_sampler_sample(s, copy, NULL, NULL, 0, &out, &err);
  double p[32] = { 0 };
  for (int i = 0; ok && i < out.n_top; i++) p[out.top_ids[i]] = exp(out.top_logprobs[i]);
  for (int id = 0; ok && id < n; id++) ok &= fabs(p[id] - expected[id]) <= tol;
  llm_sampler_free(s);
  return ok;
}

/* lib/sampling's hand-made cases (test/sampling.test.js): probabilities 0.5 / 0.25 / 0.125 / 0.125 out of id order. */
static void check_sampler_stages(void) {
  const float halves[4] = { (float)log(0.25), (float)log(0.125), (float)log(0.5), (float)log(0.125) };
  struct llm_sampler_options o = plain_sampling();
  int ok = 1;
  o.top_p = 0.7;
  ok &= draws_from(o, halves, 4, (const double[]){ 1.0 / 3, 0, 2.0 / 3, 0 }, 1e-6);
  o.top_p = 0.8; /* the first of the tied 0.125 tokens: the lower id */
  ok &= draws_from(o, halves, 4, (const double[]){ 0.25 / 0.875, 0.125 / 0.875, 0.5 / 0.875, 0 }, 1e-6);
  o = plain_sampling();
  o.min_p = 0.3;
  ok &= draws_from(o, halves, 4, (const double[]){ 1.0 / 3, 0, 2.0 / 3, 0 }, 1e-6);
  o = plain_sampling();
  o.typical_p = 0.5; /* closest surprisal to the entropy: id 0, then id 2 */
  ok &= draws_from(o, halves, 4, (const double[]){ 1.0 / 3, 0, 2.0 / 3, 0 }, 1e-6);
  o = plain_sampling();
  o.top_k = 2;
  ok &= draws_from(o, (const float[]){ 1, 3, 2, 0, 3 }, 5, (const double[]){ 0, 0.5, 0, 0, 0.5 }, 1e-12);
  o = plain_sampling();
  o.temperature = 2; /* probabilities ∝ √p */
  const double roots = 0.5 + sqrt(0.5) + 2 * pow(0.5, 1.5);
  ok &= draws_from(o, halves, 4, (const double[]){ 0.5 / roots, pow(0.5, 1.5) / roots, sqrt(0.5) / roots, pow(0.5, 1.5) / roots }, 1e-6);
  /* Order matters: top-k 2 first renormalises to 2/3, 1/3 and top-p 0.6 keeps one; top-p first keeps two. */
  o = plain_sampling();
  o.top_k = 2;
  o.top_p = 0.6;
  o.n_stages = 2;
  o.stages[0] = LLM_STAGE_TOP_K;
  o.stages[1] = LLM_STAGE_TOP_P;
  ok &= draws_from(o, halves, 4, (const double[]){ 0, 0, 1, 0 }, 1e-12);
  o.stages[0] = LLM_STAGE_TOP_P;
  o.stages[1] = LLM_STAGE_TOP_K;
  ok &= draws_from(o, halves, 4, (const double[]){ 1.0 / 3, 0, 2.0 / 3, 0 }, 1e-6);
  report(ok, "sampler stages on hand-made distributions: top-k, top-p, min-p, typical-p, temperature, their order");
}

static int sample_once(const struct llm_sampler_options *o, float *logits, int n, const int32_t *ranked, int n_ranked,
                       struct llm_sampled *out, struct llm_error *err) {
  struct llm_sampler *s = llm_sampler_create(o, n, err);
  int ok = s && llm_sampler_sample(s, logits, ranked, NULL, n_ranked, out, err);
  llm_sampler_free(s);
  return ok;
}

/* Greedy's tie rule with and without the forward pass's ranking, and the typed failures. */
static void check_sampler_greedy_and_errors(void) {
  struct llm_sampler_options o = plain_sampling();
  o.temperature = 0;
  struct llm_sampled out;
  struct llm_error err;
  float logits[5] = { 1, 5, 2, 5, 5 };
  int ok = sample_once(&o, logits, 5, NULL, 0, &out, &err) && out.id == 1;
  ok &= sample_once(&o, NULL, 5, (const int32_t[]){ 1, 3, 4, 2, 0 }, 5, &out, &err) && out.id == 1;
  ok &= !sample_once(&o, NULL, 5, NULL, 0, &out, &err) && err.kind == LLM_ERR_INVALID_ARGUMENT;
  /* Banning every token, or logits all NaN: nothing can be sampled, greedy or not. */
  const int32_t ids[2] = { 0, 1 };
  const double bans[2] = { -INFINITY, -INFINITY };
  o.bias_ids = ids;
  o.bias_values = bans;
  o.n_bias = 2;
  for (int greedy = 0; greedy < 2; greedy++) {
    o.temperature = greedy ? 0 : 1;
    float two[2] = { 1, 2 };
    ok &= !sample_once(&o, two, 2, NULL, 0, &out, &err) && err.kind == LLM_ERR_INVALID_ARGUMENT && strstr(err.message, "no token");
  }
  struct llm_sampler_options nan_case = plain_sampling();
  float nans[3] = { NAN, NAN, -INFINITY };
  ok &= !sample_once(&nan_case, nans, 3, NULL, 0, &out, &err) && err.kind == LLM_ERR_INVALID_ARGUMENT;
  /* Out-of-range options name themselves; a history token outside the vocabulary is refused. */
  struct llm_sampler_options bad = plain_sampling();
  bad.top_p = 0;
  ok &= !llm_sampler_create(&bad, 5, &err) && strstr(err.message, "topP") != NULL;
  bad = plain_sampling();
  bad.n_stages = 2;
  bad.stages[1] = bad.stages[0];
  ok &= !llm_sampler_create(&bad, 5, &err) && strstr(err.message, "twice") != NULL;
  bad = plain_sampling();
  bad.repeat_penalty = 2;
  struct llm_sampler *s = llm_sampler_create(&bad, 5, &err);
  ok &= s && !llm_sampler_accept(s, (const int32_t[]){ 1, 5 }, 2, &err) && strstr(err.message, "token id 5") != NULL;
  llm_sampler_free(s);
  report(ok, "sampler: greedy takes the lowest id among ties; no possible token, bad options and bad ids fail typed");
}

/* llama.cpp's penalties over the window, with the history appended in pieces longer and shorter than it. */
static void check_sampler_penalties(void) {
  const float logits[6] = { 2, -1, 0.5f, -3, 1, 0 };
  const int32_t tokens[7] = { 0, 1, 1, 3, 0, 0, 5 };
  struct llm_sampler_options o = plain_sampling();
  o.temperature = 0;
  o.repeat_penalty = 1.5;
  o.frequency_penalty = 0.25;
  o.presence_penalty = 0.5;
  int ok = 1;
  for (int window = -1; window <= 7; window += 3) { /* -1 (all), 2, 5 */
    o.repeat_last_n = window;
    struct llm_error err;
    struct llm_sampler *s = llm_sampler_create(&o, 6, &err);
    /* Ten tokens of noise first, in pieces, then the seven that matter: only the window's count. */
    for (int i = 0; i < 10 && window > 0; i++) ok &= llm_sampler_accept(s, (const int32_t[]){ 2 }, 1, &err);
    ok &= llm_sampler_accept(s, tokens, 3, &err) && llm_sampler_accept(s, tokens + 3, 4, &err);
    float adjusted[6];
    memcpy(adjusted, logits, sizeof adjusted);
    struct llm_sampled out;
    ok &= llm_sampler_sample(s, adjusted, NULL, NULL, 0, &out, &err);
    int counts[6] = { 0 };
    for (int i = window < 0 ? 0 : 7 - window; i < 7; i++) counts[tokens[i]]++;
    for (int id = 0; id < 6; id++) {
      const double l = logits[id];
      const double expected = counts[id] ? (l <= 0 ? l * 1.5 : l / 1.5) - counts[id] * 0.25 - 0.5 : l;
      ok &= adjusted[id] == (float)expected;
    }
    llm_sampler_free(s);
  }
  report(ok, "sampler penalties: repeat, frequency and presence over the last N tokens (2, 5, all)");
}

/* The draws: the same seed gives the same ones, and they follow the probabilities (Pearson's chi-square at the
 * 0.1% level with 3 degrees of freedom; the seed is fixed, so this always passes or always fails). */
static void check_sampler_draws(void) {
  const float halves[4] = { (float)log(0.25), (float)log(0.125), (float)log(0.5), (float)log(0.125) };
  const double p[4] = { 0.25, 0.125, 0.5, 0.125 };
  struct llm_sampler_options o = plain_sampling();
  struct llm_error err;
  struct llm_sampler *a = llm_sampler_create(&o, 4, &err), *b = llm_sampler_create(&o, 4, &err);
  int counts[4] = { 0 }, same = 1;
  const int draws = 20000;
  for (int i = 0; i < draws; i++) {
    float la[4], lb[4];
    memcpy(la, halves, sizeof la);
    memcpy(lb, halves, sizeof lb);
    struct llm_sampled x, y;
    same &= llm_sampler_sample(a, la, NULL, NULL, 0, &x, &err) && llm_sampler_sample(b, lb, NULL, NULL, 0, &y, &err) && x.id == y.id;
    counts[x.id]++;
  }
  double chi2 = 0;
  for (int id = 0; id < 4; id++) chi2 += (counts[id] - draws * p[id]) * (counts[id] - draws * p[id]) / (draws * p[id]);
  llm_sampler_free(a);
  llm_sampler_free(b);
  report(same && chi2 < 16.27, "sampler draws: reproducible from the seed, frequencies match (chi-square %.2f < 16.27)", chi2);
}

/* A top-k chain drawn from the forward pass's ranked ids and their logits alone (the row left on the device) gives
 * the draws, logprobs and alternatives that the whole row gives; a chain that changes logits still needs the row. */
static void check_sampler_ranked_logits(void) {
  enum { VOCAB = 300, K = 40, STEPS = 200 };
  float row[VOCAB];
  for (int i = 0; i < VOCAB; i++) row[i] = (float)sin(i * 0.37) * 4 + (float)(i % 7) * 0.01f;
  int32_t ranked[K];
  float ranked_logits[K];
  llm_top_k(row, VOCAB, K, ranked);
  for (int i = 0; i < K; i++) ranked_logits[i] = row[ranked[i]];
  struct llm_sampler_options o = plain_sampling();
  o.top_k = K;
  o.top_p = 0.9;
  o.min_p = 0.02;
  o.temperature = 0.8;
  o.logprobs = 5;
  struct llm_error err;
  struct llm_sampler *whole = llm_sampler_create(&o, VOCAB, &err), *apart = llm_sampler_create(&o, VOCAB, &err);
  int ok = whole && apart && llm_sampler_ranked_logits_suffice(apart) && llm_sampler_candidates_needed(apart) == K;
  for (int step = 0; ok && step < STEPS; step++) {
    float copy[VOCAB];
    memcpy(copy, row, sizeof copy);
    struct llm_sampled a, b;
    ok &= llm_sampler_sample(whole, copy, NULL, NULL, 0, &a, &err) && llm_sampler_sample(apart, NULL, ranked, ranked_logits, K, &b, &err);
    ok &= a.id == b.id && a.logprob == b.logprob && a.n_top == b.n_top;
    for (int i = 0; ok && i < a.n_top; i++) ok &= a.top_ids[i] == b.top_ids[i] && a.top_logprobs[i] == b.top_logprobs[i];
  }
  llm_sampler_free(whole);
  llm_sampler_free(apart);
  o.presence_penalty = 0.5; /* changes logits: the ranking no longer holds */
  struct llm_sampler *penalised = llm_sampler_create(&o, VOCAB, &err);
  struct llm_sampled out;
  ok &= penalised && !llm_sampler_ranked_logits_suffice(penalised) &&
        !llm_sampler_sample(penalised, NULL, ranked, ranked_logits, K, &out, &err) && err.kind == LLM_ERR_INVALID_ARGUMENT;
  llm_sampler_free(penalised);
  report(ok, "sampler: a top-k chain from the ranked ids and their logits alone draws as from the whole row (%d steps)", STEPS);
}

/* The pool hands out every task of a loop exactly once, in chunks inside [0, n_tasks), to workers 0..n_threads-1. */
struct task_counts {
  size_t n_tasks;
  _Atomic int *runs;
  _Atomic int out_of_range;
  int n_threads;
};
static void count_tasks(void *ctx, size_t begin, size_t end, int worker) {
  struct task_counts *counts = ctx;
  if (begin >= end || end > counts->n_tasks || worker < 0 || worker >= counts->n_threads) {
    counts->out_of_range++;
    return;
  }
  for (size_t t = begin; t < end; t++) counts->runs[t]++;
}
static void check_parallel_for(struct llm_threadpool *pool, size_t n_tasks) {
  struct task_counts counts = { n_tasks, calloc(n_tasks, sizeof(_Atomic int)), 0, llm_threadpool_size(pool) };
  for (int loop = 0; loop < 3; loop++) llm_parallel_for(pool, n_tasks, count_tasks, &counts);
  int ok = counts.out_of_range == 0;
  for (size_t t = 0; t < n_tasks; t++) ok &= counts.runs[t] == 3;
  report(ok, "parallel_for %zu tasks on %d threads: each task once per loop", n_tasks, llm_threadpool_size(pool));
  free(counts.runs);
}

/* Many short loops on more threads than this machine has cores: workers lose their CPU mid-loop and come back
 * after the loop (or several) ended, which must neither run a task twice nor touch a later loop's tasks. */
static void check_parallel_for_oversubscribed(void) {
  enum { THREADS = 8, LOOPS = 20000 };
  struct llm_threadpool *pool = llm_threadpool_create(THREADS);
  struct task_counts counts[2] = { { 0 } };
  for (int c = 0; c < 2; c++) counts[c] = (struct task_counts){ 97, calloc(97, sizeof(_Atomic int)), 0, THREADS };
  int expected[2][97] = { { 0 } }, ok = 1;
  for (int loop = 0; loop < LOOPS; loop++) {
    struct task_counts *c = &counts[loop % 2];
    size_t n_tasks = 2 + (size_t)(loop * 7919) % 96;
    c->n_tasks = n_tasks;
    llm_parallel_for(pool, n_tasks, count_tasks, c);
    for (size_t t = 0; t < n_tasks; t++) expected[loop % 2][t]++;
    /* Checked at once: every task of this loop is done when llm_parallel_for returns. */
    for (size_t t = 0; t < 97; t++) ok &= c->runs[t] == expected[loop % 2][t];
  }
  ok &= counts[0].out_of_range == 0 && counts[1].out_of_range == 0;
  report(ok, "parallel_for: %d loops of 2..97 tasks on %d threads, each task once per loop", LOOPS, THREADS);
  for (int c = 0; c < 2; c++) free(counts[c].runs);
  llm_threadpool_free(pool);
}

/* ---- The KV pool's bookkeeping, on a model that is only a shape (f32 rows of 32 values, one layer) ---- */

/* Writes what a pass would for tokens[pos, pos + n): row value 0 = the token, value 1 = its position. */
static bool kv_write(struct llm_kv_cache *cache, const int32_t *tokens, int pos, int n) {
  struct llm_error err;
  if (!llm_kv_cache_prepare(cache, pos, tokens + pos, n, &err)) return false;
  const struct llm_kv_pool_layout *l = llm_kv_pool_layout(cache->pool);
  for (int p = pos; p < pos + n; p++) {
    float row[32] = { (float)tokens[p], (float)p };
    memcpy(llm_kv_row(l, l->keys, cache, 0, p), row, sizeof row);
    memcpy(llm_kv_row(l, l->values, cache, 0, p), row, sizeof row);
  }
  llm_kv_cache_commit(cache, pos + n);
  return true;
}

/* Whether the cache's first n rows hold tokens[0, n) at their positions. */
static bool kv_holds(const struct llm_kv_cache *cache, const int32_t *tokens, int n) {
  const struct llm_kv_pool_layout *l = llm_kv_pool_layout(cache->pool);
  for (int p = 0; p < n; p++) {
    const float *k = (const float *)llm_kv_row(l, l->keys, cache, 0, p);
    const float *v = (const float *)llm_kv_row(l, l->values, cache, 0, p);
    if (k[0] != (float)tokens[p] || k[1] != (float)p || v[0] != (float)tokens[p] || cache->tokens[p] != tokens[p]) return false;
  }
  return true;
}

static bool kv_usage_adds_up(struct llm_kv_pool *pool) {
  const struct llm_kv_pool_usage u = llm_kv_pool_usage(pool);
  return u.used_blocks >= 0 && u.used_blocks + u.cached_blocks + u.free_blocks == u.total_blocks;
}

static void check_kv_pool(void) {
  struct llm_model model = { 0 };
  model.config = (struct llm_config){ .n_layers = 1, .n_heads = 1, .n_kv_heads = 1, .head_dim = 32 };
  struct llm_error err;
  enum { BLOCKS = 8, T = LLM_KV_BLOCK_TOKENS };
  int ok = llm_kv_pool_create(&model, LLM_KV_F32, BLOCKS * T - 5, &err); /* rounded up to 8 blocks */
  struct llm_kv_pool *pool = model.kv_pool;
  ok = ok && llm_kv_pool_layout(pool)->n_blocks == BLOCKS;
  int32_t a[BLOCKS * T], b[BLOCKS * T];
  for (int i = 0; i < BLOCKS * T; i++) a[i] = 1000 + i, b[i] = 5000 + i;

  /* Low block ids first; a full pool refuses the next block and changes nothing. */
  struct llm_kv_cache *first = llm_kv_cache_create(&model, BLOCKS * T, &err);
  ok &= kv_write(first, a, 0, 70) && first->blocks[0] == 0 && first->blocks[1] == 1 && first->blocks[2] == 2;
  ok &= kv_write(first, a, 70, BLOCKS * T - 70) && kv_holds(first, a, BLOCKS * T);
  struct llm_kv_cache *other = llm_kv_cache_create(&model, BLOCKS * T, &err);
  ok &= !llm_kv_cache_prepare(other, 0, b, 1, &err) && err.kind == LLM_ERR_OUT_OF_MEMORY && other->blocks[0] == -1;
  ok &= llm_kv_cache_blocks_needed(other, 0, 1) == 1 && llm_kv_cache_blocks_needed(first, 0, 40) == 0;
  report(ok, "kv pool: low block ids first; a full pool fails prepare with OUT_OF_MEMORY and changes nothing");

  /* Freed, every full block stays cached; a new sequence evicts the least recently used, which are the ends of the
   * cached prefix, so the start stays adoptable. */
  llm_kv_cache_free(first);
  struct llm_kv_pool_usage u = llm_kv_pool_usage(pool);
  ok = u.cached_blocks == BLOCKS && u.used_blocks == 0 && u.free_blocks == 0;
  ok &= kv_write(other, b, 0, 3 * T) && kv_holds(other, b, 3 * T);
  struct llm_kv_cache *again = llm_kv_cache_create(&model, BLOCKS * T, &err);
  ok &= llm_kv_cache_adopt_prefix(again, a, BLOCKS * T) == 5 * T && kv_holds(again, a, 5 * T);
  u = llm_kv_pool_usage(pool);
  ok &= u.used_blocks == 8 && u.cached_blocks == 0;
  report(ok, "kv pool: released blocks stay cached; eviction takes the ends of prefixes first; adoption finds the rest");

  /* Copy-on-write: a shared partial block is copied by whichever writes into it. */
  llm_kv_cache_free(other);
  struct llm_kv_cache *fork = llm_kv_cache_create(&model, BLOCKS * T, &err);
  llm_kv_cache_truncate(again, 2 * T + 7);
  ok = llm_kv_cache_share(fork, again, 2 * T + 7, &err) && fork->blocks[2] == again->blocks[2];
  int32_t mixed[BLOCKS * T];
  memcpy(mixed, a, sizeof mixed);
  for (int i = 2 * T + 7; i < 3 * T + 3; i++) mixed[i] = 9000 + i;
  ok &= kv_write(fork, mixed, 2 * T + 7, T - 4) && fork->blocks[2] != again->blocks[2];
  ok &= kv_holds(fork, mixed, 3 * T + 3) && kv_holds(again, a, 2 * T + 7);
  ok &= kv_write(again, a, 2 * T + 7, 1) && kv_holds(again, a, 2 * T + 8) && kv_holds(fork, mixed, 3 * T + 3);
  report(ok, "kv pool: a shared partial block is copied before either owner writes into it");
  llm_kv_cache_free(fork);
  llm_kv_cache_free(again);

  /* Many chains through a small index: sequences of 3 blocks whose first two blocks come from a few choices, written,
   * freed, adopted; whatever the evictions and index removals, an adopted block holds the ids asked for. */
  uint64_t state = 12345;
  int adopted_blocks = 0;
  ok = 1;
  for (int round = 0; round < 400 && ok; round++) {
    int32_t ids[3 * T];
    int choice[3];
    for (int k = 0; k < 3; k++) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      choice[k] = (int)(state >> 60) % (k < 2 ? 3 : 16);
    }
    for (int i = 0; i < 3 * T; i++) ids[i] = 100 * choice[i / T] + (i / T) * 10 + i % 7 + (i / T > 0 ? choice[0] : 0);
    struct llm_kv_cache *seq = llm_kv_cache_create(&model, 3 * T, &err);
    const int held = llm_kv_cache_adopt_prefix(seq, ids, 3 * T);
    adopted_blocks += held / T;
    ok &= held % T == 0 && kv_holds(seq, ids, held);
    ok &= kv_write(seq, ids, held, 3 * T - held) && kv_holds(seq, ids, 3 * T) && kv_usage_adds_up(pool);
    llm_kv_cache_free(seq);
  }
  u = llm_kv_pool_usage(pool);
  ok &= u.used_blocks == 0 && adopted_blocks > 200;
  report(ok, "kv pool: 400 sequences over shared prefixes, adopted %d blocks, each holding the ids asked for", adopted_blocks);
  llm_kv_pool_free(pool);
}

int main(void) {
  printf("kernel set: %s (the matmul checks cover every set this CPU supports)\n", llm_kernel_set_name(llm_kernel_set()));
  struct llm_threadpool *single = llm_threadpool_create(1), *pair = llm_threadpool_create(3);
  const size_t task_counts[] = { 1, 2, 3, 5, 6, 7, 64, 1001 };
  for (size_t i = 0; i < sizeof task_counts / sizeof task_counts[0]; i++) check_parallel_for(pair, task_counts[i]);
  check_parallel_for_oversubscribed();
  const int token_counts[] = { 1, 2, 3, 4, 5, 6, 7, 17 };
  /* Float types at sizes that are not multiples of the SIMD width. */
  const enum llm_type float_types[] = { LLM_F32, LLM_F16, LLM_BF16 };
  const int64_t float_shapes[][2] = { { 1, 1 }, { 5, 7 }, { 13, 40 }, { 33, 61 }, { 64, 96 }, { 7, 131 } };
  for (size_t t = 0; t < 3; t++)
    for (size_t s = 0; s < sizeof float_shapes / sizeof float_shapes[0]; s++)
      for (size_t n = 0; n < sizeof token_counts / sizeof token_counts[0]; n++)
        check_matmul(single, float_types[t], float_shapes[s][0], float_shapes[s][1], token_counts[n]);
  /* Quantized types: one block and many per row, row counts that leave partial row tiles. */
  const enum llm_type quant_types[] = { LLM_Q8_0, LLM_Q4_0, LLM_Q4_1, LLM_Q5_0, LLM_Q5_1, LLM_IQ4_NL, LLM_Q2_K, LLM_Q3_K, LLM_Q4_K, LLM_Q5_K, LLM_Q6_K, LLM_IQ4_XS };
  const size_t n_quant = sizeof quant_types / sizeof quant_types[0];
  const int64_t quant_rows[] = { 1, 5, 13, 33 };
  for (size_t t = 0; t < n_quant; t++) {
    const int64_t block = llm_type_block_size(quant_types[t]);
    const int64_t col_counts[] = { block, 3 * block, block == 32 ? 4096 : 2816 };
    for (size_t r = 0; r < sizeof quant_rows / sizeof quant_rows[0]; r++)
      for (size_t c = 0; c < 3; c++)
        for (size_t n = 0; n < sizeof token_counts / sizeof token_counts[0]; n++)
          if (c < 2 || token_counts[n] <= 3) check_matmul(single, quant_types[t], quant_rows[r], col_counts[c], token_counts[n]);
  }
  /* Threaded split, and a column count large enough to take several token passes. */
  for (size_t t = 0; t < 3; t++) {
    check_matmul(pair, float_types[t], 301, 77, 1);
    check_matmul(pair, float_types[t], 50, 9000, 40);
  }
  for (size_t t = 0; t < n_quant; t++) {
    check_matmul(pair, quant_types[t], 301, 512, 1);
    check_matmul(pair, quant_types[t], 50, 8192, 40);
  }
  const enum llm_type float_mix[3] = { LLM_F32, LLM_BF16, LLM_F16 };
  const enum llm_type quant_mix[3] = { LLM_Q4_K, LLM_Q8_0, LLM_Q6_K };
  const enum llm_type all_mix[3] = { LLM_Q4_0, LLM_F16, LLM_Q4_K };
  check_matmul_many(pair, float_mix, 45, 1);
  check_matmul_many(pair, float_mix, 45, 5);
  check_matmul_many(pair, quant_mix, 512, 1);
  check_matmul_many(pair, quant_mix, 512, 5);
  check_matmul_many(pair, all_mix, 256, 7);
  const enum llm_type k_mix[3] = { LLM_Q4_K, LLM_Q4_K, LLM_Q6_K };
  check_matmul_many(single, k_mix, 512, 9);
  check_matmul_many(pair, k_mix, 768, 17);
  const enum llm_type k5_mix[3] = { LLM_Q5_K, LLM_Q4_K, LLM_Q5_K };
  check_matmul_many(single, k5_mix, 512, 9);
  const enum llm_type k3_mix[3] = { LLM_Q3_K, LLM_Q6_K, LLM_Q2_K };
  check_matmul_many(pair, k3_mix, 768, 17);
  const enum llm_type iq4_mix[3] = { LLM_IQ4_XS, LLM_IQ4_NL, LLM_IQ4_XS };
  check_matmul_many(pair, iq4_mix, 512, 5);
  const enum llm_type b32_mix[3] = { LLM_Q4_1, LLM_Q5_0, LLM_Q5_1 };
  check_matmul_many(pair, b32_mix, 96, 7);
  check_reference_blocks();
  for (size_t t = 0; t < n_quant; t++) check_round_trip(quant_types[t], 4096);
  check_f16_conversion();
  for (size_t t = 0; t < n_quant; t++) check_embedding(quant_types[t]);
  check_rope(true);
  check_rope(false);
  check_top_k(1, 1, 0);
  check_top_k(100, 1, 0);
  check_top_k(32000, 40, 0);
  check_top_k(1000, 1000, 0);
  check_top_k(5000, 50, 3);
  check_top_k(64, 64, 2);
  check_top_k(1000, 1, 3);
  check_top_k(31, 1, 0);
  check_argmax_special();
  check_sampler_rng();
  check_sampler_stages();
  check_sampler_greedy_and_errors();
  check_sampler_ranked_logits();
  check_sampler_penalties();
  check_sampler_draws();
  check_swiglu();
  /* Head sizes of real models and odd ones (f32/f16 rows end mid-vector), positions that end mid-block. */
  const int head_dims[] = { 64, 128, 40, 36, 8, 6 };
  const enum llm_kv_type kv_types[] = { LLM_KV_F32, LLM_KV_F16, LLM_KV_Q8_0 };
  for (size_t t = 0; t < 3; t++)
    for (size_t d = 0; d < sizeof head_dims / sizeof head_dims[0]; d++) {
      if (kv_types[t] == LLM_KV_Q8_0 && head_dims[d] % 32 != 0) continue;
      check_attention(single, kv_types[t], head_dims[d], 0, 1);
      check_attention(single, kv_types[t], head_dims[d], 70, 1);
      check_attention(single, kv_types[t], head_dims[d], 31, 2);
      check_attention(pair, kv_types[t], head_dims[d], 9, 5);
      check_attention(pair, kv_types[t], head_dims[d], 60, 40);
    }
  check_activation_quantizers();
  check_kv_pool();
  /* The packed panels of the AVX-512 set (16 rows, token tiles of 8/4/2/1): one full panel, two and a partial
   * one, rows that end mid-panel across thread chunks, and float columns that end mid-vector. */
  for (size_t t = 0; t < n_quant; t++) {
    const int64_t block = llm_type_block_size(quant_types[t]);
    const int64_t extra_rows[] = { 16, 47 };
    for (size_t r = 0; r < 2; r++)
      for (size_t n = 0; n < sizeof token_counts / sizeof token_counts[0]; n++)
        check_matmul(single, quant_types[t], extra_rows[r], 5 * block, token_counts[n]);
    check_matmul(pair, quant_types[t], 77, 3 * block, 33);
  }
  for (size_t t = 0; t < n_quant; t++) {
    const int64_t block = llm_type_block_size(quant_types[t]);
    check_batch_equals_steps(single, quant_types[t], 37, 3 * block, 13);
    check_batch_equals_steps(pair, quant_types[t], 70, 2 * block, 6);
  }
  /* Repacked q4_0 / q8_0 / q4_K / q5_K / q6_K: a partial group (AVX2 halves: 5 and 11 rows), full and partial groups
   * across thread chunks, token tiles of 8/4/2/1 and their leftovers, one block, long rows, several token passes. */
  const enum llm_type repack_types[] = { LLM_Q4_0, LLM_Q8_0, LLM_Q4_K, LLM_Q5_K, LLM_Q6_K };
  for (size_t t = 0; t < sizeof repack_types / sizeof repack_types[0]; t++) {
    const int64_t block = llm_type_block_size(repack_types[t]);
    const int64_t repack_rows[] = { 5, 11, 16, 37 };
    const int repack_tokens[] = { 1, 2, 3, 5, 8, 13, 16 };
    for (size_t r = 0; r < sizeof repack_rows / sizeof repack_rows[0]; r++)
      for (size_t n = 0; n < sizeof repack_tokens / sizeof repack_tokens[0]; n++)
        check_repacked(single, repack_types[t], repack_rows[r], 3 * block, repack_tokens[n]);
    check_repacked(single, repack_types[t], 16, block, 3);
    check_repacked(pair, repack_types[t], 301, block == 32 ? 4096 : 2816, 1);
    check_repacked(pair, repack_types[t], 77, 2048, 33);
    check_repacked(pair, repack_types[t], 50, 8192, 40); /* token passes of 24 (the activations kept in L2) */
  }
  /* Float small batches (2..8 tokens: several sequences decoding together) run their own kernels. */
  for (size_t t = 0; t < 3; t++) {
    const int small_batches[] = { 2, 3, 4, 5, 8 };
    for (size_t n = 0; n < sizeof small_batches / sizeof small_batches[0]; n++)
      check_batch_equals_steps(single, float_types[t], 37, 75, small_batches[n]);
    check_batch_equals_steps(single, float_types[t], 37, 75, 13);
    check_batch_equals_steps(pair, float_types[t], 70, 64, 6);
  }
  /* Float prompts (the panel path, tiles of 6 tokens and 16 rows of 4-column groups): token counts around the
   * tile, rows that end mid-panel and mid-group, no full column group, a partial 16-column block, leftovers. */
  for (size_t t = 0; t < 3; t++) {
    const int64_t panel_cols[] = { 3, 20, 77 };
    const int prompt_tokens[] = { 9, 11, 12, 16, 17 };
    for (size_t c = 0; c < sizeof panel_cols / sizeof panel_cols[0]; c++)
      for (size_t n = 0; n < sizeof prompt_tokens / sizeof prompt_tokens[0]; n++)
        check_batch_equals_steps(single, float_types[t], 37, panel_cols[c], prompt_tokens[n]);
  }
  for (size_t t = 0; t < 3; t++) {
    check_matmul(single, float_types[t], 21, 3, 11);
    check_matmul(single, float_types[t], 37, 20, 12);
    check_matmul(single, float_types[t], 47, 16, 9);
    check_matmul(single, float_types[t], 17, 33, 15);
    check_matmul(pair, float_types[t], 77, 70, 33);
  }
  llm_threadpool_free(single);
  llm_threadpool_free(pair);
  if (failures) printf("%d check(s) failed, %d passed\n", failures, passes);
  else printf("all checks passed (%d)\n", passes);
  return failures ? 1 : 0;
}
