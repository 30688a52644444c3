/* q3_K: super-blocks of 256 values in 16 groups of 16, value = d * scale_g * (q - 4) with 3-bit q and 6-bit
 * signed scale_g (110 bytes per block; the layout is described in quant_k16.h). Multiplied with q8_K activations
 * through the kernels shared with q6_K (quant_k16.h). */
#include <math.h>

#include "quant.h"
#include "quant_k16.h"

/* ggml's make_q3_quants with do_rmse: symmetric levels -nmax .. nmax - 1 from max / -nmax, then up to 5 passes
 * that move single values to the level that raises (sum w x l)^2 / sum w l^2 (weights x^2). L receives l + nmax,
 * except for an all-zero group (L all 0). Returns the scale sum w x l / sum w l^2. */
static float fit_scale(int n, int nmax, const float *x, int8_t *L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; i++) {
    const float ax = fabsf(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < LLM_GROUP_MAX_EPS) {
    memset(L, 0, (size_t)n);
    return 0.0f;
  }
  const float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    int l = llm_nearest_int(iscale * x[i]);
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    L[i] = (int8_t)l;
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int pass = 0; pass < 5; pass++) {
    int changed = 0;
    for (int i = 0; i < n; i++) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (!(slx > 0)) continue;
      float sl2 = suml2 - w * L[i] * L[i];
      int l = llm_nearest_int(x[i] * sl2 / slx);
      l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
      if (l == L[i]) continue;
      slx += w * x[i] * l;
      sl2 += w * l * l;
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = (int8_t)l;
        sumlx = slx;
        suml2 = sl2;
        changed++;
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ggml's quantize_row_q3_K_ref: fit each group, quantize the 16 scales to 6 bits against the largest (which maps
 * to -32), then requantize the values with the rounded scales. */
void llm_quantize_row_q3_K_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q3_K *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    int8_t L[LLM_QK_K];
    float scales[16], max_scale = 0, amax = 0;
    for (int g = 0; g < 16; g++) {
      scales[g] = fit_scale(16, 4, x + 16 * g, L + 16 * g);
      if (fabsf(scales[g]) > amax) {
        amax = fabsf(scales[g]);
        max_scale = scales[g];
      }
    }
    memset(y[b].scales, 0, sizeof y[b].scales);
    if (max_scale != 0.0f) {
      const float iscale = -32.0f / max_scale;
      for (int g = 0; g < 16; g++) {
        int l = llm_nearest_int(iscale * scales[g]);
        l = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
        y[b].scales[g % 8] |= (uint8_t)((l & 0x0f) << (g < 8 ? 0 : 4));
        y[b].scales[8 + g % 4] |= (uint8_t)((l >> 4) << (2 * (g / 4)));
      }
      y[b].d = llm_f32_to_f16(1 / iscale);
    } else {
      y[b].d = llm_f32_to_f16(0.0f);
    }
    uint8_t stored[16];
    unpack_q3_K_scales(y[b].scales, stored);
    for (int g = 0; g < 16; g++) {
      const float d = llm_f16_to_f32(y[b].d) * (stored[g] - 32);
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; l++) {
        const int q = llm_nearest_int(x[16 * g + l] / d);
        L[16 * g + l] = (int8_t)((q < -4 ? -4 : q > 3 ? 3 : q) + 4);
      }
    }
    memset(y[b].hmask, 0, sizeof y[b].hmask);
    memset(y[b].qs, 0, sizeof y[b].qs);
    for (int v = 0; v < LLM_QK_K; v++) {
      y[b].hmask[v % 32] |= (uint8_t)((L[v] >> 2) << (v / 32));
      y[b].qs[32 * (v / 128) + v % 32] |= (uint8_t)((L[v] & 3) << (2 * ((v % 128) / 32)));
    }
  }
}

void llm_dequantize_row_q3_K(const void *in, float *y, int64_t n) { k16_dequantize_row(in, y, n, K16_Q3_K); }

static float dot_q3_K_q8_K(int64_t cols, const void *w_row, const void *x_row) { return k16_dot_q8_K(cols, w_row, x_row, K16_Q3_K); }

LLM_DEFINE_SCALAR_TILE(tile_q3_K_scalar, dot_q3_K_q8_K)
const struct llm_dot_kernel llm_dot_q3_K_scalar = { LLM_ACTIVATION_Q8_K, 1, 1, tile_q3_K_scalar };

#if LLM_HAVE_AVX2_KERNELS

LLM_AVX2_INLINE void tile_q3_K_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  k16_tile_avx2(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, K16_Q3_K);
}

LLM_DEFINE_AVX2_TILE(tile_q3_K_avx2_dispatch, tile_q3_K_avx2, 2, 2)
const struct llm_dot_kernel llm_dot_q3_K_avx2 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_q3_K_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

LLM_TARGET_AVX512 static void pack_q3_K(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  k16_pack(cols, w, w_stride, n_rows, panel, K16_Q3_K);
}

LLM_TARGET_AVX512 static void gemm_q3_K(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                        int64_t out_stride, int n_rows, int n_tokens) {
  k16_gemm(cols, panel, x, x_stride, out, out_stride, n_rows, n_tokens);
}

LLM_AVX512_INLINE void rows_q3_K_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out, const int ROWS) {
  k16_rows_avx512(cols, w, w_stride, x, out, ROWS, K16_Q3_K);
}

LLM_DEFINE_AVX512_DECODE_TILE(tile_q3_K_avx512, rows_q3_K_avx512)

const struct llm_dot_kernel llm_dot_q3_K_avx512 = {
  LLM_ACTIVATION_Q8_K, 4, 1, tile_q3_K_avx512, LLM_ACTIVATION_Q8_K_PANEL, LLM_PANEL_ROWS, 4,
  k16_panel_bytes, pack_q3_K, gemm_q3_K,
};

#endif
