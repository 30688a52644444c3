#ifndef LLM_QUANT_I8_H
#define LLM_QUANT_I8_H

/* What q8_0 and iq4_nl share: blocks of 32 values, value j = d * v_j with an f16 d first and signed byte values
 * v_j, stored as such (q8_0) or as 4-bit indices into the non-linear table llm_iq4nl_values (iq4_nl: byte j holds
 * v_j's index in its low nibble and v_(j+16)'s in its high nibble). Multiplied with q8_0 activations, signed byte
 * by signed byte. The kernels below take the format as a compile-time constant (FORMAT: I8_Q8_0 or I8_IQ4_NL;
 * they are always inlined), so each file's instances are specialised. */

#include <stddef.h>
#include <string.h>

#include "blocks.h"
#include "dot.h"
#include "quant.h"
#include "simd_avx2.h"
#include "simd_avx512.h"

enum { I8_Q8_0, I8_IQ4_NL };

_Static_assert(offsetof(struct llm_block_q8_0, d) == 0 && offsetof(struct llm_block_iq4_nl, d) == 0, "d comes first");

#define I8_BLOCK_BYTES(FORMAT) ((FORMAT) == I8_Q8_0 ? sizeof(struct llm_block_q8_0) : sizeof(struct llm_block_iq4_nl))

static inline uint16_t i8_d(const uint8_t *block) {
  uint16_t d;
  memcpy(&d, block, sizeof d);
  return d;
}

/* Value j (0..31) of a block as a signed byte. */
static inline int i8_value(const uint8_t *block, int j, const int FORMAT) {
  if (FORMAT == I8_Q8_0) return ((const struct llm_block_q8_0 *)block)->qs[j];
  const uint8_t byte = ((const struct llm_block_iq4_nl *)block)->qs[j % 16];
  return llm_iq4nl_values[j < 16 ? byte & 0x0f : byte >> 4];
}

static inline void i8_dequantize_row(const void *in, float *y, int64_t n, const int FORMAT) {
  for (int64_t b = 0; b < n / LLM_QK8_0; b++) {
    const uint8_t *block = (const uint8_t *)in + b * I8_BLOCK_BYTES(FORMAT);
    const float d = llm_f16_to_f32(i8_d(block));
    for (int j = 0; j < LLM_QK8_0; j++) *y++ = d * (float)i8_value(block, j, FORMAT);
  }
}

/* The integer dot product of each block, scaled by both block scales, summed in block order. */
static inline float i8_dot_q8_0(int64_t cols, const void *w_row, const void *x_row, const int FORMAT) {
  const struct llm_block_q8_0 *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    const uint8_t *block = (const uint8_t *)w_row + b * I8_BLOCK_BYTES(FORMAT);
    int32_t sumi = 0;
    for (int j = 0; j < LLM_QK8_0; j++) sumi += i8_value(block, j, FORMAT) * x[b].qs[j];
    sum += (float)sumi * (llm_f16_to_f32(i8_d(block)) * llm_f16_to_f32(x[b].d));
  }
  return sum;
}

#if LLM_HAVE_AVX2_KERNELS

/* The 32 values of 16 bytes of iq4 indices (low nibbles: values 0..15, high nibbles: 16..31) as signed bytes. */
LLM_AVX2_INLINE __m256i iq4_values_avx2(const uint8_t *qs) {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)llm_iq4nl_values));
  const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
  /* The high 128-bit lane shifted right by 4: its nibbles are values 16..31. */
  const __m256i nibbles = _mm256_and_si256(_mm256_srlv_epi32(both, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0f));
  return _mm256_shuffle_epi8(table, nibbles);
}

/* The 32 signed byte values of a block. */
LLM_AVX2_INLINE __m256i i8_values_avx2(const uint8_t *block, const int FORMAT) {
  if (FORMAT == I8_Q8_0) return _mm256_loadu_si256((const __m256i *)((const struct llm_block_q8_0 *)block)->qs);
  return iq4_values_avx2(((const struct llm_block_iq4_nl *)block)->qs);
}

/* Blocks ahead that the decode tile prefetches: ~1 KiB per row, more than the hardware prefetchers keep ahead
 * of with 4 interleaved streams. */
#define I8_PREFETCH_BLOCKS(FORMAT) ((FORMAT) == I8_Q8_0 ? 32 : 56)

/* Up to 4 rows x TOKENS tokens; each token's 4 row sums are folded into one vector per block (simd_avx2.h). */
LLM_AVX2_INLINE void i8_tile_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                  float *out, int64_t out_stride, const int ROWS, const int TOKENS, const int FORMAT) {
  const size_t block_bytes = I8_BLOCK_BYTES(FORMAT);
  __m256 acc[4];
  for (int j = 0; j < TOKENS; j++) acc[j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    __m256i wq[4];
    uint16_t wd[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < ROWS; i++) {
      const uint8_t *wb = (const uint8_t *)w + i * w_stride + b * block_bytes;
      if (TOKENS == 1) _mm_prefetch((const char *)wb + I8_PREFETCH_BLOCKS(FORMAT) * block_bytes, _MM_HINT_T0);
      wq[i] = i8_values_avx2(wb, FORMAT);
      wd[i] = i8_d(wb);
    }
    const __m256 row_scales = llm_halves_4_rows(wd[0], wd[1], wd[2], wd[3]);
    for (int j = 0; j < TOKENS; j++) {
      const struct llm_block_q8_0 *xb = (const struct llm_block_q8_0 *)((const char *)x + j * x_stride) + b;
      const __m256i xq = _mm256_loadu_si256((const __m256i *)xb->qs);
      __m256i sums[4];
      for (int i = 0; i < 4; i++) sums[i] = i < ROWS ? llm_dot_i8(wq[i], xq) : _mm256_setzero_si256();
      acc[j] = llm_accumulate_4_rows(acc[j], row_scales, llm_half_to_float(xb->d), sums);
    }
  }
  llm_store_4_rows(acc, TOKENS, ROWS, out, out_stride);
}

#endif

#if LLM_HAVE_AVX512_KERNELS

/* The panel of 16 rows, per block of 32 values: 8 vectors of |v| (vector g: values 4g..4g+3 of each row, row r in
 * lane r), the 8 masks of the negative ones (8 bytes each), and the f32 row scales. maddubs takes |v| as its
 * unsigned operand and the activations negated where v < 0 (a masked subtract: AVX-512 has no vpsignb). */
#define I8_PANEL_BLOCK (8 * 64 + 64 + 64)

static inline size_t i8_panel_bytes(int64_t cols) { return (size_t)(cols / LLM_QK8_0) * I8_PANEL_BLOCK; }

LLM_AVX512_INLINE void i8_pack(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel, const int FORMAT) {
  _Alignas(64) uint8_t staging[LLM_PANEL_ROWS][2 * LLM_QK8_0];
  memset(staging, 0, sizeof staging);
  const int64_t nb = cols / LLM_QK8_0;
  for (int64_t b0 = 0; b0 < nb; b0 += 2) {
    const int pair = nb - b0 >= 2 ? 2 : 1;
    for (int k = 0; k < pair; k++) {
      float *scale = (float *)((uint8_t *)panel + (b0 + k) * I8_PANEL_BLOCK + 576);
      for (int r = 0; r < LLM_PANEL_ROWS; r++) {
        if (r >= n_rows) {
          scale[r] = 0.0f;
          continue;
        }
        const uint8_t *blk = (const uint8_t *)w + r * w_stride + (b0 + k) * I8_BLOCK_BYTES(FORMAT);
        _mm256_store_si256((__m256i *)(staging[r] + 32 * k), i8_values_avx2(blk, FORMAT));
        scale[r] = _cvtsh_ss(i8_d(blk));
      }
    }
    __m512i v[16];
    llm_transpose_16x16(&staging[0][0], 2 * LLM_QK8_0, v);
    for (int k = 0; k < pair; k++) {
      uint8_t *pb = (uint8_t *)panel + (b0 + k) * I8_PANEL_BLOCK;
      for (int g = 0; g < 8; g++) {
        const uint64_t negative = _cvtmask64_u64(_mm512_movepi8_mask(v[8 * k + g]));
        memcpy(pb + 512 + 8 * g, &negative, sizeof negative);
        _mm512_store_si512((__m512i *)(pb + 64 * g), _mm512_abs_epi8(v[8 * k + g]));
      }
    }
  }
}

LLM_AVX512_INLINE void i8_gemm_tile(int64_t cols, const uint8_t *panel, const uint8_t *x, size_t x_stride, float *out,
                                    int64_t out_stride, __mmask16 mask, const int TOKENS) {
  const __m512i ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
  __m512 acc[8];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    const uint8_t *pb = panel + b * I8_PANEL_BLOCK;
    __m512i sum[8];
    for (int g = 0; g < 8; g++) {
      const __m512i wv = _mm512_load_si512((const __m512i *)(pb + 64 * g));
      uint64_t bits;
      memcpy(&bits, pb + 512 + 8 * g, sizeof bits);
      const __mmask64 negative = _cvtu64_mask64(bits);
      for (int t = 0; t < TOKENS; t++) {
        const __m512i xv = llm_bcast4(x + t * x_stride + b * LLM_QK8_0 + 4 * g);
        const __m512i m = _mm512_madd_epi16(_mm512_maddubs_epi16(wv, _mm512_mask_sub_epi8(xv, negative, zero, xv)), ones);
        sum[t] = g == 0 ? m : _mm512_add_epi32(sum[t], m);
      }
    }
    const __m512 scale = _mm512_load_ps((const float *)(pb + 576));
    for (int t = 0; t < TOKENS; t++) {
      const float xd = ((const float *)(x + t * x_stride + cols))[b];
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sum[t]), scale), _mm512_set1_ps(xd), acc[t]);
    }
  }
  for (int t = 0; t < TOKENS; t++) _mm512_mask_storeu_ps(out + t * out_stride, mask, acc[t]);
}

LLM_AVX512_INLINE void i8_gemm(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                               int64_t out_stride, int n_rows, int n_tokens) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
#define I8_TILE(first, TOKENS) i8_gemm_tile(cols, panel, xs + (first) * x_stride, x_stride, out + (first) * out_stride, out_stride, mask, TOKENS)
  LLM_AVX512_TOKEN_TILES(n_tokens, 8, I8_TILE);
#undef I8_TILE
}

/* Decode: per block and row the exact integer sum(x v), 4 rows folded into the lanes of one vector, then the
 * panel's float steps lane by lane (batch == decode, bit for bit). */
LLM_AVX512_INLINE void i8_rows_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out,
                                      const int ROWS, const int FORMAT) {
  const struct llm_block_q8_0 *xb = x;
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    const __m256i xq = _mm256_loadu_si256((const __m256i *)xb[b].qs);
    __m256i sums[4];
    uint16_t wd[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < 4; i++) {
      if (i >= ROWS) {
        sums[i] = _mm256_setzero_si256();
        continue;
      }
      const uint8_t *wb = (const uint8_t *)w + i * w_stride + b * I8_BLOCK_BYTES(FORMAT);
      _mm_prefetch((const char *)wb + LLM_DECODE_PREFETCH_ROWS * w_stride, _MM_HINT_T0);
      sums[i] = llm_dot_i8(i8_values_avx2(wb, FORMAT), xq);
      wd[i] = i8_d(wb);
    }
    const __m256i folded = llm_fold_4_rows(sums[0], sums[1], sums[2], sums[3]);
    const __m128i exact = _mm_add_epi32(_mm256_castsi256_si128(folded), _mm256_extracti128_si256(folded, 1));
    const __m128 scales = llm_halves_4(wd[0], wd[1], wd[2], wd[3]);
    acc = _mm_fmadd_ps(_mm_mul_ps(_mm_cvtepi32_ps(exact), scales), _mm_set1_ps(_cvtsh_ss(xb[b].d)), acc);
  }
  float lanes[4];
  _mm_storeu_ps(lanes, acc);
  for (int i = 0; i < ROWS; i++) out[i] = lanes[i];
}

#endif

#endif
