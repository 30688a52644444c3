/* q8_0: blocks of 32 values, value i = d * qs[i] with d an IEEE half (34 bytes per block). Weights in this
 * format are multiplied with activations in the same format, through the kernels shared with iq4_nl
 * (quant_i8.h). */
#include <math.h>

#include "quant.h"
#include "quant_i8.h"

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

void llm_dequantize_row_q8_0(const void *in, float *y, int64_t n) { i8_dequantize_row(in, y, n, I8_Q8_0); }

static float dot_q8_0_q8_0(int64_t cols, const void *w_row, const void *x_row) { return i8_dot_q8_0(cols, w_row, x_row, I8_Q8_0); }

LLM_DEFINE_SCALAR_TILE(tile_q8_0_scalar, dot_q8_0_q8_0)
const struct llm_dot_kernel llm_dot_q8_0_scalar = { LLM_ACTIVATION_Q8_0, 1, 1, tile_q8_0_scalar };

#if LLM_HAVE_AVX2_KERNELS

LLM_AVX2_INLINE void tile_q8_0_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  i8_tile_avx2(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, I8_Q8_0);
}

LLM_DEFINE_AVX2_TILE(tile_q8_0_avx2_dispatch, tile_q8_0_avx2, 4, 4)
const struct llm_dot_kernel llm_dot_q8_0_avx2 = { LLM_ACTIVATION_Q8_0, 4, 4, tile_q8_0_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

LLM_TARGET_AVX512 static void pack_q8_0(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  i8_pack(cols, w, w_stride, n_rows, panel, I8_Q8_0);
}

LLM_TARGET_AVX512 static void gemm_q8_0(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                        int64_t out_stride, int n_rows, int n_tokens) {
  i8_gemm(cols, panel, x, x_stride, out, out_stride, n_rows, n_tokens);
}

LLM_AVX512_INLINE void rows_q8_0_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out, const int ROWS) {
  i8_rows_avx512(cols, w, w_stride, x, out, ROWS, I8_Q8_0);
}

LLM_DEFINE_AVX512_DECODE_TILE(tile_q8_0_avx512, rows_q8_0_avx512)

const struct llm_dot_kernel llm_dot_q8_0_avx512 = {
  LLM_ACTIVATION_Q8_0, 4, 1, tile_q8_0_avx512, LLM_ACTIVATION_Q8_0_PANEL_SIGNED, LLM_PANEL_ROWS, 4,
  i8_panel_bytes, pack_q8_0, gemm_q8_0,
};

#endif

#if LLM_HAVE_AVX512_KERNELS
/* roundf (half away from zero) of each lane, exactly: the fraction v - trunc(v) is exact in f32. */
LLM_AVX512_INLINE __m512i round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_sub_ps(v, t);
  const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(frac), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
  return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, one));
}

/* llm_quantize_row_q8_0_ref to the bit. */
LLM_TARGET_AVX512 void llm_quantize_row_q8_0_avx512(const float *x, void *out, int64_t n) {
  struct llm_block_q8_0 *y = out;
  for (int64_t b = 0; b < n / LLM_QK8_0; b++, x += LLM_QK8_0) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = llm_f32_to_f16(d);
    _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(v0, _mm512_set1_ps(id)))));
    _mm_storeu_si128((__m128i *)(y[b].qs + 16), _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(v1, _mm512_set1_ps(id)))));
  }
}
#endif
