/* q4_K: super-blocks of 256 values in 8 sub-blocks of 32, value = d * scale_s * q - dmin * min_s with 4-bit q
 * and 6-bit scale_s/min_s packed into 12 bytes (144 bytes per block). Multiplied with q8_K activations. The
 * layout and the kernels are shared with q5_K (quant_k4.h); this file holds the scale fitting they share too. */
#include <math.h>

#include "quant.h"
#include "quant_k4.h"

/* ggml's make_qkx2_quants: a weighted least-squares fit of scale and min for one sub-block, trying nstep + 1
 * scales around (max - min) / nmax and keeping the one of least weighted squared (use_mad: absolute) error.
 * Returns the scale; *neg_min receives -min (>= 0). */
float llm_fit_scale_min(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min, float rmin,
                        float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    memset(L, 0, (size_t)n);
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
  for (int i = 0; i < n; i++) {
    int l = llm_nearest_int(iscale * (x[i] - min));
    L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
    float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * (use_mad ? fabsf(diff) : diff * diff); /* w * (d * d), not (w * d) * d */
  }
  uint8_t trial[32]; /* n <= 32 */
  for (int step = 0; step <= nstep; step++) {
    iscale = (rmin + rdelta * step + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
      int l = llm_nearest_int(iscale * (x[i] - min));
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      trial[i] = (uint8_t)l;
      float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float error = 0;
      for (int i = 0; i < n; i++) {
        float diff = this_scale * trial[i] + this_min - x[i];
        error += weights[i] * (use_mad ? fabsf(diff) : diff * diff);
      }
      if (error < best_error) {
        memcpy(L, trial, (size_t)n);
        best_error = error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_min = -min;
  return scale;
}

/* ggml's quantize_row_q4_K_ref / quantize_row_q5_K_ref up to the packing of L: fit each sub-block (weights
 * favour large values) with make_qkx2_quants(nmax, rmin, 0.1, nstep), quantize the 8 scales and 8 mins to 6 bits
 * against the block's largest, then requantize the values with the rounded scales. */
void llm_k4_quantize_scales(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out, uint16_t *dmin_out,
                            uint8_t packed[LLM_K_SCALE_BYTES], uint8_t L[LLM_QK_K]) {
  float weights[32], scales[8], mins[8], max_scale = 0, max_min = 0;
  for (int s = 0; s < 8; s++) {
    const float *xs = x + 32 * s;
    float sum_x2 = 0;
    for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
    const float av_x = sqrtf(sum_x2 / 32);
    for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xs[l]);
    scales[s] = llm_fit_scale_min(32, nmax, xs, weights, L + 32 * s, &mins[s], rmin, 0.1f, nstep, false);
    if (scales[s] > max_scale) max_scale = scales[s];
    if (mins[s] > max_min) max_min = mins[s];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  memset(packed, 0, LLM_K_SCALE_BYTES);
  for (int s = 0; s < 8; s++) {
    uint8_t ls = (uint8_t)llm_nearest_int(inv_scale * scales[s]), lm = (uint8_t)llm_nearest_int(inv_min * mins[s]);
    ls = ls < 63 ? ls : 63;
    lm = lm < 63 ? lm : 63;
    if (s < 4) {
      packed[s] |= ls;
      packed[s + 4] |= lm;
    } else {
      packed[s + 4] = (uint8_t)((ls & 0x0f) | (lm & 0x0f) << 4);
      packed[s - 4] |= (uint8_t)((ls >> 4) << 6);
      packed[s] |= (uint8_t)((lm >> 4) << 6);
    }
  }
  *d_out = llm_f32_to_f16(max_scale / 63.0f);
  *dmin_out = llm_f32_to_f16(max_min / 63.0f);
  uint8_t sm[16];
  unpack_scales_mins(packed, sm);
  for (int s = 0; s < 8; s++) {
    const float d = llm_f16_to_f32(*d_out) * sm[s];
    if (d == 0.0f) continue;
    const float dm = llm_f16_to_f32(*dmin_out) * sm[8 + s];
    for (int l = 0; l < 32; l++) {
      int q = llm_nearest_int((x[32 * s + l] + dm) / d);
      L[32 * s + l] = (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
    }
  }
}

void llm_quantize_row_q4_K_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q4_K *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    uint8_t L[LLM_QK_K];
    llm_k4_quantize_scales(x, 15, -1.0f, 20, &y[b].d, &y[b].dmin, y[b].scales, L);
    for (int k = 0; k < 4; k++)
      for (int l = 0; l < 32; l++) y[b].qs[32 * k + l] = (uint8_t)(L[64 * k + l] | L[64 * k + 32 + l] << 4);
  }
}

void llm_dequantize_row_q4_K(const void *in, float *y, int64_t n) { k4_dequantize_row(in, y, n, 0); }

static float dot_q4_K_q8_K(int64_t cols, const void *w_row, const void *x_row) { return k4_dot_q8_K(cols, w_row, x_row, 0); }

LLM_DEFINE_SCALAR_TILE(tile_q4_K_scalar, dot_q4_K_q8_K)
const struct llm_dot_kernel llm_dot_q4_K_scalar = { LLM_ACTIVATION_Q8_K, 1, 1, tile_q4_K_scalar };

#if LLM_HAVE_AVX2_KERNELS

LLM_AVX2_INLINE void tile_q4_K_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  k4_tile_avx2(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, 0);
}

LLM_DEFINE_AVX2_TILE(tile_q4_K_avx2_dispatch, tile_q4_K_avx2, 2, 2)
const struct llm_dot_kernel llm_dot_q4_K_avx2 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_q4_K_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

LLM_TARGET_AVX512 static void pack_q4_K(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  k4_pack(cols, w, w_stride, n_rows, panel, 0);
}

LLM_TARGET_AVX512 static void gemm_q4_K(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                        int64_t out_stride, int n_rows, int n_tokens) {
  k4_gemm(cols, panel, x, x_stride, out, out_stride, n_rows, n_tokens, 0);
}

LLM_AVX512_INLINE void rows_q4_K_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out, const int ROWS) {
  k4_rows_avx512(cols, w, w_stride, x, out, ROWS, 0);
}

LLM_DEFINE_AVX512_DECODE_TILE(tile_q4_K_avx512, rows_q4_K_avx512)

const struct llm_dot_kernel llm_dot_q4_K_avx512 = {
  LLM_ACTIVATION_Q8_K, 4, 1, tile_q4_K_avx512, LLM_ACTIVATION_Q8_K_PANEL, LLM_PANEL_ROWS, 4,
  k4_panel_bytes, pack_q4_K, gemm_q4_K,
};

#endif
