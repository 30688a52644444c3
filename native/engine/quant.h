#ifndef LLM_QUANT_H
#define LLM_QUANT_H

/* Block formats of the quantized types, bit for bit ggml's GGUF layouts (ggml-common.h), and their
 * quantize/dequantize rows. One file per format: quant_q8_0.c, quant_q4_0.c, quant_q4_K.c, quant_q6_K.c, and
 * quant_q8_K.c for the activation format of the K-quant dot products. */

#include <stdint.h>
#include <string.h>

#include "tensor.h"

#define LLM_QK8_0 32
#define LLM_QK4_0 32
#define LLM_QK_K 256 /* values per K-quant super-block */

/* q8_0: value i = d * qs[i], d an IEEE half. Also the activation format that q8_0 and q4_0 weights are multiplied
 * with, which is why its struct is shared here rather than private to quant_q8_0.c. */
struct llm_block_q8_0 {
  uint16_t d;
  int8_t qs[LLM_QK8_0];
};

/* q8_K: the activation format of the q4_K and q6_K dot products (never stored in files). bsums[i] is the sum
 * of qs[16i .. 16i+15]: the dot products subtract the weights' offsets from these instead of from each value. */
struct llm_block_q8_K {
  float d;
  int8_t qs[LLM_QK_K];
  int16_t bsums[LLM_QK_K / 16];
};

/* n is a multiple of the format's block size in all of these. x and y do not alias. */
void llm_quantize_row_q8_0_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q8_0(const void *x, float *y, int64_t n);
void llm_quantize_row_q4_0_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q4_0(const void *x, float *y, int64_t n);
void llm_quantize_row_q4_K_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q4_K(const void *x, float *y, int64_t n);
void llm_quantize_row_q6_K_ref(const float *x, void *y, int64_t n);
void llm_dequantize_row_q6_K(const void *x, float *y, int64_t n);
void llm_quantize_row_q8_K(const float *x, void *y, int64_t n);
void llm_dequantize_row_q8_K(const void *x, float *y, int64_t n);

#include "cpu_features.h"
#if LLM_HAVE_AVX512_KERNELS
/* The activation quantizers on AVX-512: bit-identical to llm_quantize_row_q8_0_ref and llm_quantize_row_q8_K
 * for finite inputs (kernel_tests compares them). */
void llm_quantize_row_q8_0_avx512(const float *x, void *y, int64_t n);
void llm_quantize_row_q8_K_avx512(const float *x, void *y, int64_t n);
#endif

/* Round to nearest, ties to even, for |f| < 2^22: adding 1.5 * 2^23 leaves the rounded integer in the low
 * mantissa bits. The K-quant quantizers use exactly this rounding (ggml's nearest_int). */
static inline int llm_nearest_int(float f) {
  float shifted = f + 12582912.0f;
  int32_t bits;
  memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

#endif
