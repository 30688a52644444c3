/* q5_0: blocks of 32 values, value j = d * (q_j - 16) with 5-bit q_j (22 bytes per block). Multiplied with q8_0
 * activations through the kernels shared with q4_0 (quant_b32.h); the AVX-512 set runs the AVX2 tile. */
#include <math.h>

#include "quant.h"
#include "quant_b32.h"

/* ggml's quantize_row_q5_0_ref to the bit: the value of largest magnitude keeps its sign and maps to -16 (d =
 * max / -16), so the opposite end reaches +15 after clamping; x/d + 16.5 truncated is round-half-up. */
void llm_quantize_row_q5_0_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q5_0 *y = out;
  for (int64_t b = 0; b < n / 32; b++, x += 32) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
      if (amax < fabsf(x[j])) {
        amax = fabsf(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16, id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = llm_f32_to_f16(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
      int8_t lo = (int8_t)(x[j] * id + 16.5f), hi = (int8_t)(x[j + 16] * id + 16.5f);
      lo = lo < 31 ? lo : 31;
      hi = hi < 31 ? hi : 31;
      y[b].qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
      qh |= (uint32_t)(lo >> 4 & 1) << j | (uint32_t)(hi >> 4 & 1) << (j + 16);
    }
    memcpy(y[b].qh, &qh, sizeof qh);
  }
}

LLM_DEFINE_B32_FORMAT(q5_0, B32_Q5_0)
