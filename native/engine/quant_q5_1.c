/* q5_1: blocks of 32 values, value j = d * q_j + m with 5-bit q_j (24 bytes per block). Multiplied with q8_0
 * activations through the kernels shared with q4_0 (quant_b32.h); the AVX-512 set runs the AVX2 tile. */
#include <float.h>

#include "quant.h"
#include "quant_b32.h"

/* ggml's quantize_row_q5_1_ref to the bit: d = (max - min) / 31, m = min, q = (x - min) / d + 0.5 truncated. */
void llm_quantize_row_q5_1_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q5_1 *y = out;
  for (int64_t b = 0; b < n / 32; b++, x += 32) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31, id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = llm_f32_to_f16(d);
    y[b].m = llm_f32_to_f16(min);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
      const uint8_t lo = (uint8_t)((x[j] - min) * id + 0.5f), hi = (uint8_t)((x[j + 16] - min) * id + 0.5f);
      y[b].qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
      qh |= (uint32_t)(lo >> 4 & 1) << j | (uint32_t)(hi >> 4 & 1) << (j + 16);
    }
    memcpy(y[b].qh, &qh, sizeof qh);
  }
}

LLM_DEFINE_B32_FORMAT(q5_1, B32_Q5_1)
