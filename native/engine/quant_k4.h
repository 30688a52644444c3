#ifndef LLM_QUANT_K4_H
#define LLM_QUANT_K4_H

/* What q4_K and q5_K share: the same super-block of 8 sub-blocks of 32 with a 6-bit scale and min each, d, dmin
 * and the 12 scale bytes at the same offsets (blocks.h), value = d * scale_s * q - dmin * min_s; q4_K's q is the
 * 4-bit nibble, q5_K's adds a fifth bit from qh. The kernels below take the format as compile-time constants
 * (FIVE_BITS: 0 for q4_K, 1 for q5_K; they are always inlined), so each file's instances are specialised.
 * Bytes 32k..32k+31 of qs hold sub-block 2k in their low nibbles and sub-block 2k+1 in their high nibbles; bit
 * s of qh[l] is the fifth bit of value l of sub-block s. */

#include <stddef.h>
#include <string.h>

#include "blocks.h"
#include "dot.h"
#include "simd_avx2.h"
#include "simd_avx512.h"

_Static_assert(offsetof(struct llm_block_q5_K, d) == offsetof(struct llm_block_q4_K, d) &&
                   offsetof(struct llm_block_q5_K, dmin) == offsetof(struct llm_block_q4_K, dmin) &&
                   offsetof(struct llm_block_q5_K, scales) == offsetof(struct llm_block_q4_K, scales),
               "q4_K and q5_K start with the same d, dmin and scales");

#define K4_BLOCK_BYTES(FIVE_BITS) ((FIVE_BITS) ? sizeof(struct llm_block_q5_K) : sizeof(struct llm_block_q4_K))
#define K4_QS(FIVE_BITS) ((FIVE_BITS) ? offsetof(struct llm_block_q5_K, qs) : offsetof(struct llm_block_q4_K, qs))
#define K4_QH offsetof(struct llm_block_q5_K, qh)

/* d, dmin and the scales of a q4_K or q5_K block, which sit where q4_K's do. */
static inline const struct llm_block_q4_K *k4_head(const uint8_t *block) { return (const struct llm_block_q4_K *)block; }

/* The 8 scales then the 8 mins of a block, each 6 bits: the first four of each are the low 6 bits of bytes
 * 0-3 (scales) and 4-7 (mins); the last four take their low 4 bits from the nibbles of bytes 8-11 and their top
 * 2 bits from the top bits of bytes 0-3 (scales) and 4-7 (mins). Four bytes at a time, in little-endian words. */
static inline void unpack_scales_mins(const uint8_t packed[LLM_K_SCALE_BYTES], uint8_t out[16]) {
  uint32_t in[3], words[4];
  memcpy(in, packed, sizeof in);
  words[0] = in[0] & 0x3f3f3f3f;
  words[1] = (in[2] & 0x0f0f0f0f) | ((in[0] >> 6) & 0x03030303) << 4;
  words[2] = in[1] & 0x3f3f3f3f;
  words[3] = ((in[2] >> 4) & 0x0f0f0f0f) | ((in[1] >> 6) & 0x03030303) << 4;
  memcpy(out, words, sizeof words);
}

/* Value i (0..255) of a block: the unsigned 4- or 5-bit q, whose sub-block is i / 32. */
static inline int k4_value(const uint8_t *block, int i, const int FIVE_BITS) {
  const uint8_t byte = block[K4_QS(FIVE_BITS) + 32 * (i / 64) + i % 32];
  const int q = (i % 64) < 32 ? byte & 0x0f : byte >> 4;
  return FIVE_BITS ? q | ((block[K4_QH + i % 32] >> (i / 32)) & 1) << 4 : q;
}

static inline void k4_dequantize_row(const void *in, float *y, int64_t n, const int FIVE_BITS) {
  for (int64_t b = 0; b < n / LLM_QK_K; b++) {
    const uint8_t *block = (const uint8_t *)in + b * K4_BLOCK_BYTES(FIVE_BITS);
    uint8_t sm[16];
    unpack_scales_mins(k4_head(block)->scales, sm);
    const float d = llm_f16_to_f32(k4_head(block)->d), dmin = llm_f16_to_f32(k4_head(block)->dmin);
    for (int i = 0; i < LLM_QK_K; i++) *y++ = d * sm[i / 32] * (float)k4_value(block, i, FIVE_BITS) - dmin * sm[8 + i / 32];
  }
}

/* sum_i (d sc q_i - dmin m) y_i = d * sum_s sc_s (q . y)_s - dmin * sum_s m_s (sum of y over s): integers per
 * block, then two float terms. */
static inline float k4_dot_q8_K(int64_t cols, const void *w_row, const void *x_row, const int FIVE_BITS) {
  const struct llm_block_q8_K *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    const uint8_t *block = (const uint8_t *)w_row + b * K4_BLOCK_BYTES(FIVE_BITS);
    uint8_t sm[16];
    unpack_scales_mins(k4_head(block)->scales, sm);
    int32_t sumi = 0, sum_mins = 0;
    for (int s = 0; s < 8; s++) {
      int32_t sub = 0;
      for (int l = 0; l < 32; l++) sub += k4_value(block, 32 * s + l, FIVE_BITS) * x[b].qs[32 * s + l];
      sumi += sm[s] * sub;
      sum_mins += sm[8 + s] * (x[b].bsums[2 * s] + x[b].bsums[2 * s + 1]);
    }
    sum += x[b].d * (llm_f16_to_f32(k4_head(block)->d) * (float)sumi - llm_f16_to_f32(k4_head(block)->dmin) * (float)sum_mins);
  }
  return sum;
}

#if LLM_HAVE_AVX2_KERNELS

/* Bytes of h whose bit `bit` is set become 16 (the fifth bit of q), the others 0. */
LLM_AVX2_INLINE __m256i k4_fifth_bit(__m256i h, int bit) {
  const __m256i mask = _mm256_set1_epi8((char)(1 << bit));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, mask), mask), _mm256_set1_epi8(16));
}

/* Quarter k (64 values) of a block: its sub-blocks 2k and 2k+1 as unsigned bytes (k is a constant once
 * unrolled). Shared by the AVX2 tile and the AVX-512 panel packing, so that they unpack identically. */
struct k4_quarter {
  __m256i lo, hi;
};

LLM_AVX2_INLINE struct k4_quarter unpack_k4_quarter(const uint8_t *block, int k, const int FIVE_BITS) {
  const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
  const __m256i packed = _mm256_loadu_si256((const __m256i *)(block + K4_QS(FIVE_BITS) + 32 * k));
  struct k4_quarter q = { _mm256_and_si256(packed, low_nibbles), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles) };
  if (FIVE_BITS) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)(block + K4_QH));
    q.lo = _mm256_or_si256(q.lo, k4_fifth_bit(h, 2 * k));
    q.hi = _mm256_or_si256(q.hi, k4_fifth_bit(h, 2 * k + 1));
  }
  return q;
}

/* The int16 scale of sub-block s in every 16-bit lane, from the 8 scales as int16 in each 128-bit half. */
LLM_AVX2_INLINE __m256i k4_scale(__m256i scales16, int s) {
  return _mm256_shuffle_epi8(scales16, _mm256_set1_epi16((short)(0x0202 * s + 0x0100)));
}

/* Per row and block: the 8 scales as int16 broadcasts, the 8 mins repeated in pairs to meet the 16 bsums of
 * each token. Per row and token: maddubs/madd per sub-block into int32, then the two float terms. */
LLM_AVX2_INLINE void k4_tile_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                  float *out, int64_t out_stride, const int ROWS, const int TOKENS, const int FIVE_BITS) {
  const size_t block_bytes = K4_BLOCK_BYTES(FIVE_BITS);
  const size_t prefetch = (1024 + block_bytes / 2) / block_bytes * block_bytes; /* ~1 KiB ahead per row, whole blocks */
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
      wd[i] = llm_half_to_float(k4_head(wb)->d);
      wdmin[i] = llm_half_to_float(k4_head(wb)->dmin);
      uint8_t sm[16];
      unpack_scales_mins(k4_head(wb)->scales, sm);
      const __m128i scales_mins = _mm_loadu_si128((const __m128i *)sm);
      const __m128i mins = _mm_srli_si128(scales_mins, 8);
      const __m256i mins_in_pairs = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins, mins));
      const __m256i scales16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scales_mins));
      for (int j = 0; j < TOKENS; j++) {
        const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b;
        sum_mins[i][j] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), mins_in_pairs);
        sumi[i][j] = _mm256_setzero_si256();
      }
      for (int k = 0; k < 4; k++) {
        const struct k4_quarter q = unpack_k4_quarter(wb, k, FIVE_BITS);
        const __m256i scale_lo = k4_scale(scales16, 2 * k), scale_hi = k4_scale(scales16, 2 * k + 1);
        for (int j = 0; j < TOKENS; j++) {
          const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b;
          const __m256i y_lo = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * k));
          const __m256i y_hi = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * k + 32));
          const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(q.lo, y_lo), scale_lo);
          const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(q.hi, y_hi), scale_hi);
          sumi[i][j] = _mm256_add_epi32(sumi[i][j], _mm256_add_epi32(p_lo, p_hi));
        }
      }
    }
    for (int j = 0; j < TOKENS; j++) {
      const float xd = ((const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b)->d;
      for (int i = 0; i < ROWS; i++) {
        acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(wd[i] * xd), _mm256_cvtepi32_ps(sumi[i][j]), acc[i][j]);
        acc[i][j] = _mm256_fnmadd_ps(_mm256_set1_ps(wdmin[i] * xd), _mm256_cvtepi32_ps(sum_mins[i][j]), acc[i][j]);
      }
    }
  }
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) out[j * out_stride + i] = llm_hsum_ps(acc[i][j]);
}

#endif

#if LLM_HAVE_AVX512_KERNELS

/* The panel of 16 rows, per super-block: for each of the 8 sub-blocks, 8 vectors of the signed values
 * q - OFFSET (OFFSET = 8 for 4-bit q, 16 for 5-bit; vector g: values 4g..4g+3 of the sub-block, row r in lane r);
 * per sub-block the row scales as int16 pairs; per row 128 * sum_s scale_s * sum(q - OFFSET) as int32 (the
 * activations come biased by +128), d and dmin; then the scales and the mins of sub-blocks 2k, 2k+1 as int16
 * pairs, which madd meets with the activation sums (dot.h). With w' = q - OFFSET and x + 128 as maddubs'
 * operands, sum x q = sum (x + 128) w' + OFFSET sum x - 128 sum w'. Per row and token: I = sum_s scale_s
 * sum(x q) and M = sum_s min_s sum(x) exactly, then x_d * (d * I - dmin * M) in f32 (the decode kernel takes
 * the same steps). */
#define K4_PANEL_W 0
#define K4_PANEL_SCALES (64 * 64)
#define K4_PANEL_CORR (K4_PANEL_SCALES + 8 * 64)
#define K4_PANEL_D (K4_PANEL_CORR + 64)
#define K4_PANEL_DMIN (K4_PANEL_D + 64)
#define K4_PANEL_SCALE_PAIRS (K4_PANEL_DMIN + 64)
#define K4_PANEL_MIN_PAIRS (K4_PANEL_SCALE_PAIRS + 4 * 64)
#define K4_PANEL_BLOCK (K4_PANEL_MIN_PAIRS + 4 * 64)
#define K4_OFFSET_SHIFT(FIVE_BITS) ((FIVE_BITS) ? 4 : 3) /* log2 of OFFSET */

static inline size_t k4_panel_bytes(int64_t cols) { return (size_t)(cols / LLM_QK_K) * K4_PANEL_BLOCK; }

LLM_AVX512_INLINE void k4_pack(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel, const int FIVE_BITS) {
  const __m256i offset = _mm256_set1_epi8((char)(1 << K4_OFFSET_SHIFT(FIVE_BITS))), ones16 = _mm256_set1_epi16(1);
  _Alignas(64) uint8_t staging[LLM_PANEL_ROWS][LLM_QK_K];
  memset(staging, 0, sizeof staging);
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    uint8_t *pb = (uint8_t *)panel + b * K4_PANEL_BLOCK;
    int16_t *scales = (int16_t *)(pb + K4_PANEL_SCALES);
    int16_t *scale_pairs = (int16_t *)(pb + K4_PANEL_SCALE_PAIRS), *min_pairs = (int16_t *)(pb + K4_PANEL_MIN_PAIRS);
    int32_t *corr = (int32_t *)(pb + K4_PANEL_CORR);
    float *d = (float *)(pb + K4_PANEL_D), *dmin = (float *)(pb + K4_PANEL_DMIN);
    for (int r = 0; r < LLM_PANEL_ROWS; r++) {
      uint8_t sm[16] = { 0 };
      if (r < n_rows) {
        const uint8_t *blk = (const uint8_t *)w + r * w_stride + b * K4_BLOCK_BYTES(FIVE_BITS);
        unpack_scales_mins(k4_head(blk)->scales, sm);
        __m256i weighted = _mm256_setzero_si256(); /* sum_s scale_s * sum q, in int32 lanes */
        for (int k = 0; k < 4; k++) {
          const struct k4_quarter q = unpack_k4_quarter(blk, k, FIVE_BITS);
          _mm256_store_si256((__m256i *)(staging[r] + 64 * k), _mm256_sub_epi8(q.lo, offset));
          _mm256_store_si256((__m256i *)(staging[r] + 64 * k + 32), _mm256_sub_epi8(q.hi, offset));
          weighted = _mm256_add_epi32(weighted, _mm256_madd_epi16(_mm256_maddubs_epi16(q.lo, _mm256_set1_epi8((char)sm[2 * k])), ones16));
          weighted = _mm256_add_epi32(weighted, _mm256_madd_epi16(_mm256_maddubs_epi16(q.hi, _mm256_set1_epi8((char)sm[2 * k + 1])), ones16));
        }
        int scale_sum = 0;
        for (int s = 0; s < 8; s++) scale_sum += sm[s];
        corr[r] = 128 * (llm_hsum_epi32(weighted) - (32 << K4_OFFSET_SHIFT(FIVE_BITS)) * scale_sum);
        d[r] = _cvtsh_ss(k4_head(blk)->d);
        dmin[r] = _cvtsh_ss(k4_head(blk)->dmin);
      } else {
        corr[r] = 0;
        d[r] = dmin[r] = 0.0f;
      }
      for (int s = 0; s < 8; s++) {
        scales[s * 32 + 2 * r] = scales[s * 32 + 2 * r + 1] = sm[s];
        scale_pairs[(s / 2) * 32 + 2 * r + s % 2] = sm[s];
        min_pairs[(s / 2) * 32 + 2 * r + s % 2] = sm[8 + s];
      }
    }
    llm_panel_transpose(&staging[0][0], LLM_QK_K, pb + K4_PANEL_W);
  }
}

/* The int16 sums of maddubs over a sub-block's 8 vectors stay below 2^15 for |q - OFFSET| <= 8 (16 products
 * of at most 255 * 8 per lane); 5-bit values (|q - 16| <= 16) go to int32 every 4 vectors. */
LLM_AVX512_INLINE void k4_gemm_tile(int64_t cols, const uint8_t *panel, const uint8_t *x, size_t x_stride, float *out,
                                    int64_t out_stride, __mmask16 mask, const int TOKENS, const int FIVE_BITS) {
  const int64_t nb = cols / LLM_QK_K;
  const int groups_per_madd = FIVE_BITS ? 4 : 8;
  __m512 acc[4];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *pb = panel + b * K4_PANEL_BLOCK;
    __m512i sum[4];
    for (int t = 0; t < TOKENS; t++) sum[t] = _mm512_setzero_si512();
    for (int s = 0; s < 8; s++) {
      const __m512i scale = _mm512_load_si512((const __m512i *)(pb + K4_PANEL_SCALES + 64 * s));
      for (int g0 = 0; g0 < 8; g0 += groups_per_madd) {
        __m512i p[4];
        for (int g = g0; g < g0 + groups_per_madd; g++) {
          const __m512i wv = _mm512_load_si512((const __m512i *)(pb + K4_PANEL_W + 64 * (8 * s + g)));
          for (int t = 0; t < TOKENS; t++) {
            const __m512i m = _mm512_maddubs_epi16(llm_bcast4(x + t * x_stride + b * LLM_QK_K + 32 * s + 4 * g), wv);
            p[t] = g == g0 ? m : _mm512_add_epi16(p[t], m);
          }
        }
        for (int t = 0; t < TOKENS; t++) sum[t] = _mm512_add_epi32(sum[t], _mm512_madd_epi16(p[t], scale));
      }
    }
    const __m512i corr = _mm512_load_si512((const __m512i *)(pb + K4_PANEL_CORR));
    const __m512 d = _mm512_load_ps((const float *)(pb + K4_PANEL_D)), dmin = _mm512_load_ps((const float *)(pb + K4_PANEL_DMIN));
    for (int t = 0; t < TOKENS; t++) {
      const uint8_t *xt = x + t * x_stride;
      const uint8_t *xsums = xt + cols + nb * sizeof(float) + b * 8 * sizeof(int16_t);
      __m512i scaled_sums = _mm512_setzero_si512(), min_sums = _mm512_setzero_si512();
      for (int k = 0; k < 4; k++) {
        const __m512i pair = llm_bcast4(xsums + 4 * k);
        scaled_sums = _mm512_add_epi32(scaled_sums, _mm512_madd_epi16(_mm512_load_si512((const __m512i *)(pb + K4_PANEL_SCALE_PAIRS + 64 * k)), pair));
        min_sums = _mm512_add_epi32(min_sums, _mm512_madd_epi16(_mm512_load_si512((const __m512i *)(pb + K4_PANEL_MIN_PAIRS + 64 * k)), pair));
      }
      const __m512i exact = _mm512_add_epi32(_mm512_sub_epi32(sum[t], corr), _mm512_slli_epi32(scaled_sums, K4_OFFSET_SHIFT(FIVE_BITS)));
      const __m512 term = _mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(exact), d), _mm512_mul_ps(_mm512_cvtepi32_ps(min_sums), dmin));
      acc[t] = _mm512_fmadd_ps(term, _mm512_set1_ps(((const float *)(xt + cols))[b]), acc[t]);
    }
  }
  for (int t = 0; t < TOKENS; t++) _mm512_mask_storeu_ps(out + t * out_stride, mask, acc[t]);
}

LLM_AVX512_INLINE void k4_gemm(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                               int64_t out_stride, int n_rows, int n_tokens, const int FIVE_BITS) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
#define K4_TILE(first, TOKENS) k4_gemm_tile(cols, panel, xs + (first) * x_stride, x_stride, out + (first) * out_stride, out_stride, mask, TOKENS, FIVE_BITS)
  LLM_AVX512_TOKEN_TILES(n_tokens, 4, K4_TILE);
#undef K4_TILE
}

/* Decode: per super-block and row the exact integers I = sum_s scale_s sum(x q) and M = sum_s min_s sum(x), 4
 * rows folded into the lanes of one vector each, then the panel's float steps lane by lane (batch == decode,
 * bit for bit). The integer products run two rows per zmm (row 2p in the low half, 2p + 1 in the high half,
 * the activations broadcast to both), so each unpack, maddubs and madd serves two rows. */
LLM_AVX512_INLINE void k4_rows_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out,
                                      const int ROWS, const int FIVE_BITS) {
  const size_t block_bytes = K4_BLOCK_BYTES(FIVE_BITS);
  const __m512i low_nibbles = _mm512_set1_epi8(0x0f), sixteen = _mm512_set1_epi8(16);
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)x + b;
    const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb->bsums);
    const uint8_t *wb[4] = { NULL, NULL, NULL, NULL };
    __m256i scales16[4], mins[4], sumi[4];
    uint16_t wd[4] = { 0, 0, 0, 0 }, wdmin[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < 4; i++) {
      if (i >= ROWS) {
        scales16[i] = mins[i] = _mm256_setzero_si256();
        continue;
      }
      wb[i] = (const uint8_t *)w + i * w_stride + b * block_bytes;
      for (size_t line = 0; line < block_bytes; line += 64)
        _mm_prefetch((const char *)wb[i] + LLM_DECODE_PREFETCH_ROWS * w_stride + line, _MM_HINT_T0);
      uint8_t sm[16];
      unpack_scales_mins(k4_head(wb[i])->scales, sm);
      wd[i] = k4_head(wb[i])->d;
      wdmin[i] = k4_head(wb[i])->dmin;
      const __m128i scales_mins = _mm_loadu_si128((const __m128i *)sm);
      const __m128i min_bytes = _mm_srli_si128(scales_mins, 8);
      mins[i] = _mm256_madd_epi16(bsums, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(min_bytes, min_bytes)));
      scales16[i] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scales_mins));
    }
    for (int p = 0; p < 2; p++) {
      const int r0 = 2 * p, r1 = 2 * p + 1;
      if (r0 >= ROWS) {
        sumi[r0] = sumi[r1] = _mm256_setzero_si256();
        continue;
      }
      const __m512i scales = _mm512_inserti64x4(_mm512_castsi256_si512(scales16[r0]), scales16[r1], 1);
      __m512i high = _mm512_setzero_si512();
      if (FIVE_BITS) {
        const __m256i h0 = _mm256_loadu_si256((const __m256i *)(wb[r0] + K4_QH));
        const __m256i h1 = r1 < ROWS ? _mm256_loadu_si256((const __m256i *)(wb[r1] + K4_QH)) : _mm256_setzero_si256();
        high = _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1);
      }
      __m512i sum = _mm512_setzero_si512();
      for (int k = 0; k < 4; k++) {
        const __m256i q0 = _mm256_loadu_si256((const __m256i *)(wb[r0] + K4_QS(FIVE_BITS) + 32 * k));
        const __m256i q1 = r1 < ROWS ? _mm256_loadu_si256((const __m256i *)(wb[r1] + K4_QS(FIVE_BITS) + 32 * k)) : _mm256_setzero_si256();
        const __m512i packed = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
        __m512i lo = _mm512_and_si512(packed, low_nibbles);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles);
        if (FIVE_BITS) {
          lo = _mm512_or_si512(lo, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(high, _mm512_set1_epi8((char)(1 << (2 * k)))), sixteen));
          hi = _mm512_or_si512(hi, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(high, _mm512_set1_epi8((char)(2 << (2 * k)))), sixteen));
        }
        const __m512i scale_lo = _mm512_shuffle_epi8(scales, _mm512_set1_epi16((short)(0x0202 * (2 * k) + 0x0100)));
        const __m512i scale_hi = _mm512_shuffle_epi8(scales, _mm512_set1_epi16((short)(0x0202 * (2 * k + 1) + 0x0100)));
        const __m512i y_lo = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xb->qs + 64 * k)));
        const __m512i y_hi = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xb->qs + 64 * k + 32)));
        sum = _mm512_add_epi32(sum, _mm512_madd_epi16(_mm512_maddubs_epi16(lo, y_lo), scale_lo));
        sum = _mm512_add_epi32(sum, _mm512_madd_epi16(_mm512_maddubs_epi16(hi, y_hi), scale_hi));
      }
      sumi[r0] = _mm512_castsi512_si256(sum);
      sumi[r1] = _mm512_extracti64x4_epi64(sum, 1);
    }
    const __m256i folded = llm_fold_4_rows(sumi[0], sumi[1], sumi[2], sumi[3]);
    const __m256i folded_mins = llm_fold_4_rows(mins[0], mins[1], mins[2], mins[3]);
    const __m128i exact = _mm_add_epi32(_mm256_castsi256_si128(folded), _mm256_extracti128_si256(folded, 1));
    const __m128i exact_mins = _mm_add_epi32(_mm256_castsi256_si128(folded_mins), _mm256_extracti128_si256(folded_mins, 1));
    const __m128 d = llm_halves_4(wd[0], wd[1], wd[2], wd[3]);
    const __m128 dmin = llm_halves_4(wdmin[0], wdmin[1], wdmin[2], wdmin[3]);
    const __m128 term = _mm_sub_ps(_mm_mul_ps(_mm_cvtepi32_ps(exact), d), _mm_mul_ps(_mm_cvtepi32_ps(exact_mins), dmin));
    acc = _mm_fmadd_ps(term, _mm_set1_ps(xb->d), acc);
  }
  float lanes[4];
  _mm_storeu_ps(lanes, acc);
  for (int i = 0; i < ROWS; i++) out[i] = lanes[i];
}

#endif

#endif
