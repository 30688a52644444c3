/* iq4_xs: super-blocks of 256 values in 8 sub-blocks of 32, value = d * (scale_s - 32) * llm_iq4nl_values[q] with
 * a 6-bit scale_s per sub-block and iq4_nl's 4-bit indices (136 bytes per block). Multiplied with q8_K
 * activations: per sub-block the signed byte products as q8_0's, scaled by the integer scale_s - 32. The AVX-512
 * set runs the AVX2 tile. */
#include <math.h>

#include "quant.h"
#include "quant_i8.h"

/* ggml's quantize_iq4_xs (what llama-quantize runs): iq4_nl's fit of each sub-block, the 8 scales to 6 bits
 * against the largest (which maps to -32), then each value's nearest level under its rounded scale. */
void llm_quantize_row_iq4_xs_ref(const float *x, void *out, int64_t n) {
  struct llm_block_iq4_xs *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    float scales[8], max_scale = 0, amax_scale = 0;
    for (int s = 0; s < 8; s++) {
      scales[s] = llm_iq4_fit_block(x + 32 * s);
      if (fabsf(scales[s]) > amax_scale) {
        amax_scale = fabsf(scales[s]);
        max_scale = scales[s];
      }
    }
    const float d = -max_scale / 32;
    y[b].d = llm_f32_to_f16(d);
    y[b].scales_h = 0;
    memset(y[b].scales_l, 0, sizeof y[b].scales_l);
    const float id = d != 0.0f ? 1 / d : 0.0f;
    for (int s = 0; s < 8; s++) {
      int l = llm_nearest_int(id * scales[s]);
      l = l < -32 ? -32 : l > 31 ? 31 : l;
      const float dl = d * l, idl = dl != 0.0f ? 1 / dl : 0.0f;
      const float *xs = x + 32 * s;
      for (int j = 0; j < 16; j++)
        y[b].qs[16 * s + j] = (uint8_t)(llm_iq4_nearest(idl * xs[j]) | llm_iq4_nearest(idl * xs[j + 16]) << 4);
      l += 32;
      y[b].scales_l[s / 2] |= (uint8_t)((l & 0x0f) << (4 * (s % 2)));
      y[b].scales_h |= (uint16_t)((l >> 4) << (2 * s));
    }
  }
}

void llm_dequantize_row_iq4_xs(const void *in, float *y, int64_t n) {
  const struct llm_block_iq4_xs *x = in;
  for (int64_t b = 0; b < n / LLM_QK_K; b++) {
    const float d = llm_f16_to_f32(x[b].d);
    for (int s = 0; s < 8; s++) {
      const float dl = d * llm_iq4_xs_scale(&x[b], s);
      for (int j = 0; j < 32; j++) {
        const uint8_t byte = x[b].qs[16 * s + j % 16];
        *y++ = dl * llm_iq4nl_values[j < 16 ? byte & 0x0f : byte >> 4];
      }
    }
  }
}

static float dot_iq4_xs_q8_K(int64_t cols, const void *w_row, const void *x_row) {
  const struct llm_block_iq4_xs *w = w_row;
  const struct llm_block_q8_K *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    int32_t sumi = 0;
    for (int s = 0; s < 8; s++) {
      int32_t sub = 0;
      for (int j = 0; j < 32; j++) {
        const uint8_t byte = w[b].qs[16 * s + j % 16];
        sub += llm_iq4nl_values[j < 16 ? byte & 0x0f : byte >> 4] * x[b].qs[32 * s + j];
      }
      sumi += llm_iq4_xs_scale(&w[b], s) * sub;
    }
    sum += llm_f16_to_f32(w[b].d) * x[b].d * (float)sumi;
  }
  return sum;
}

LLM_DEFINE_SCALAR_TILE(tile_iq4_xs_scalar, dot_iq4_xs_q8_K)
const struct llm_dot_kernel llm_dot_iq4_xs_scalar = { LLM_ACTIVATION_Q8_K, 1, 1, tile_iq4_xs_scalar };

#if LLM_HAVE_AVX2_KERNELS

#define PREFETCH_BYTES 1088 /* 8 blocks, ~1 KiB ahead per row */

/* Per row and sub-block: the 32 looked-up values, multiplied with each token's activations as q8_0's signed
 * bytes are (|w| against the activations carrying w's sign), the int16 pair sums scaled by madd with scale_s - 32. */
LLM_AVX2_INLINE void tile_iq4_xs_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                      float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  __m256 acc[4][4];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) acc[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    __m256i sumi[4][4];
    float wd[4];
    for (int i = 0; i < ROWS; i++) {
      const struct llm_block_iq4_xs *wb = (const struct llm_block_iq4_xs *)((const char *)w + i * w_stride) + b;
      if (TOKENS == 1)
        for (int line = 0; line < 3; line++) _mm_prefetch((const char *)wb + PREFETCH_BYTES + 64 * line, _MM_HINT_T0);
      wd[i] = llm_half_to_float(wb->d);
      for (int j = 0; j < TOKENS; j++) sumi[i][j] = _mm256_setzero_si256();
      for (int s = 0; s < 8; s++) {
        const __m256i values = iq4_values_avx2(wb->qs + 16 * s);
        const __m256i magnitudes = _mm256_sign_epi8(values, values);
        const __m256i scale = _mm256_set1_epi16((short)llm_iq4_xs_scale(wb, s));
        for (int j = 0; j < TOKENS; j++) {
          const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b;
          const __m256i y = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xb->qs + 32 * s)), values);
          sumi[i][j] = _mm256_add_epi32(sumi[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitudes, y), scale));
        }
      }
    }
    for (int j = 0; j < TOKENS; j++) {
      const float xd = ((const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b)->d;
      for (int i = 0; i < ROWS; i++)
        acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(wd[i] * xd), _mm256_cvtepi32_ps(sumi[i][j]), acc[i][j]);
    }
  }
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) out[j * out_stride + i] = llm_hsum_ps(acc[i][j]);
}

LLM_DEFINE_AVX2_TILE(tile_iq4_xs_avx2_dispatch, tile_iq4_xs_avx2, 2, 2)
const struct llm_dot_kernel llm_dot_iq4_xs_avx2 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_iq4_xs_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS
const struct llm_dot_kernel llm_dot_iq4_xs_avx512 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_iq4_xs_avx2_dispatch };
#endif
