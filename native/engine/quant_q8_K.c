/* q8_K: the activation format of the K-quant dot products, 256 int8 values per block with an f32 scale and the
 * sums of each 16 values (292 bytes per block). Never stored in model files. */
#include <math.h>

#include "dot.h"
#include "quant.h"

_Static_assert(sizeof(struct llm_block_q8_K) == 292, "q8_K block is 292 bytes per 256 values");

/* As ggml: the value of largest magnitude maps to -127 (so its sign decides d's), rounding half to even. */
void llm_quantize_row_q8_K(const float *x, void *out, int64_t n) {
  struct llm_block_q8_K *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < LLM_QK_K; j++) {
      if (amax < fabsf(x[j])) {
        amax = fabsf(x[j]);
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      memset(&y[b], 0, sizeof y[b]);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < LLM_QK_K; j++) {
      int q = llm_nearest_int(iscale * x[j]);
      y[b].qs[j] = (int8_t)(q < 127 ? q : 127);
    }
    for (int g = 0; g < LLM_QK_K / 16; g++) {
      int sum = 0;
      for (int j = 0; j < 16; j++) sum += y[b].qs[16 * g + j];
      y[b].bsums[g] = (int16_t)sum;
    }
    y[b].d = 1.0f / iscale;
  }
}

void llm_dequantize_row_q8_K(const void *in, float *y, int64_t n) {
  const struct llm_block_q8_K *x = in;
  for (int64_t b = 0; b < n / LLM_QK_K; b++)
    for (int j = 0; j < LLM_QK_K; j++) *y++ = x[b].d * (float)x[b].qs[j];
}
