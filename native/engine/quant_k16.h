#ifndef LLM_QUANT_K16_H
#define LLM_QUANT_K16_H

/* What q6_K, q3_K and q2_K share: super-blocks of 16 groups of 16 values with an integer scale per group and one
 * f16 d, value = d * scale_g * (q - OFFSET) with unsigned q of 6 bits (q6_K, OFFSET 32) or 3 bits (q3_K, OFFSET
 * 4), or value = d * scale_g * q - dmin * min_g with 2-bit q (q2_K, 4-bit scale and min). The kernels below take
 * the format as a compile-time constant (FORMAT: K16_Q6_K, K16_Q3_K, K16_Q2_K; they are always inlined), so each
 * file's instances are specialised. Layouts (blocks.h):
 *   q6_K: each half of 128 values keeps the low 4 bits of q in 64 bytes of ql (values l and l+64 share byte l,
 *         l+32 and l+96 share byte l+32) and the top 2 bits in 32 bytes of qh (values l, l+32, l+64, l+96 in bits
 *         0-1, 2-3, 4-5, 6-7 of byte l); int8 scales.
 *   q3_K: value v keeps its low 2 bits in bits 2k, 2k+1 of qs[32 h + l] (v = 128 h + 32 k + l) and its third bit
 *         in bit v / 32 of hmask[v % 32]; the scales are 6 bits (stored + 32), packed into 12 bytes.
 *   q2_K: q3_K's qs without hmask; byte g of scales holds group g's scale (low nibble) and min (high nibble). */

#include <stddef.h>
#include <string.h>

#include "blocks.h"
#include "dot.h"
#include "simd_avx2.h"
#include "simd_avx512.h"

enum { K16_Q6_K, K16_Q3_K, K16_Q2_K };

#define K16_BLOCK_BYTES(FORMAT)                                                                           \
  ((FORMAT) == K16_Q6_K   ? sizeof(struct llm_block_q6_K)                                                 \
   : (FORMAT) == K16_Q3_K ? sizeof(struct llm_block_q3_K)                                                 \
                          : sizeof(struct llm_block_q2_K))
/* log2 of OFFSET; q2_K subtracts its mins instead. */
#define K16_OFFSET_SHIFT(FORMAT) ((FORMAT) == K16_Q6_K ? 5 : 2)
#define K16_OFFSET(FORMAT) ((FORMAT) == K16_Q2_K ? 0 : 1 << K16_OFFSET_SHIFT(FORMAT))

static inline uint16_t k16_d(const uint8_t *block, const int FORMAT) {
  return FORMAT == K16_Q6_K   ? ((const struct llm_block_q6_K *)block)->d
         : FORMAT == K16_Q3_K ? ((const struct llm_block_q3_K *)block)->d
                              : ((const struct llm_block_q2_K *)block)->d;
}

/* q3_K's 16 scales, as stored (0..63): scale j keeps its low 4 bits in the low (j < 8) or high nibble of byte j % 8
 * and its top 2 bits in bits 2 (j / 4), 2 (j / 4) + 1 of byte 8 + j % 4. Four at a time, in little-endian words. */
static inline void unpack_q3_K_scales(const uint8_t packed[LLM_K_SCALE_BYTES], uint8_t out[16]) {
  uint32_t in[3], words[4];
  memcpy(in, packed, sizeof in);
  words[0] = (in[0] & 0x0f0f0f0f) | (in[2] & 0x03030303) << 4;
  words[1] = (in[1] & 0x0f0f0f0f) | ((in[2] >> 2) & 0x03030303) << 4;
  words[2] = ((in[0] >> 4) & 0x0f0f0f0f) | ((in[2] >> 4) & 0x03030303) << 4;
  words[3] = ((in[1] >> 4) & 0x0f0f0f0f) | ((in[2] >> 6) & 0x03030303) << 4;
  memcpy(out, words, sizeof words);
}

/* The 16 group scales of a block, as signed bytes. */
static inline void k16_scales(const uint8_t *block, int8_t out[16], const int FORMAT) {
  if (FORMAT == K16_Q3_K) {
    uint8_t stored[16];
    unpack_q3_K_scales(((const struct llm_block_q3_K *)block)->scales, stored);
    for (int g = 0; g < 16; g++) out[g] = (int8_t)(stored[g] - 32);
  } else if (FORMAT == K16_Q2_K) {
    for (int g = 0; g < 16; g++) out[g] = (int8_t)(((const struct llm_block_q2_K *)block)->scales[g] & 0x0f);
  } else {
    memcpy(out, ((const struct llm_block_q6_K *)block)->scales, 16);
  }
}

/* Value i (0..255) of a block as the unsigned q (the stored value is q - OFFSET); its group is i / 16. */
static inline int k16_value(const uint8_t *block, int i, const int FORMAT) {
  const int half = i / 128, l = i % 32, quarter = (i % 128) / 32; /* quarter: which of l, l+32, l+64, l+96 */
  if (FORMAT == K16_Q2_K) return (((const struct llm_block_q2_K *)block)->qs[32 * half + l] >> (2 * quarter)) & 3;
  if (FORMAT == K16_Q3_K) {
    const struct llm_block_q3_K *b = (const struct llm_block_q3_K *)block;
    return ((b->qs[32 * half + l] >> (2 * quarter)) & 3) | ((b->hmask[l] >> (i / 32)) & 1) << 2;
  }
  const struct llm_block_q6_K *b = (const struct llm_block_q6_K *)block;
  const uint8_t low = b->ql[64 * half + l + 32 * (quarter & 1)];
  const int low4 = quarter < 2 ? low & 0x0f : low >> 4;
  return low4 | ((b->qh[32 * half + l] >> (2 * quarter)) & 3) << 4;
}

static inline void k16_dequantize_row(const void *in, float *y, int64_t n, const int FORMAT) {
  for (int64_t b = 0; b < n / LLM_QK_K; b++) {
    const uint8_t *block = (const uint8_t *)in + b * K16_BLOCK_BYTES(FORMAT);
    int8_t scales[16];
    k16_scales(block, scales, FORMAT);
    const float d = llm_f16_to_f32(k16_d(block, FORMAT));
    if (FORMAT == K16_Q2_K) {
      const struct llm_block_q2_K *q2 = (const struct llm_block_q2_K *)block;
      const float dmin = llm_f16_to_f32(q2->dmin);
      for (int i = 0; i < LLM_QK_K; i++) *y++ = d * scales[i / 16] * (float)k16_value(block, i, FORMAT) - dmin * (q2->scales[i / 16] >> 4);
    } else {
      for (int i = 0; i < LLM_QK_K; i++) *y++ = d * scales[i / 16] * (float)(k16_value(block, i, FORMAT) - K16_OFFSET(FORMAT));
    }
  }
}

/* q6_K, q3_K: d * x_d * sum_g scale_g (q - OFFSET) . y. q2_K: x_d * (d * sum_g scale_g q . y - dmin * sum_g min_g
 * (sum of y over g)), the mins meeting the activations' bsums. */
static inline float k16_dot_q8_K(int64_t cols, const void *w_row, const void *x_row, const int FORMAT) {
  const struct llm_block_q8_K *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    const uint8_t *block = (const uint8_t *)w_row + b * K16_BLOCK_BYTES(FORMAT);
    int8_t scales[16];
    k16_scales(block, scales, FORMAT);
    int32_t sumi = 0, sum_mins = 0;
    for (int g = 0; g < 16; g++) {
      int32_t group = 0;
      for (int l = 0; l < 16; l++) group += (k16_value(block, 16 * g + l, FORMAT) - K16_OFFSET(FORMAT)) * x[b].qs[16 * g + l];
      sumi += scales[g] * group;
      if (FORMAT == K16_Q2_K) sum_mins += (((const struct llm_block_q2_K *)block)->scales[g] >> 4) * x[b].bsums[g];
    }
    const float d = llm_f16_to_f32(k16_d(block, FORMAT));
    if (FORMAT == K16_Q2_K)
      sum += x[b].d * (d * (float)sumi - llm_f16_to_f32(((const struct llm_block_q2_K *)block)->dmin) * (float)sum_mins);
    else
      sum += d * x[b].d * (float)sumi;
  }
  return sum;
}

#if LLM_HAVE_AVX2_KERNELS

/* Half `half` of a block as unsigned q: q[k] holds values 128 half + 32 k .. + 31. */
LLM_AVX2_INLINE void k16_unpack_half(const uint8_t *block, int half, __m256i q[4], const int FORMAT) {
  if (FORMAT == K16_Q2_K) {
    const __m256i low = _mm256_loadu_si256((const __m256i *)(((const struct llm_block_q2_K *)block)->qs + 32 * half));
    for (int k = 0; k < 4; k++) q[k] = _mm256_and_si256(_mm256_srli_epi16(low, 2 * k), _mm256_set1_epi8(0x03));
    return;
  }
  if (FORMAT == K16_Q3_K) {
    const struct llm_block_q3_K *b = (const struct llm_block_q3_K *)block;
    const __m256i mask2 = _mm256_set1_epi8(0x03), four = _mm256_set1_epi8(4);
    const __m256i low = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * half));
    const __m256i high = _mm256_loadu_si256((const __m256i *)b->hmask);
    for (int k = 0; k < 4; k++) {
      const __m256i bit = _mm256_set1_epi8((char)(1 << (4 * half + k)));
      const __m256i third = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(high, bit), bit), four);
      q[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(low, 2 * k), mask2), third);
    }
    return;
  }
  const struct llm_block_q6_K *b = (const struct llm_block_q6_K *)block;
  const __m256i mask4 = _mm256_set1_epi8(0x0f), mask2 = _mm256_set1_epi8(0x03);
  const __m256i ql_a = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * half));
  const __m256i ql_b = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * half + 32));
  const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * half));
  q[0] = _mm256_or_si256(_mm256_and_si256(ql_a, mask4), _mm256_slli_epi16(_mm256_and_si256(qh, mask2), 4));
  q[1] = _mm256_or_si256(_mm256_and_si256(ql_b, mask4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), mask2), 4));
  q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql_a, 4), mask4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), mask2), 4));
  q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql_b, 4), mask4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), mask2), 4));
}

/* The 16 group scales as int16. */
LLM_AVX2_INLINE __m256i k16_scales16(const uint8_t *block, const int FORMAT) {
  int8_t scales[16];
  k16_scales(block, scales, FORMAT);
  return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)scales));
}

/* Unsigned q against the activations with maddubs, each 16-value group scaled by madd, and the -OFFSET removed
 * once per block as OFFSET * sum_g scale_g * bsum_g (q2_K: the mins as sum_g min_g * bsum_g, a float term of
 * their own). */
LLM_AVX2_INLINE void k16_tile_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                   float *out, int64_t out_stride, const int ROWS, const int TOKENS, const int FORMAT) {
  const size_t block_bytes = K16_BLOCK_BYTES(FORMAT);
  const size_t prefetch = (1024 + block_bytes / 2) / block_bytes * block_bytes; /* ~1 KiB ahead per row, whole blocks */
  /* Picks int16 0 in the low 128-bit lane and int16 1 in the high lane of a broadcast pair of scales. */
  const __m256i pair_spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3,
                                               2, 3, 2, 3, 2, 3, 2, 3);
  __m256 acc[4][4];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) acc[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    __m256i sumi[4][4], sum_mins[4][4];
    float wd[4], wdmin[4];
    for (int i = 0; i < ROWS; i++) {
      const uint8_t *wb = (const uint8_t *)w + i * w_stride + b * block_bytes;
      if (TOKENS == 1)
        for (size_t line = 0; line < block_bytes; line += 64) _mm_prefetch((const char *)wb + prefetch + line, _MM_HINT_T0);
      wd[i] = llm_half_to_float(k16_d(wb, FORMAT));
      const __m256i scales16 = k16_scales16(wb, FORMAT);
      __m256i mins16 = _mm256_setzero_si256();
      if (FORMAT == K16_Q2_K) {
        const struct llm_block_q2_K *q2 = (const struct llm_block_q2_K *)wb;
        wdmin[i] = llm_half_to_float(q2->dmin);
        mins16 = _mm256_srli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)q2->scales)), 4);
      }
      for (int j = 0; j < TOKENS; j++) {
        const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b;
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb->bsums);
        if (FORMAT == K16_Q2_K) {
          sum_mins[i][j] = _mm256_madd_epi16(bsums, mins16);
          sumi[i][j] = _mm256_setzero_si256();
        } else {
          const __m256i offset = _mm256_madd_epi16(bsums, scales16);
          sumi[i][j] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, K16_OFFSET_SHIFT(FORMAT)));
        }
      }
      for (int half = 0; half < 2; half++) {
        __m256i q[4];
        k16_unpack_half(wb, half, q, FORMAT);
        for (int k = 0; k < 4; k++) {
          /* Values 128 half + 32 k + 0..31: groups 8 half + 2k (low lane) and 8 half + 2k + 1 (high lane). */
          const int pair = 4 * half + k;
          const __m256i scale = _mm256_shuffle_epi8(
              _mm256_permutevar8x32_epi32(scales16, _mm256_set1_epi32(pair)), pair_spread);
          for (int j = 0; j < TOKENS; j++) {
            const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b;
            const __m256i y = _mm256_loadu_si256((const __m256i *)(xb->qs + 128 * half + 32 * k));
            sumi[i][j] = _mm256_add_epi32(sumi[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], y), scale));
          }
        }
      }
    }
    for (int j = 0; j < TOKENS; j++) {
      const float xd = ((const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b)->d;
      for (int i = 0; i < ROWS; i++) {
        acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(wd[i] * xd), _mm256_cvtepi32_ps(sumi[i][j]), acc[i][j]);
        if (FORMAT == K16_Q2_K)
          acc[i][j] = _mm256_fnmadd_ps(_mm256_set1_ps(wdmin[i] * xd), _mm256_cvtepi32_ps(sum_mins[i][j]), acc[i][j]);
      }
    }
  }
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) out[j * out_stride + i] = llm_hsum_ps(acc[i][j]);
}

#endif

#if LLM_HAVE_AVX512_KERNELS

/* The AVX-512 kernels below are q6_K's and q3_K's (q2_K's mins would need per-16 activation sums the panel
 * format does not carry). The panel of 16 rows, per super-block: 64 vectors of the signed values q - OFFSET (vector v: values 4v..4v+3,
 * row r in lane r); per 16-value group the row scales as int16 pairs; per row 128 * sum_g scale_g * sum(q -
 * OFFSET) as int32 (the activations come biased by +128, dot.h) and d. */
#define K16_PANEL_W 0
#define K16_PANEL_SCALES (64 * 64)
#define K16_PANEL_CORR (K16_PANEL_SCALES + 16 * 64)
#define K16_PANEL_D (K16_PANEL_CORR + 64)
#define K16_PANEL_BLOCK (K16_PANEL_D + 64)

static inline size_t k16_panel_bytes(int64_t cols) { return (size_t)(cols / LLM_QK_K) * K16_PANEL_BLOCK; }

LLM_AVX512_INLINE void k16_pack(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel, const int FORMAT) {
  const __m256i offset = _mm256_set1_epi8((char)(1 << K16_OFFSET_SHIFT(FORMAT)));
  const __m256i ones16 = _mm256_set1_epi16(1);
  /* Spreads scale bytes 0 and 1 of a 16-byte vector over the low and high 16 bytes of a 32-byte one. */
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                          1, 1, 1, 1, 1, 1);
  _Alignas(64) uint8_t staging[LLM_PANEL_ROWS][LLM_QK_K];
  memset(staging, 0, sizeof staging);
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    uint8_t *pb = (uint8_t *)panel + b * K16_PANEL_BLOCK;
    int16_t *scales = (int16_t *)(pb + K16_PANEL_SCALES);
    int32_t *corr = (int32_t *)(pb + K16_PANEL_CORR);
    float *d = (float *)(pb + K16_PANEL_D);
    for (int r = 0; r < LLM_PANEL_ROWS; r++) {
      if (r >= n_rows) {
        for (int g = 0; g < 16; g++) scales[g * 32 + 2 * r] = scales[g * 32 + 2 * r + 1] = 0;
        corr[r] = 0;
        d[r] = 0.0f;
        continue;
      }
      const uint8_t *blk = (const uint8_t *)w + r * w_stride + b * K16_BLOCK_BYTES(FORMAT);
      int8_t group_scale[16];
      k16_scales(blk, group_scale, FORMAT);
      const __m128i sc = _mm_loadu_si128((const __m128i *)group_scale);
      __m256i weighted = _mm256_setzero_si256(); /* sum_g scale_g * sum q (q unsigned), in int32 lanes */
      for (int half = 0; half < 2; half++) {
        __m256i q[4];
        k16_unpack_half(blk, half, q, FORMAT);
        for (int k = 0; k < 4; k++) {
          /* Values 128 half + 32 k + 0..31: groups 8 half + 2k and 8 half + 2k + 1. */
          const int group = 8 * half + 2 * k;
          _mm256_store_si256((__m256i *)(staging[r] + 128 * half + 32 * k), _mm256_sub_epi8(q[k], offset));
          const __m256i group_scales =
              _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(sc), _mm256_add_epi8(spread, _mm256_set1_epi8((char)group)));
          weighted = _mm256_add_epi32(weighted, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], group_scales), ones16));
        }
      }
      int scale_sum = 0;
      for (int g = 0; g < 16; g++) {
        scales[g * 32 + 2 * r] = scales[g * 32 + 2 * r + 1] = group_scale[g];
        scale_sum += group_scale[g];
      }
      corr[r] = 128 * (llm_hsum_epi32(weighted) - (16 << K16_OFFSET_SHIFT(FORMAT)) * scale_sum);
      d[r] = _cvtsh_ss(k16_d(blk, FORMAT));
    }
    llm_panel_transpose(&staging[0][0], LLM_QK_K, pb + K16_PANEL_W);
  }
}

/* Per 16-value group: 4 maddubs, summed in int16 two at a time (|q - OFFSET| <= 32, x + 128 <= 255: 2 * 2 * 255 *
 * 32 < 32768), each pair scaled by madd with the group's scales. */
LLM_AVX512_INLINE void k16_gemm_tile(int64_t cols, const uint8_t *panel, const uint8_t *x, size_t x_stride, float *out,
                                     int64_t out_stride, __mmask16 mask, const int TOKENS) {
  __m512 acc[4];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    const uint8_t *pb = panel + b * K16_PANEL_BLOCK;
    __m512i sum[4];
    for (int t = 0; t < TOKENS; t++) sum[t] = _mm512_setzero_si512();
    for (int g = 0; g < 16; g++) {
      const __m512i scale = _mm512_load_si512((const __m512i *)(pb + K16_PANEL_SCALES + 64 * g));
      for (int pair = 0; pair < 2; pair++) {
        const int v = 4 * g + 2 * pair;
        const __m512i w0 = _mm512_load_si512((const __m512i *)(pb + K16_PANEL_W + 64 * v));
        const __m512i w1 = _mm512_load_si512((const __m512i *)(pb + K16_PANEL_W + 64 * (v + 1)));
        for (int t = 0; t < TOKENS; t++) {
          const uint8_t *xv = x + t * x_stride + b * LLM_QK_K + 4 * v;
          const __m512i p = _mm512_add_epi16(_mm512_maddubs_epi16(llm_bcast4(xv), w0),
                                             _mm512_maddubs_epi16(llm_bcast4(xv + 4), w1));
          sum[t] = _mm512_add_epi32(sum[t], _mm512_madd_epi16(p, scale));
        }
      }
    }
    const __m512i corr = _mm512_load_si512((const __m512i *)(pb + K16_PANEL_CORR));
    const __m512 d = _mm512_load_ps((const float *)(pb + K16_PANEL_D));
    for (int t = 0; t < TOKENS; t++) {
      const float xd = ((const float *)(x + t * x_stride + cols))[b];
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sum[t], corr)), d), _mm512_set1_ps(xd),
                               acc[t]);
    }
  }
  for (int t = 0; t < TOKENS; t++) _mm512_mask_storeu_ps(out + t * out_stride, mask, acc[t]);
}

LLM_AVX512_INLINE void k16_gemm(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                int64_t out_stride, int n_rows, int n_tokens) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) k16_gemm_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 4);
  if (t + 2 <= n_tokens) {
    k16_gemm_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 2);
    t += 2;
  }
  if (t < n_tokens) k16_gemm_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 1);
}

/* Decode: per super-block and row the exact integer sum_g scale_g sum(x (q - OFFSET)) (the panel's I), 4 rows
 * folded into the lanes of one vector, then the panel's float steps lane by lane (batch == decode, bit for bit). */
LLM_AVX512_INLINE void k16_rows_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out,
                                       const int ROWS, const int FORMAT) {
  const size_t block_bytes = K16_BLOCK_BYTES(FORMAT);
  const __m256i pair_spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3,
                                               2, 3, 2, 3, 2, 3, 2, 3);
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)x + b;
    const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb->bsums);
    __m256i sumi[4];
    uint16_t wd[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < 4; i++) {
      if (i >= ROWS) {
        sumi[i] = _mm256_setzero_si256();
        continue;
      }
      const uint8_t *wb = (const uint8_t *)w + i * w_stride + b * block_bytes;
      for (size_t line = 0; line < block_bytes; line += 64)
        _mm_prefetch((const char *)wb + LLM_DECODE_PREFETCH_ROWS * w_stride + line, _MM_HINT_T0);
      wd[i] = k16_d(wb, FORMAT);
      const __m256i scales16 = k16_scales16(wb, FORMAT);
      __m256i sum = _mm256_sub_epi32(_mm256_setzero_si256(),
                                     _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales16), K16_OFFSET_SHIFT(FORMAT)));
      for (int half = 0; half < 2; half++) {
        __m256i q[4];
        k16_unpack_half(wb, half, q, FORMAT);
        for (int k = 0; k < 4; k++) {
          const int pair = 4 * half + k;
          const __m256i scale =
              _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(scales16, _mm256_set1_epi32(pair)), pair_spread);
          const __m256i y = _mm256_loadu_si256((const __m256i *)(xb->qs + 128 * half + 32 * k));
          sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], y), scale));
        }
      }
      sumi[i] = sum;
    }
    const __m256i folded = llm_fold_4_rows(sumi[0], sumi[1], sumi[2], sumi[3]);
    const __m128i exact = _mm_add_epi32(_mm256_castsi256_si128(folded), _mm256_extracti128_si256(folded, 1));
    const __m128 d = llm_halves_4(wd[0], wd[1], wd[2], wd[3]);
    acc = _mm_fmadd_ps(_mm_mul_ps(_mm_cvtepi32_ps(exact), d), _mm_set1_ps(xb->d), acc);
  }
  float lanes[4];
  _mm_storeu_ps(lanes, acc);
  for (int i = 0; i < ROWS; i++) out[i] = lanes[i];
}

#endif

#endif
