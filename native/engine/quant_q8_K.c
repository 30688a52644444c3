/* q8_K: the activation format of the K-quant dot products, 256 int8 values per block with an f32 scale and the
 * sums of each 16 values (292 bytes per block). Never stored in model files. */
#include <math.h>

#include "dot.h"
#include "quant.h"

_Static_assert(sizeof(struct llm_block_q8_K) == 292, "q8_K block is 292 bytes per 256 values");

/* As ggml: the value of largest magnitude maps to -127 (so its sign decides d's), rounding half to even. */
void llm_quantize_row_q8_K(const float *x, void *out, int64_t n) {
  struct llm_block_q8_K *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < LLM_QK_K; j++) {
      if (amax < fabsf(x[j])) {
        amax = fabsf(x[j]);
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      memset(&y[b], 0, sizeof y[b]);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < LLM_QK_K; j++) {
      int q = llm_nearest_int(iscale * x[j]);
      y[b].qs[j] = (int8_t)(q < 127 ? q : 127);
    }
    for (int g = 0; g < LLM_QK_K / 16; g++) {
      int sum = 0;
      for (int j = 0; j < 16; j++) sum += y[b].qs[16 * g + j];
      y[b].bsums[g] = (int16_t)sum;
    }
    y[b].d = 1.0f / iscale;
  }
}

void llm_dequantize_row_q8_K(const void *in, float *y, int64_t n) {
  const struct llm_block_q8_K *x = in;
  for (int64_t b = 0; b < n / LLM_QK_K; b++)
    for (int j = 0; j < LLM_QK_K; j++) *y++ = x[b].d * (float)x[b].qs[j];
}

#if LLM_HAVE_AVX512_KERNELS
#include "simd_avx512.h"

/* llm_quantize_row_q8_K to the bit: the same max search (first value of largest magnitude), the same f32 product
 * iscale * x, rounded half to even by the conversion (the default MXCSR mode, as llm_nearest_int for these
 * magnitudes). */
LLM_TARGET_AVX512 void llm_quantize_row_q8_K_avx512(const float *x, void *out, int64_t n) {
  struct llm_block_q8_K *y = out;
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    __m512 amax_v = _mm512_setzero_ps();
    for (int k = 0; k < 16; k++) amax_v = _mm512_max_ps(amax_v, _mm512_and_ps(_mm512_loadu_ps(x + 16 * k), abs_mask));
    const float amax = _mm512_reduce_max_ps(amax_v);
    if (amax == 0.0f) {
      memset(&y[b], 0, sizeof y[b]);
      continue;
    }
    float max = 0.0f;
    for (int k = 0; k < 16; k++) {
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_and_ps(_mm512_loadu_ps(x + 16 * k), abs_mask), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit) {
        max = x[16 * k + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    for (int k = 0; k < 16; k++) {
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_set1_ps(iscale), _mm512_loadu_ps(x + 16 * k)));
      q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
      _mm_storeu_si128((__m128i *)(y[b].qs + 16 * k), _mm512_cvtepi32_epi8(q));
      y[b].bsums[k] = (int16_t)_mm512_reduce_add_epi32(q);
    }
    y[b].d = 1.0f / iscale;
  }
}
#endif
