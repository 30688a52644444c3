/* q8_0: blocks of 32 values, value i = d * qs[i] with d an IEEE half (34 bytes per block). Weights in this
 * format are multiplied with activations in the same format. */
#include <math.h>

#include "dot.h"
#include "quant.h"
#include "simd_avx2.h"

_Static_assert(sizeof(struct llm_block_q8_0) == 34, "q8_0 block is 34 bytes per 32 values");

/* ggml's quantize_row_q8_0_ref to the bit: d = amax / 127 stored as a half (round to nearest even), values
 * scaled by 1/d computed from the unrounded d, then roundf (ties away from zero). */
void llm_quantize_row_q8_0_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q8_0 *y = out;
  for (int64_t b = 0; b < n / LLM_QK8_0; b++, x += LLM_QK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < LLM_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = llm_f32_to_f16(d);
    for (int j = 0; j < LLM_QK8_0; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
  }
}

void llm_dequantize_row_q8_0(const void *in, float *y, int64_t n) {
  const struct llm_block_q8_0 *x = in;
  for (int64_t b = 0; b < n / LLM_QK8_0; b++) {
    const float d = llm_f16_to_f32(x[b].d);
    for (int j = 0; j < LLM_QK8_0; j++) *y++ = d * (float)x[b].qs[j];
  }
}

/* The integer dot product of each block, scaled by both block scales, summed in block order. */
static float dot_q8_0_q8_0(int64_t cols, const void *w_row, const void *x_row) {
  const struct llm_block_q8_0 *w = w_row, *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    int32_t sumi = 0;
    for (int j = 0; j < LLM_QK8_0; j++) sumi += (int32_t)w[b].qs[j] * x[b].qs[j];
    sum += (float)sumi * (llm_f16_to_f32(w[b].d) * llm_f16_to_f32(x[b].d));
  }
  return sum;
}

LLM_DEFINE_SCALAR_TILE(tile_q8_0_scalar, dot_q8_0_q8_0)
const struct llm_dot_kernel llm_dot_q8_0_scalar = { LLM_ACTIVATION_Q8_0, 1, 1, tile_q8_0_scalar };

#if LLM_HAVE_AVX2_KERNELS

/* Blocks ahead that the decode tile prefetches: ~1 KiB per row, more than the hardware prefetchers keep ahead
 * of with 4 interleaved streams. */
#define PREFETCH_BLOCKS 32

/* Up to 4 rows x TOKENS tokens; each token's 4 row sums are folded into one vector per block (simd_avx2.h). */
LLM_AVX2_INLINE void tile_q8_0_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  __m256 acc[4];
  for (int j = 0; j < TOKENS; j++) acc[j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    __m256i wq[4];
    uint16_t wd[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < ROWS; i++) {
      const struct llm_block_q8_0 *wb = (const struct llm_block_q8_0 *)((const char *)w + i * w_stride) + b;
      if (TOKENS == 1) _mm_prefetch((const char *)(wb + PREFETCH_BLOCKS), _MM_HINT_T0);
      wq[i] = _mm256_loadu_si256((const __m256i *)wb->qs);
      wd[i] = wb->d;
    }
    const __m256 row_scales = llm_halves_4_rows(wd[0], wd[1], wd[2], wd[3]);
    for (int j = 0; j < TOKENS; j++) {
      const struct llm_block_q8_0 *xb = (const struct llm_block_q8_0 *)((const char *)x + j * x_stride) + b;
      const __m256i xq = _mm256_loadu_si256((const __m256i *)xb->qs);
      __m256i sums[4];
      for (int i = 0; i < 4; i++) sums[i] = i < ROWS ? llm_dot_i8(wq[i], xq) : _mm256_setzero_si256();
      const __m256i folded = llm_fold_4_rows(sums[0], sums[1], sums[2], sums[3]);
      const __m256 scales = _mm256_mul_ps(row_scales, _mm256_set1_ps(llm_half_to_float(xb->d)));
      acc[j] = _mm256_fmadd_ps(scales, _mm256_cvtepi32_ps(folded), acc[j]);
    }
  }
  for (int j = 0; j < TOKENS; j++) {
    float lanes[8];
    _mm256_storeu_ps(lanes, acc[j]);
    for (int i = 0; i < ROWS; i++) out[j * out_stride + i] = lanes[i] + lanes[i + 4];
  }
}

LLM_DEFINE_AVX2_TILE(tile_q8_0_avx2_dispatch, tile_q8_0_avx2, 4, 4)
const struct llm_dot_kernel llm_dot_q8_0_avx2 = { LLM_ACTIVATION_Q8_0, 4, 4, tile_q8_0_avx2_dispatch };

#endif
