#ifndef LLM_SIMD_AVX2_H
#define LLM_SIMD_AVX2_H

/* Small AVX2 helpers shared by the kernels. Everything here is compiled for AVX2+FMA+F16C through function
 * attributes (cpu_features.h), so including it costs nothing on builds that never call it. */

#include "cpu_features.h"

#if LLM_HAVE_AVX2_KERNELS
#include <immintrin.h>

#define LLM_AVX2_INLINE static inline __attribute__((always_inline)) LLM_TARGET_AVX2

LLM_AVX2_INLINE float llm_hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

LLM_AVX2_INLINE float llm_half_to_float(uint16_t h) { return _cvtsh_ss(h); }

/* Sums of adjacent int16 pairs as int32: the second step of a u8 x s8 dot product. */
LLM_AVX2_INLINE __m256i llm_sum_pairs_i16(__m256i v) { return _mm256_madd_epi16(v, _mm256_set1_epi16(1)); }

/* 32 signed bytes times 32 signed bytes, summed in pairs of pairs to 8 int32. maddubs wants its first operand
 * unsigned, so it gets |a| and b takes a's sign. */
LLM_AVX2_INLINE __m256i llm_dot_i8(__m256i a, __m256i b) {
  return llm_sum_pairs_i16(_mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a)));
}

/* Four rows' int32 partial sums folded into one vector: lanes i and i + 4 hold row i's. One conversion and one
 * multiply-add then scale all four rows, instead of one each (the blocks of q8_0/q4_0 are short, so this
 * per-block float work is most of the cost). */
LLM_AVX2_INLINE __m256i llm_fold_4_rows(__m256i r0, __m256i r1, __m256i r2, __m256i r3) {
  return _mm256_hadd_epi32(_mm256_hadd_epi32(r0, r1), _mm256_hadd_epi32(r2, r3));
}

/* Four IEEE halves (four rows' block scales) as floats in lanes 0-3, packed in a general register and moved over
 * once (one move instead of an insert per half; end to end the same speed as setr_epi16). */
LLM_AVX2_INLINE __m128 llm_halves_4(uint16_t h0, uint16_t h1, uint16_t h2, uint16_t h3) {
  const uint64_t packed = (uint64_t)h0 | (uint64_t)h1 << 16 | (uint64_t)h2 << 32 | (uint64_t)h3 << 48;
  return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)packed));
}

/* The same, repeated in lanes 4-7: the scales matching llm_fold_4_rows. */
LLM_AVX2_INLINE __m256 llm_halves_4_rows(uint16_t h0, uint16_t h1, uint16_t h2, uint16_t h3) {
  const __m128 scales = llm_halves_4(h0, h1, h2, h3);
  return _mm256_set_m128(scales, scales);
}

/* One block of 4 rows for one token: acc += (row scales x the activation block's scale) * its 4 row sums folded. */
LLM_AVX2_INLINE __m256 llm_accumulate_4_rows(__m256 acc, __m256 row_scales, float x_scale, const __m256i sums[4]) {
  const __m256i folded = llm_fold_4_rows(sums[0], sums[1], sums[2], sums[3]);
  return _mm256_fmadd_ps(_mm256_mul_ps(row_scales, _mm256_set1_ps(x_scale)), _mm256_cvtepi32_ps(folded), acc);
}

/* The tile's results: row i of token j is lanes i + i+4 of acc[j] (the two 128-bit halves of the fold). */
LLM_AVX2_INLINE void llm_store_4_rows(const __m256 acc[], int n_tokens, int n_rows, float *out, int64_t out_stride) {
  for (int j = 0; j < n_tokens; j++) {
    float lanes[8];
    _mm256_storeu_ps(lanes, acc[j]);
    for (int i = 0; i < n_rows; i++) out[j * out_stride + i] = lanes[i] + lanes[i + 4];
  }
}
#endif

#endif
