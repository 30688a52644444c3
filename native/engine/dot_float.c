/* Dot-product tiles for f32, f16 and bf16 weights against f32 activations. */
#include "dot.h"
#include "simd_avx2.h"

/* Row-at-a-time reference: float accumulation in column order. */
static inline float dot_float_row(enum llm_type type, int64_t cols, const void *w, const float *x) {
  float sum = 0.0f;
  for (int64_t c = 0; c < cols; c++) sum += llm_tensor_get(w, type, c) * x[c];
  return sum;
}
static float dot_f32_row(int64_t cols, const void *w, const void *x) { return dot_float_row(LLM_F32, cols, w, x); }
static float dot_f16_row(int64_t cols, const void *w, const void *x) { return dot_float_row(LLM_F16, cols, w, x); }
static float dot_bf16_row(int64_t cols, const void *w, const void *x) { return dot_float_row(LLM_BF16, cols, w, x); }
LLM_DEFINE_SCALAR_TILE(tile_f32_scalar, dot_f32_row)
LLM_DEFINE_SCALAR_TILE(tile_f16_scalar, dot_f16_row)
LLM_DEFINE_SCALAR_TILE(tile_bf16_scalar, dot_bf16_row)
const struct llm_dot_kernel llm_dot_f32_scalar = { LLM_ACTIVATION_F32, 1, 1, tile_f32_scalar };
const struct llm_dot_kernel llm_dot_f16_scalar = { LLM_ACTIVATION_F32, 1, 1, tile_f16_scalar };
const struct llm_dot_kernel llm_dot_bf16_scalar = { LLM_ACTIVATION_F32, 1, 1, tile_bf16_scalar };

#if LLM_HAVE_AVX2_KERNELS

/* How far ahead of the loads the decode tile prefetches weights. */
#define PREFETCH_BYTES 1024

/* 8 consecutive weights from element i, widened to f32. */
LLM_AVX2_INLINE __m256 load8(const void *data, int64_t i, enum llm_type type) {
  switch (type) {
  case LLM_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)data + i)));
  case LLM_BF16: {
    __m256i widened = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)data + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(widened, 16));
  }
  default: return _mm256_loadu_ps((const float *)data + i);
  }
}

/* ROWS x TOKENS dot products sharing each weight and activation load: 4 rows x 3 tokens = 12 accumulators + 4
 * weight registers = all 16 ymm. */
LLM_AVX2_INLINE void tile_float(enum llm_type type, int64_t cols, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  const int64_t elem_size = type == LLM_F32 ? 4 : 2;
  __m256 acc[4][3];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) acc[i][j] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    __m256 wv[4];
    for (int i = 0; i < ROWS; i++) wv[i] = load8((const char *)w + i * w_stride, c, type);
    if (TOKENS == 1 && ((c * elem_size) & 63) == 0) {
      /* Decode is bound by memory: pull each row's next cache lines early (4 interleaved streams are more
       * than the hardware prefetchers keep ahead of on their own). */
      for (int i = 0; i < ROWS; i++)
        _mm_prefetch((const char *)w + i * w_stride + c * elem_size + PREFETCH_BYTES, _MM_HINT_T0);
    }
    for (int j = 0; j < TOKENS; j++) {
      __m256 xv = _mm256_loadu_ps((const float *)((const char *)x + j * x_stride) + c);
      for (int i = 0; i < ROWS; i++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  for (int i = 0; i < ROWS; i++) {
    for (int j = 0; j < TOKENS; j++) {
      const void *wr = (const char *)w + i * w_stride;
      const float *xr = (const float *)((const char *)x + j * x_stride);
      float sum = llm_hsum_ps(acc[i][j]);
      for (int64_t cc = c; cc < cols; cc++) sum += llm_tensor_get(wr, type, cc) * xr[cc];
      out[j * out_stride + i] = sum;
    }
  }
}

#define TILE_F32(...) tile_float(LLM_F32, __VA_ARGS__)
#define TILE_F16(...) tile_float(LLM_F16, __VA_ARGS__)
#define TILE_BF16(...) tile_float(LLM_BF16, __VA_ARGS__)
LLM_DEFINE_AVX2_TILE(tile_f32_avx2, TILE_F32, 4, 3)
LLM_DEFINE_AVX2_TILE(tile_f16_avx2, TILE_F16, 4, 3)
LLM_DEFINE_AVX2_TILE(tile_bf16_avx2, TILE_BF16, 4, 3)
const struct llm_dot_kernel llm_dot_f32_avx2 = { LLM_ACTIVATION_F32, 4, 3, tile_f32_avx2 };
const struct llm_dot_kernel llm_dot_f16_avx2 = { LLM_ACTIVATION_F32, 4, 3, tile_f16_avx2 };
const struct llm_dot_kernel llm_dot_bf16_avx2 = { LLM_ACTIVATION_F32, 4, 3, tile_bf16_avx2 };

#endif
