/* q5_K: super-blocks of 256 values in 8 sub-blocks of 32, value = d * scale_s * q - dmin * min_s with 5-bit q:
 * q4_K's layout with 32 bytes qh before qs, bit s of qh[l] the fifth bit of value l of sub-block s (176 bytes
 * per block). Multiplied with q8_K activations through the kernels shared with q4_K (quant_k4.h). */
#include "quant.h"
#include "quant_k4.h"

/* ggml's quantize_row_q5_K_ref: q4_K's fitting with 31 levels (make_qkx2_quants rmin -0.5, 15 steps), then the
 * low 4 bits of value l of sub-blocks 2k and 2k+1 in byte 32k + l of qs and the fifth bits in qh[l]. */
void llm_quantize_row_q5_K_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q5_K *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    uint8_t L[LLM_QK_K];
    llm_k4_quantize_scales(x, 31, -0.5f, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
    memset(y[b].qh, 0, sizeof y[b].qh);
    for (int k = 0; k < 4; k++)
      for (int l = 0; l < 32; l++) {
        const uint8_t lo = L[64 * k + l], hi = L[64 * k + 32 + l];
        y[b].qs[32 * k + l] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
        y[b].qh[l] |= (uint8_t)((lo >> 4) << (2 * k) | (hi >> 4) << (2 * k + 1));
      }
  }
}

void llm_dequantize_row_q5_K(const void *in, float *y, int64_t n) { k4_dequantize_row(in, y, n, 1); }

static float dot_q5_K_q8_K(int64_t cols, const void *w_row, const void *x_row) { return k4_dot_q8_K(cols, w_row, x_row, 1); }

LLM_DEFINE_SCALAR_TILE(tile_q5_K_scalar, dot_q5_K_q8_K)
const struct llm_dot_kernel llm_dot_q5_K_scalar = { LLM_ACTIVATION_Q8_K, 1, 1, tile_q5_K_scalar };

#if LLM_HAVE_AVX2_KERNELS

LLM_AVX2_INLINE void tile_q5_K_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  k4_tile_avx2(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, 1);
}

LLM_DEFINE_AVX2_TILE(tile_q5_K_avx2_dispatch, tile_q5_K_avx2, 2, 2)
const struct llm_dot_kernel llm_dot_q5_K_avx2 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_q5_K_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

LLM_TARGET_AVX512 static void pack_q5_K(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  k4_pack(cols, w, w_stride, n_rows, panel, 1);
}

LLM_TARGET_AVX512 static void gemm_q5_K(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                        int64_t out_stride, int n_rows, int n_tokens) {
  k4_gemm(cols, panel, x, x_stride, out, out_stride, n_rows, n_tokens, 1);
}

LLM_AVX512_INLINE void rows_q5_K_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out, const int ROWS) {
  k4_rows_avx512(cols, w, w_stride, x, out, ROWS, 1);
}

LLM_DEFINE_AVX512_DECODE_TILE(tile_q5_K_avx512, rows_q5_K_avx512)

const struct llm_dot_kernel llm_dot_q5_K_avx512 = {
  LLM_ACTIVATION_Q8_K, 4, 1, tile_q5_K_avx512, LLM_ACTIVATION_Q8_K_PANEL, LLM_PANEL_ROWS, 4,
  k4_panel_bytes, pack_q5_K, gemm_q5_K,
};

#endif
