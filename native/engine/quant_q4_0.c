/* q4_0: blocks of 32 values, value j = d * (q_j - 8) with 4-bit q_j: byte j holds q_j in its low nibble and
 * q_(j+16) in its high nibble (18 bytes per block). Multiplied with q8_0 activations. */
#include <math.h>

#include "dot.h"
#include "quant.h"
#include "simd_avx2.h"

struct block_q4_0 {
  uint16_t d;
  uint8_t qs[LLM_QK4_0 / 2];
};
_Static_assert(sizeof(struct block_q4_0) == 18, "q4_0 block is 18 bytes per 32 values");

/* ggml's quantize_row_q4_0_ref to the bit: the value of largest magnitude keeps its sign and maps to -8
 * (d = max / -8), so the opposite end reaches +7 after clamping; x/d + 8.5 truncated is round-half-up. */
void llm_quantize_row_q4_0_ref(const float *x, void *out, int64_t n) {
  struct block_q4_0 *y = out;
  for (int64_t b = 0; b < n / LLM_QK4_0; b++, x += LLM_QK4_0) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < LLM_QK4_0; j++) {
      if (amax < fabsf(x[j])) {
        amax = fabsf(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = llm_f32_to_f16(d);
    for (int j = 0; j < LLM_QK4_0 / 2; j++) {
      const float lo_scaled = x[j] * id, hi_scaled = x[j + LLM_QK4_0 / 2] * id;
      const int8_t lo = (int8_t)(lo_scaled + 8.5f), hi = (int8_t)(hi_scaled + 8.5f);
      y[b].qs[j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
    }
  }
}

void llm_dequantize_row_q4_0(const void *in, float *y, int64_t n) {
  const struct block_q4_0 *x = in;
  for (int64_t b = 0; b < n / LLM_QK4_0; b++, y += LLM_QK4_0) {
    const float d = llm_f16_to_f32(x[b].d);
    for (int j = 0; j < LLM_QK4_0 / 2; j++) {
      y[j] = d * (float)((x[b].qs[j] & 0x0f) - 8);
      y[j + LLM_QK4_0 / 2] = d * (float)((x[b].qs[j] >> 4) - 8);
    }
  }
}

static float dot_q4_0_q8_0(int64_t cols, const void *w_row, const void *x_row) {
  const struct block_q4_0 *w = w_row;
  const struct llm_block_q8_0 *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK4_0; b++) {
    int32_t sumi = 0;
    for (int j = 0; j < LLM_QK4_0 / 2; j++)
      sumi += ((w[b].qs[j] & 0x0f) - 8) * x[b].qs[j] + ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + LLM_QK4_0 / 2];
    sum += (float)sumi * (llm_f16_to_f32(w[b].d) * llm_f16_to_f32(x[b].d));
  }
  return sum;
}

LLM_DEFINE_SCALAR_TILE(tile_q4_0_scalar, dot_q4_0_q8_0)
const struct llm_dot_kernel llm_dot_q4_0_scalar = { LLM_ACTIVATION_Q8_0, 1, 1, tile_q4_0_scalar };

#if LLM_HAVE_AVX2_KERNELS

#define PREFETCH_BLOCKS 56 /* ~1 KiB ahead per row */

/* The nibbles stay unsigned (0..15) for maddubs; sum(q * x) - 8 * sum(x) removes the offset, with sum(x)
 * computed once per token and shared by the rows. Each token's 4 row sums are folded into one vector per block
 * (simd_avx2.h). */
LLM_AVX2_INLINE void tile_q4_0_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  const __m256i low_nibbles = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi8(1);
  /* Shifts the high 128-bit lane of a broadcast block right by 4: its high nibbles become values 16..31. */
  const __m256i nibble_shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
  __m256 acc[4];
  for (int j = 0; j < TOKENS; j++) acc[j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK4_0; b++) {
    __m256i wq[4];
    uint16_t wd[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < ROWS; i++) {
      const struct block_q4_0 *wb = (const struct block_q4_0 *)((const char *)w + i * w_stride) + b;
      if (TOKENS == 1) _mm_prefetch((const char *)(wb + PREFETCH_BLOCKS), _MM_HINT_T0);
      const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)wb->qs));
      wq[i] = _mm256_and_si256(_mm256_srlv_epi32(both, nibble_shift), low_nibbles);
      wd[i] = wb->d;
    }
    const __m256 row_scales = llm_halves_4_rows(wd[0], wd[1], wd[2], wd[3]);
    for (int j = 0; j < TOKENS; j++) {
      const struct llm_block_q8_0 *xb = (const struct llm_block_q8_0 *)((const char *)x + j * x_stride) + b;
      const __m256i xq = _mm256_loadu_si256((const __m256i *)xb->qs);
      const __m256i offset = _mm256_slli_epi32(llm_sum_pairs_i16(_mm256_maddubs_epi16(ones, xq)), 3);
      __m256i sums[4];
      for (int i = 0; i < 4; i++)
        sums[i] = i < ROWS ? _mm256_sub_epi32(llm_sum_pairs_i16(_mm256_maddubs_epi16(wq[i], xq)), offset)
                           : _mm256_setzero_si256();
      const __m256i folded = llm_fold_4_rows(sums[0], sums[1], sums[2], sums[3]);
      const __m256 scales = _mm256_mul_ps(row_scales, _mm256_set1_ps(llm_half_to_float(xb->d)));
      acc[j] = _mm256_fmadd_ps(scales, _mm256_cvtepi32_ps(folded), acc[j]);
    }
  }
  for (int j = 0; j < TOKENS; j++) {
    float lanes[8];
    _mm256_storeu_ps(lanes, acc[j]);
    for (int i = 0; i < ROWS; i++) out[j * out_stride + i] = lanes[i] + lanes[i + 4];
  }
}

LLM_DEFINE_AVX2_TILE(tile_q4_0_avx2_dispatch, tile_q4_0_avx2, 4, 4)
const struct llm_dot_kernel llm_dot_q4_0_avx2 = { LLM_ACTIVATION_Q8_0, 4, 4, tile_q4_0_avx2_dispatch };

#endif
