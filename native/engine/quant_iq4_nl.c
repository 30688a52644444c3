/* iq4_nl: blocks of 32 values, value j = d * llm_iq4nl_values[q_j] with 4-bit q_j (byte j holds q_j in its low
 * nibble and q_(j+16) in its high nibble; 18 bytes per block): 16 levels spaced to fit the bell shape of weights
 * rather than evenly. Multiplied with q8_0 activations through the kernels shared with q8_0 (quant_i8.h). */
#include <math.h>

#include "quant.h"
#include "quant_i8.h"

const int8_t llm_iq4nl_values[16] = LLM_IQ4NL_VALUES;

int llm_iq4_nearest(float x) {
  if (x <= llm_iq4nl_values[0]) return 0;
  if (x >= llm_iq4nl_values[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < llm_iq4nl_values[mid]) hi = mid;
    else lo = mid;
  }
  return x - llm_iq4nl_values[hi - 1] < llm_iq4nl_values[hi] - x ? hi - 1 : hi;
}

/* The weighted (x^2) least-squares scale for the indices that the scale s picks, as sum w q x / sum w q^2, and
 * sum w q x in *sumqx. */
static float scale_for(const float *x, float id, float *sumqx_out, float *sumq2_out) {
  float sumqx = 0, sumq2 = 0;
  for (int j = 0; j < 32; j++) {
    const float q = llm_iq4nl_values[llm_iq4_nearest(id * x[j])], w = x[j] * x[j];
    sumqx += w * q * x[j];
    sumq2 += w * q * q;
  }
  *sumqx_out = sumqx;
  *sumq2_out = sumq2;
  return sumq2 > 0 ? sumqx / sumq2 : 0.0f;
}

/* Starting from the largest value mapping to -127, then 15 scales around it: the one of least weighted squared
 * error, which is the largest (sum w q x)^2 / sum w q^2. */
float llm_iq4_fit_block(const float *x) {
  float amax = 0, max = 0;
  for (int j = 0; j < 32; j++) {
    if (fabsf(x[j]) > amax) {
      amax = fabsf(x[j]);
      max = x[j];
    }
  }
  if (amax < LLM_GROUP_MAX_EPS) return 0.0f;
  float sumqx, sumq2;
  float d = scale_for(x, 1 / (-max / llm_iq4nl_values[0]), &sumqx, &sumq2), best = d * sumqx;
  for (int step = -7; step <= 7; step++) {
    scale_for(x, (step + llm_iq4nl_values[0]) / max, &sumqx, &sumq2);
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

/* ggml's quantize_iq4_nl (what llama-quantize runs): the fitted scale, then each value's nearest level. */
void llm_quantize_row_iq4_nl_ref(const float *x, void *out, int64_t n) {
  struct llm_block_iq4_nl *y = out;
  for (int64_t b = 0; b < n / 32; b++, x += 32) {
    const float d = llm_iq4_fit_block(x);
    y[b].d = llm_f32_to_f16(d);
    const float id = d != 0.0f ? 1 / d : 0.0f;
    for (int j = 0; j < 16; j++)
      y[b].qs[j] = (uint8_t)(llm_iq4_nearest(id * x[j]) | llm_iq4_nearest(id * x[j + 16]) << 4);
  }
}

void llm_dequantize_row_iq4_nl(const void *in, float *y, int64_t n) { i8_dequantize_row(in, y, n, I8_IQ4_NL); }

static float dot_iq4_nl_q8_0(int64_t cols, const void *w_row, const void *x_row) { return i8_dot_q8_0(cols, w_row, x_row, I8_IQ4_NL); }

LLM_DEFINE_SCALAR_TILE(tile_iq4_nl_scalar, dot_iq4_nl_q8_0)
const struct llm_dot_kernel llm_dot_iq4_nl_scalar = { LLM_ACTIVATION_Q8_0, 1, 1, tile_iq4_nl_scalar };

#if LLM_HAVE_AVX2_KERNELS

LLM_AVX2_INLINE void tile_iq4_nl_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                      float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  i8_tile_avx2(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, I8_IQ4_NL);
}

LLM_DEFINE_AVX2_TILE(tile_iq4_nl_avx2_dispatch, tile_iq4_nl_avx2, 4, 4)
const struct llm_dot_kernel llm_dot_iq4_nl_avx2 = { LLM_ACTIVATION_Q8_0, 4, 4, tile_iq4_nl_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

LLM_TARGET_AVX512 static void pack_iq4_nl(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  i8_pack(cols, w, w_stride, n_rows, panel, I8_IQ4_NL);
}

LLM_TARGET_AVX512 static void gemm_iq4_nl(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                          int64_t out_stride, int n_rows, int n_tokens) {
  i8_gemm(cols, panel, x, x_stride, out, out_stride, n_rows, n_tokens);
}

LLM_AVX512_INLINE void rows_iq4_nl_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out, const int ROWS) {
  i8_rows_avx512(cols, w, w_stride, x, out, ROWS, I8_IQ4_NL);
}

LLM_DEFINE_AVX512_DECODE_TILE(tile_iq4_nl_avx512, rows_iq4_nl_avx512)

const struct llm_dot_kernel llm_dot_iq4_nl_avx512 = {
  LLM_ACTIVATION_Q8_0, 4, 1, tile_iq4_nl_avx512, LLM_ACTIVATION_Q8_0_PANEL_SIGNED, LLM_PANEL_ROWS, 4,
  i8_panel_bytes, pack_iq4_nl, gemm_iq4_nl,
};

#endif
