#ifndef LLM_QUANT_B32_H
#define LLM_QUANT_B32_H

/* What q4_0, q4_1, q5_0 and q5_1 share: blocks of 32 unsigned 4- or 5-bit values q_j with an f16 d first, value
 * j = d * (q_j - OFFSET) (q4_0: 8, q5_0: 16) or d * q_j + m (q4_1, q5_1: an f16 m after d). Byte j of qs holds
 * q_j's low 4 bits in its low nibble and q_(j+16)'s in its high nibble; the 5-bit formats keep each fifth bit at
 * bit j of qh (a little-endian 32-bit word). Multiplied with q8_0 activations: the unsigned values meet the
 * signed activations in maddubs, and the offset or min then needs each block's activation sum. The kernels below
 * take the format as a compile-time constant (FORMAT: B32_Q4_0 .. B32_Q5_1; they are always inlined). */

#include <stddef.h>
#include <string.h>

#include "blocks.h"
#include "dot.h"
#include "simd_avx2.h"

enum { B32_Q4_0, B32_Q4_1, B32_Q5_0, B32_Q5_1 };

#define B32_BLOCK_BYTES(FORMAT)                                                                      \
  ((FORMAT) == B32_Q4_0   ? sizeof(struct llm_block_q4_0)                                            \
   : (FORMAT) == B32_Q4_1 ? sizeof(struct llm_block_q4_1)                                            \
   : (FORMAT) == B32_Q5_0 ? sizeof(struct llm_block_q5_0)                                            \
                          : sizeof(struct llm_block_q5_1))
#define B32_HAS_MIN(FORMAT) ((FORMAT) == B32_Q4_1 || (FORMAT) == B32_Q5_1)
#define B32_FIVE_BITS(FORMAT) ((FORMAT) == B32_Q5_0 || (FORMAT) == B32_Q5_1)
#define B32_OFFSET_SHIFT(FORMAT) ((FORMAT) == B32_Q5_0 ? 4 : 3) /* log2 of OFFSET: q4_0 8, q5_0 16 */

_Static_assert(offsetof(struct llm_block_q4_0, d) == 0 && offsetof(struct llm_block_q4_1, d) == 0 &&
                   offsetof(struct llm_block_q5_0, d) == 0 && offsetof(struct llm_block_q5_1, d) == 0,
               "d comes first");
_Static_assert(offsetof(struct llm_block_q4_1, m) == offsetof(struct llm_block_q5_1, m), "m follows d");

static inline const uint8_t *b32_qs(const uint8_t *block, const int FORMAT) {
  return block + (FORMAT == B32_Q4_0   ? offsetof(struct llm_block_q4_0, qs)
                  : FORMAT == B32_Q4_1 ? offsetof(struct llm_block_q4_1, qs)
                  : FORMAT == B32_Q5_0 ? offsetof(struct llm_block_q5_0, qs)
                                       : offsetof(struct llm_block_q5_1, qs));
}

static inline uint32_t b32_qh(const uint8_t *block, const int FORMAT) {
  uint32_t qh;
  memcpy(&qh, block + (FORMAT == B32_Q5_0 ? offsetof(struct llm_block_q5_0, qh) : offsetof(struct llm_block_q5_1, qh)), sizeof qh);
  return qh;
}

static inline uint16_t b32_half(const uint8_t *block, size_t offset) {
  uint16_t h;
  memcpy(&h, block + offset, sizeof h);
  return h;
}
#define B32_D(block) b32_half(block, 0)
#define B32_M(block) b32_half(block, offsetof(struct llm_block_q4_1, m))

/* Value j (0..31) of a block as the unsigned q. */
static inline int b32_value(const uint8_t *block, int j, const int FORMAT) {
  const uint8_t byte = b32_qs(block, FORMAT)[j % 16];
  const int low = j < 16 ? byte & 0x0f : byte >> 4;
  return B32_FIVE_BITS(FORMAT) ? low | (int)((b32_qh(block, FORMAT) >> j) & 1) << 4 : low;
}

static inline void b32_dequantize_row(const void *in, float *y, int64_t n, const int FORMAT) {
  for (int64_t b = 0; b < n / 32; b++) {
    const uint8_t *block = (const uint8_t *)in + b * B32_BLOCK_BYTES(FORMAT);
    const float d = llm_f16_to_f32(B32_D(block));
    if (B32_HAS_MIN(FORMAT)) {
      const float m = llm_f16_to_f32(B32_M(block));
      for (int j = 0; j < 32; j++) *y++ = (float)b32_value(block, j, FORMAT) * d + m;
    } else {
      for (int j = 0; j < 32; j++) *y++ = d * (float)(b32_value(block, j, FORMAT) - (1 << B32_OFFSET_SHIFT(FORMAT)));
    }
  }
}

/* Offset formats: sum (q - OFFSET) y per block, times d * x_d. Min formats: d x_d sum q y + m x_d sum y. */
static inline float b32_dot_q8_0(int64_t cols, const void *w_row, const void *x_row, const int FORMAT) {
  const struct llm_block_q8_0 *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / 32; b++) {
    const uint8_t *block = (const uint8_t *)w_row + b * B32_BLOCK_BYTES(FORMAT);
    const int offset = B32_HAS_MIN(FORMAT) ? 0 : 1 << B32_OFFSET_SHIFT(FORMAT);
    int32_t sumi = 0, sum_x = 0;
    for (int j = 0; j < 32; j++) {
      sumi += (b32_value(block, j, FORMAT) - offset) * x[b].qs[j];
      sum_x += x[b].qs[j];
    }
    const float xd = llm_f16_to_f32(x[b].d);
    sum += (float)sumi * (llm_f16_to_f32(B32_D(block)) * xd);
    if (B32_HAS_MIN(FORMAT)) sum += (float)sum_x * (llm_f16_to_f32(B32_M(block)) * xd);
  }
  return sum;
}

#if LLM_HAVE_AVX2_KERNELS

/* Sum of the 8 int32 lanes (exact). */
LLM_AVX2_INLINE int32_t b32_hsum_epi32(__m256i v) {
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
  return _mm_cvtsi128_si32(h);
}

/* The 32 unsigned values of a block, value j in byte j. */
LLM_AVX2_INLINE __m256i b32_values_avx2(const uint8_t *block, const int FORMAT) {
  /* The high 128-bit lane of the broadcast nibbles shifted right by 4: its high nibbles become values 16..31. */
  const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b32_qs(block, FORMAT)));
  const __m256i low = _mm256_and_si256(_mm256_srlv_epi32(both, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0f));
  if (!B32_FIVE_BITS(FORMAT)) return low;
  /* Byte j takes byte j / 8 of qh, then keeps bit j % 8 as 16. */
  const __m256i qh = _mm256_set1_epi32((int)b32_qh(block, FORMAT));
  const __m256i spread = _mm256_shuffle_epi8(qh, _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
  const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
  return _mm256_or_si256(low, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16)));
}

#define B32_PREFETCH_BYTES 1008 /* ~1 KiB ahead per row */

/* The values stay unsigned for maddubs; the offset formats subtract OFFSET * sum(x), the min formats add m x_d
 * sum(x) as a float term (in lanes 0-3 only: llm_store_4_rows adds lanes i and i + 4), with sum(x) computed once
 * per token and shared by the rows. Each token's 4 row sums are folded into one vector per block. */
LLM_AVX2_INLINE void b32_tile_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                   float *out, int64_t out_stride, const int ROWS, const int TOKENS, const int FORMAT) {
  const __m256i ones = _mm256_set1_epi8(1);
  const size_t block_bytes = B32_BLOCK_BYTES(FORMAT);
  __m256 acc[4];
  for (int j = 0; j < TOKENS; j++) acc[j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / 32; b++) {
    __m256i wq[4];
    uint16_t wd[4] = { 0, 0, 0, 0 }, wm[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < ROWS; i++) {
      const uint8_t *wb = (const uint8_t *)w + i * w_stride + b * block_bytes;
      if (TOKENS == 1) _mm_prefetch((const char *)wb + B32_PREFETCH_BYTES, _MM_HINT_T0);
      wq[i] = b32_values_avx2(wb, FORMAT);
      wd[i] = B32_D(wb);
      if (B32_HAS_MIN(FORMAT)) wm[i] = B32_M(wb);
    }
    const __m256 row_scales = llm_halves_4_rows(wd[0], wd[1], wd[2], wd[3]);
    const __m256 row_mins = _mm256_set_m128(_mm_setzero_ps(), llm_halves_4(wm[0], wm[1], wm[2], wm[3]));
    for (int j = 0; j < TOKENS; j++) {
      const struct llm_block_q8_0 *xb = (const struct llm_block_q8_0 *)((const char *)x + j * x_stride) + b;
      const __m256i xq = _mm256_loadu_si256((const __m256i *)xb->qs);
      const __m256i sum_x = llm_sum_pairs_i16(_mm256_maddubs_epi16(ones, xq));
      const __m256i offset = B32_HAS_MIN(FORMAT) ? _mm256_setzero_si256() : _mm256_slli_epi32(sum_x, B32_OFFSET_SHIFT(FORMAT));
      __m256i sums[4];
      for (int i = 0; i < 4; i++)
        sums[i] = i < ROWS ? _mm256_sub_epi32(llm_sum_pairs_i16(_mm256_maddubs_epi16(wq[i], xq)), offset) : _mm256_setzero_si256();
      const float xd = llm_half_to_float(xb->d);
      acc[j] = llm_accumulate_4_rows(acc[j], row_scales, xd, sums);
      if (B32_HAS_MIN(FORMAT))
        acc[j] = _mm256_fmadd_ps(row_mins, _mm256_set1_ps(xd * (float)b32_hsum_epi32(sum_x)), acc[j]);
    }
  }
  llm_store_4_rows(acc, TOKENS, ROWS, out, out_stride);
}

#endif

/* The dequantizer and the dot-product kernels of a format of this family that has no AVX-512 kernels of its own
 * (the AVX-512 set runs its AVX2 tile): llm_dequantize_row_NAME and llm_dot_NAME_{scalar,avx2,avx512}. */
#define LLM_DEFINE_B32_FORMAT(name, FORMAT)                                                                          \
  void llm_dequantize_row_##name(const void *in, float *y, int64_t n) { b32_dequantize_row(in, y, n, FORMAT); }      \
  static float dot_##name##_q8_0(int64_t cols, const void *w_row, const void *x_row) {                                \
    return b32_dot_q8_0(cols, w_row, x_row, FORMAT);                                                                 \
  }                                                                                                                  \
  LLM_DEFINE_SCALAR_TILE(tile_##name##_scalar, dot_##name##_q8_0)                                                    \
  const struct llm_dot_kernel llm_dot_##name##_scalar = { LLM_ACTIVATION_Q8_0, 1, 1, tile_##name##_scalar };        \
  B32_SIMD_KERNELS(name, FORMAT)

#if LLM_HAVE_AVX2_KERNELS
#define B32_AVX2_KERNEL(name, FORMAT)                                                                                \
  LLM_AVX2_INLINE void tile_##name##_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                          float *out, int64_t out_stride, const int ROWS, const int TOKENS) {        \
    b32_tile_avx2(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, FORMAT);                            \
  }                                                                                                                  \
  LLM_DEFINE_AVX2_TILE(tile_##name##_avx2_dispatch, tile_##name##_avx2, 4, 4)                                        \
  const struct llm_dot_kernel llm_dot_##name##_avx2 = { LLM_ACTIVATION_Q8_0, 4, 4, tile_##name##_avx2_dispatch };
#endif
#if LLM_HAVE_AVX512_KERNELS
#define B32_SIMD_KERNELS(name, FORMAT)                                                                               \
  B32_AVX2_KERNEL(name, FORMAT)                                                                                      \
  const struct llm_dot_kernel llm_dot_##name##_avx512 = { LLM_ACTIVATION_Q8_0, 4, 4, tile_##name##_avx2_dispatch };
#elif LLM_HAVE_AVX2_KERNELS
#define B32_SIMD_KERNELS(name, FORMAT) B32_AVX2_KERNEL(name, FORMAT)
#else
#define B32_SIMD_KERNELS(name, FORMAT)
#endif

#endif
