#ifndef LLM_QUANT_H
#define LLM_QUANT_H

/* The quantize/dequantize rows of the quantized types, whose block structs are in blocks.h. One file per format:
 * quant_q8_0.c, quant_q4_0.c, quant_q4_1.c, quant_q5_0.c, quant_q5_1.c, quant_q2_K.c, quant_q3_K.c, quant_q4_K.c, quant_q5_K.c, quant_q6_K.c, quant_iq4_nl.c, quant_iq4_xs.c, and quant_q8_K.c for the activation format of the
 * K-quant dot products. */

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "blocks.h"
#include "tensor.h"

/* n is a multiple of the format's block size in all of these. x and y do not alias. */
void llm_quantize_row_q8_0_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q8_0(const void *x, float *y, int64_t n);
void llm_quantize_row_q4_0_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q4_0(const void *x, float *y, int64_t n);
void llm_quantize_row_q4_1_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q4_1(const void *x, float *y, int64_t n);
void llm_quantize_row_q5_0_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q5_0(const void *x, float *y, int64_t n);
void llm_quantize_row_q5_1_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q5_1(const void *x, float *y, int64_t n);
void llm_quantize_row_iq4_nl_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_iq4_nl(const void *x, float *y, int64_t n);
void llm_quantize_row_iq4_xs_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_iq4_xs(const void *x, float *y, int64_t n);
void llm_quantize_row_q2_K_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q2_K(const void *x, float *y, int64_t n);
void llm_quantize_row_q3_K_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q3_K(const void *x, float *y, int64_t n);
void llm_quantize_row_q4_K_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q4_K(const void *x, float *y, int64_t n);
void llm_quantize_row_q5_K_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q5_K(const void *x, float *y, int64_t n);
void llm_quantize_row_q6_K_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q6_K(const void *x, float *y, int64_t n);
void llm_quantize_row_q8_K(const float *x, void *y, int64_t n);
void llm_dequantize_row_q8_K(const void *x, float *y, int64_t n);

/* ggml's make_qkx2_quants (quant_q4_K.c): n <= 32 values to levels 0..nmax in L with a fitted scale (returned)
 * and min (*neg_min = -min >= 0), by weighted squared or (use_mad) absolute error. */
float llm_fit_scale_min(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min, float rmin,
                        float rdelta, int nstep, bool use_mad);

/* The scale fitting of q4_K and q5_K (quant_q4_K.c): one 256-value block's d, dmin and packed scales, and each
 * value's level 0..nmax in L (sub-block s at L[32 s ..]). */
void llm_k4_quantize_scales(const float *x, int nmax, float rmin, int nstep, uint16_t *d, uint16_t *dmin,
                            uint8_t packed[LLM_K_SCALE_BYTES], uint8_t L[LLM_QK_K]);

#include "cpu_features.h"
#if LLM_HAVE_AVX512_KERNELS
/* The activation quantizers on AVX-512: bit-identical to llm_quantize_row_q8_0_ref and llm_quantize_row_q8_K
 * for finite inputs (kernel_tests compares them). */
void llm_quantize_row_q8_0_avx512(const float *x, void *y, int64_t n);
void llm_quantize_row_q8_K_avx512(const float *x, void *y, int64_t n);
#endif

/* The 16 values of iq4_nl and iq4_xs (ggml's kvalues_iq4nl), ascending (quant_iq4_nl.c). */
extern const int8_t llm_iq4nl_values[16];

/* iq4_xs sub-block s's scale_s - 32 (blocks.h). */
static inline int llm_iq4_xs_scale(const struct llm_block_iq4_xs *b, int s) {
  return (((b->scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | ((b->scales_h >> (2 * s)) & 3) << 4) - 32;
}

/* ggml's iq4_nl scale fit (quantize_row_iq4_nl_impl as quantize_iq4_nl / quantize_iq4_xs run it: no importance
 * weights, ntry 7) of one 32-value block; 0 for an all-zero block. iq4_xs fits each sub-block so, then
 * quantizes those scales to 6 bits. */
float llm_iq4_fit_block(const float *x);
/* The index into llm_iq4nl_values nearest x (ties to the upper one), as ggml's best_index_int8. */
int llm_iq4_nearest(float x);

/* Below this a group counts as all zeros (ggml's GROUP_MAX_EPS). */
#define LLM_GROUP_MAX_EPS 1e-15f

/* Round to nearest, ties to even, for |f| < 2^22: adding 1.5 * 2^23 leaves the rounded integer in the low
 * mantissa bits. The K-quant quantizers use exactly this rounding (ggml's nearest_int). */
static inline int llm_nearest_int(float f) {
  float shifted = f + 12582912.0f;
  int32_t bits;
  memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

#endif
