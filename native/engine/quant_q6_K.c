/* q6_K: super-blocks of 256 values in 16 groups of 16, value = d * scale_g * (q - 32) with 6-bit q and int8
 * scale_g (210 bytes per block; the layout is described in quant_k16.h). Multiplied with q8_K activations through
 * the kernels shared with q3_K (quant_k16.h). */
#include <math.h>

#include "quant.h"
#include "quant_k16.h"

/* ggml's make_qx_quants with rmse_type 1: symmetric quantization to [-nmax, nmax - 1] with weights x^2, trying
 * 18 scales around max / -nmax and keeping the one that maximises (sum w x l)^2 / sum w l^2 (least weighted
 * squared error). L receives l + nmax. Returns the scale. */
static float fit_scale(int n, int nmax, const float *x, int8_t *L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; i++) {
    if (fabsf(x[i]) > amax) {
      amax = fabsf(x[i]);
      max = x[i];
    }
  }
  if (amax < LLM_GROUP_MAX_EPS) {
    memset(L, 0, (size_t)n);
    return 0.0f;
  }
  float iscale = -nmax / max, sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    int l = llm_nearest_int(iscale * x[i]);
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    L[i] = (int8_t)(l + nmax);
    float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
  for (int step = -9; step <= 9; step++) {
    if (step == 0) continue;
    iscale = -(nmax + 0.1f * step) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; i++) {
      int l = llm_nearest_int(iscale * x[i]);
      l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
      float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; i++) {
        int l = llm_nearest_int(iscale * x[i]);
        L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/* ggml's quantize_row_q6_K_ref: fit each group, quantize the 16 scales to int8 against the largest (which maps
 * to -128), then requantize the values with the rounded scales. */
void llm_quantize_row_q6_K_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q6_K *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    int8_t L[LLM_QK_K];
    float scales[16], max_scale = 0, max_abs_scale = 0;
    for (int g = 0; g < 16; g++) {
      scales[g] = fit_scale(16, 32, x + 16 * g, L + 16 * g);
      if (fabsf(scales[g]) > max_abs_scale) {
        max_abs_scale = fabsf(scales[g]);
        max_scale = scales[g];
      }
    }
    if (max_abs_scale < LLM_GROUP_MAX_EPS) {
      memset(&y[b], 0, sizeof y[b]);
      continue;
    }
    const float iscale = -128.0f / max_scale;
    y[b].d = llm_f32_to_f16(1 / iscale);
    for (int g = 0; g < 16; g++) {
      int s = llm_nearest_int(iscale * scales[g]);
      y[b].scales[g] = (int8_t)(s < 127 ? s : 127);
    }
    for (int g = 0; g < 16; g++) {
      const float d = llm_f16_to_f32(y[b].d) * y[b].scales[g];
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; l++) {
        int q = llm_nearest_int(x[16 * g + l] / d);
        L[16 * g + l] = (int8_t)((q < -32 ? -32 : q > 31 ? 31 : q) + 32);
      }
    }
    for (int half = 0; half < 2; half++) {
      uint8_t *ql = y[b].ql + 64 * half, *qh = y[b].qh + 32 * half;
      const int8_t *Lh = L + 128 * half;
      for (int l = 0; l < 32; l++) {
        ql[l] = (uint8_t)((Lh[l] & 0x0f) | (Lh[l + 64] & 0x0f) << 4);
        ql[l + 32] = (uint8_t)((Lh[l + 32] & 0x0f) | (Lh[l + 96] & 0x0f) << 4);
        qh[l] = (uint8_t)((Lh[l] >> 4) | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
      }
    }
  }
}

void llm_dequantize_row_q6_K(const void *in, float *y, int64_t n) { k16_dequantize_row(in, y, n, K16_Q6_K); }

static float dot_q6_K_q8_K(int64_t cols, const void *w_row, const void *x_row) { return k16_dot_q8_K(cols, w_row, x_row, K16_Q6_K); }

LLM_DEFINE_SCALAR_TILE(tile_q6_K_scalar, dot_q6_K_q8_K)
const struct llm_dot_kernel llm_dot_q6_K_scalar = { LLM_ACTIVATION_Q8_K, 1, 1, tile_q6_K_scalar };

#if LLM_HAVE_AVX2_KERNELS

LLM_AVX2_INLINE void tile_q6_K_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  k16_tile_avx2(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, K16_Q6_K);
}

LLM_DEFINE_AVX2_TILE(tile_q6_K_avx2_dispatch, tile_q6_K_avx2, 2, 2)
const struct llm_dot_kernel llm_dot_q6_K_avx2 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_q6_K_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

LLM_TARGET_AVX512 static void pack_q6_K(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  k16_pack(cols, w, w_stride, n_rows, panel, K16_Q6_K);
}

LLM_TARGET_AVX512 static void gemm_q6_K(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                        int64_t out_stride, int n_rows, int n_tokens) {
  k16_gemm(cols, panel, x, x_stride, out, out_stride, n_rows, n_tokens);
}

LLM_AVX512_INLINE void rows_q6_K_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out, const int ROWS) {
  k16_rows_avx512(cols, w, w_stride, x, out, ROWS, K16_Q6_K);
}

LLM_DEFINE_AVX512_DECODE_TILE(tile_q6_K_avx512, rows_q6_K_avx512)

const struct llm_dot_kernel llm_dot_q6_K_avx512 = {
  LLM_ACTIVATION_Q8_K, 4, 1, tile_q6_K_avx512, LLM_ACTIVATION_Q8_K_PANEL, LLM_PANEL_ROWS, 4,
  k16_panel_bytes, pack_q6_K, gemm_q6_K,
};

#endif
