/* q2_K: super-blocks of 256 values in 16 groups of 16, value = d * scale_g * q - dmin * min_g with 2-bit q and
 * 4-bit scale_g / min_g (84 bytes per block; the layout is described in quant_k16.h). Multiplied with q8_K
 * activations through the kernels shared with q6_K and q3_K (quant_k16.h); the AVX-512 set runs the AVX2 tile. */
#include <math.h>

#include "quant.h"
#include "quant_k16.h"

/* ggml's quantize_row_q2_K_ref: fit scale and min of each group (make_qkx2_quants with weights |x|, absolute
 * error, rmin -0.5, 15 steps), quantize the 16 scales and the 16 mins to 4 bits against their largest, then
 * requantize the values with the rounded ones. */
void llm_quantize_row_q2_K_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q2_K *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    uint8_t L[LLM_QK_K];
    float weights[16], scales[16], mins[16], max_scale = 0, max_min = 0;
    for (int g = 0; g < 16; g++) {
      for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * g + l]);
      scales[g] = llm_fit_scale_min(16, 3, x + 16 * g, weights, L + 16 * g, &mins[g], -0.5f, 0.1f, 15, true);
      if (scales[g] > max_scale) max_scale = scales[g];
      if (mins[g] > max_min) max_min = mins[g];
    }
    memset(y[b].scales, 0, sizeof y[b].scales);
    y[b].d = llm_f32_to_f16(0.0f);
    y[b].dmin = llm_f32_to_f16(0.0f);
    if (max_scale > 0) {
      const float iscale = 15.0f / max_scale;
      for (int g = 0; g < 16; g++) y[b].scales[g] = (uint8_t)llm_nearest_int(iscale * scales[g]);
      y[b].d = llm_f32_to_f16(max_scale / 15.0f);
    }
    if (max_min > 0) {
      const float iscale = 15.0f / max_min;
      for (int g = 0; g < 16; g++) y[b].scales[g] |= (uint8_t)(llm_nearest_int(iscale * mins[g]) << 4);
      y[b].dmin = llm_f32_to_f16(max_min / 15.0f);
    }
    for (int g = 0; g < 16; g++) {
      const float d = llm_f16_to_f32(y[b].d) * (y[b].scales[g] & 0x0f);
      if (d == 0.0f) continue;
      const float dm = llm_f16_to_f32(y[b].dmin) * (y[b].scales[g] >> 4);
      for (int l = 0; l < 16; l++) {
        const int q = llm_nearest_int((x[16 * g + l] + dm) / d);
        L[16 * g + l] = (uint8_t)(q < 0 ? 0 : q > 3 ? 3 : q);
      }
    }
    memset(y[b].qs, 0, sizeof y[b].qs);
    for (int v = 0; v < LLM_QK_K; v++) y[b].qs[32 * (v / 128) + v % 32] |= (uint8_t)(L[v] << (2 * ((v % 128) / 32)));
  }
}

void llm_dequantize_row_q2_K(const void *in, float *y, int64_t n) { k16_dequantize_row(in, y, n, K16_Q2_K); }

static float dot_q2_K_q8_K(int64_t cols, const void *w_row, const void *x_row) { return k16_dot_q8_K(cols, w_row, x_row, K16_Q2_K); }

LLM_DEFINE_SCALAR_TILE(tile_q2_K_scalar, dot_q2_K_q8_K)
const struct llm_dot_kernel llm_dot_q2_K_scalar = { LLM_ACTIVATION_Q8_K, 1, 1, tile_q2_K_scalar };

#if LLM_HAVE_AVX2_KERNELS

LLM_AVX2_INLINE void tile_q2_K_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  k16_tile_avx2(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, K16_Q2_K);
}

LLM_DEFINE_AVX2_TILE(tile_q2_K_avx2_dispatch, tile_q2_K_avx2, 2, 2)
const struct llm_dot_kernel llm_dot_q2_K_avx2 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_q2_K_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS
const struct llm_dot_kernel llm_dot_q2_K_avx512 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_q2_K_avx2_dispatch };
#endif
