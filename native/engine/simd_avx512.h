#ifndef LLM_SIMD_AVX512_H
#define LLM_SIMD_AVX512_H

/* Helpers shared by the AVX-512 kernels (F, BW, VL, DQ), compiled through function attributes
 * (cpu_features.h) like the AVX2 ones. */

#include <string.h>

#include "cpu_features.h"

#if LLM_HAVE_AVX512_KERNELS
#include <immintrin.h>

#define LLM_AVX512_INLINE static inline __attribute__((always_inline)) LLM_TARGET_AVX512

/* Rows of a panel: one 32-bit lane of a zmm per weight row. */
#define LLM_PANEL_ROWS 16

/* Sum of the 8 int32 lanes (exact: the order of integer additions does not matter). */
LLM_AVX512_INLINE int32_t llm_hsum_epi32(__m256i v) {
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
  return _mm_cvtsi128_si32(h);
}

/* acc + a * b rounded once, and a * b: the scalar twins of the panel kernels' per-lane float steps, so that a
 * decode kernel reproduces a panel kernel's result bit for bit. */
LLM_AVX512_INLINE float llm_fma1(float a, float b, float acc) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(acc)));
}
LLM_AVX512_INLINE float llm_mul1(float a, float b) { return _mm_cvtss_f32(_mm_mul_ss(_mm_set_ss(a), _mm_set_ss(b))); }

/* Where the quantized decode kernels prefetch weights: the same place in the rows of the next group of 4 (the
 * tile's step), which are read next, so the distance is one group's time whatever the row length. On weights
 * streamed from DRAM (TinyLlama's shapes, 1 and 2 threads) this beat a fixed ~1 KiB ahead per row by 15-40%
 * (q6_K: 75%). */
#define LLM_DECODE_PREFETCH_ROWS 4

/* A panel kernel's tokens in tiles of `widest` (8 or 4), then 4, 2 and 1: TILE(first_token, TOKENS) runs one tile
 * with a constant TOKENS, so that each always-inline instance unrolls over its tokens. */
#define LLM_AVX512_TOKEN_TILES(n_tokens, widest, TILE)                       \
  do {                                                                       \
    int first_ = 0;                                                          \
    for (; first_ + (widest) <= (n_tokens); first_ += (widest)) TILE(first_, widest); \
    if ((widest) > 4 && first_ + 4 <= (n_tokens)) {                          \
      TILE(first_, 4);                                                       \
      first_ += 4;                                                           \
    }                                                                        \
    if (first_ + 2 <= (n_tokens)) {                                          \
      TILE(first_, 2);                                                       \
      first_ += 2;                                                           \
    }                                                                        \
    if (first_ < (n_tokens)) TILE(first_, 1);                                \
  } while (0)

/* The decode tile of a panel kernel: rows four at a time, then one at a time, through the always-inline
 * rows(cols, w, w_stride, x, out, ROWS), which must give exactly what the panel kernel gives for each row and
 * token (so a token's logits do not depend on the batch it came in). */
#define LLM_DEFINE_AVX512_DECODE_TILE(name, rows)                                                                  \
  LLM_TARGET_AVX512 static void name(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                     float *out, int64_t out_stride, int n_rows, int n_tokens) {                   \
    for (int j = 0; j < n_tokens; j++) {                                                                           \
      const void *xj = (const char *)x + j * x_stride;                                                             \
      int i = 0;                                                                                                   \
      for (; i + 4 <= n_rows; i += 4) rows(cols, (const char *)w + i * w_stride, w_stride, xj, out + j * out_stride + i, 4); \
      for (; i < n_rows; i++) rows(cols, (const char *)w + i * w_stride, w_stride, xj, out + j * out_stride + i, 1);        \
    }                                                                                                              \
  }

/* Four bytes at p broadcast to every 32-bit lane (one vpbroadcastd from memory). */
LLM_AVX512_INLINE __m512i llm_bcast4(const uint8_t *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return _mm512_set1_epi32(v);
}

/* The panel transpose: 16 rows of 16 dwords (row r at staging + r * row_bytes) to 16 vectors, vector d holding
 * dword d of every row (row r in lane r). Four rounds of 16 shuffles (unpack 32, unpack 64, two 128-bit lane
 * shuffles), no gathers. */
LLM_AVX512_INLINE void llm_transpose_16x16_regs(const __m512i rows[16], __m512i out[16]) {
  __m512i a[16], b[16];
  for (int k = 0; k < 8; k++) {
    a[2 * k] = _mm512_unpacklo_epi32(rows[2 * k], rows[2 * k + 1]);
    a[2 * k + 1] = _mm512_unpackhi_epi32(rows[2 * k], rows[2 * k + 1]);
  }
  /* b[4m + e], 128-bit lane L: dword 4L + e of rows 4m..4m+3. */
  for (int m = 0; m < 4; m++) {
    b[4 * m + 0] = _mm512_unpacklo_epi64(a[4 * m], a[4 * m + 2]);
    b[4 * m + 1] = _mm512_unpackhi_epi64(a[4 * m], a[4 * m + 2]);
    b[4 * m + 2] = _mm512_unpacklo_epi64(a[4 * m + 1], a[4 * m + 3]);
    b[4 * m + 3] = _mm512_unpackhi_epi64(a[4 * m + 1], a[4 * m + 3]);
  }
  for (int e = 0; e < 4; e++) {
    const __m512i p0 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0x88), p1 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0xdd);
    const __m512i q0 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0x88), q1 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0xdd);
    out[0 + e] = _mm512_shuffle_i32x4(p0, q0, 0x88);
    out[8 + e] = _mm512_shuffle_i32x4(p0, q0, 0xdd);
    out[4 + e] = _mm512_shuffle_i32x4(p1, q1, 0x88);
    out[12 + e] = _mm512_shuffle_i32x4(p1, q1, 0xdd);
  }
}

LLM_AVX512_INLINE void llm_transpose_16x16(const uint8_t *staging, int row_bytes, __m512i out[16]) {
  __m512i rows[16];
  for (int r = 0; r < 16; r++) rows[r] = _mm512_loadu_si512((const void *)(staging + r * row_bytes));
  llm_transpose_16x16_regs(rows, out);
}

/* staging holds LLM_PANEL_ROWS rows of row_bytes bytes each (a multiple of 64); writes row_bytes / 4 vectors to
 * out, vector g holding bytes 4g..4g+3 of every row (row r in lane r). */
LLM_AVX512_INLINE void llm_panel_transpose(const uint8_t *staging, int row_bytes, uint8_t *out) {
  for (int first = 0; first < row_bytes / 4; first += 16) {
    __m512i v[16];
    llm_transpose_16x16(staging + 4 * first, row_bytes, v);
    for (int g = 0; g < 16; g++) _mm512_store_si512((__m512i *)(out + 64 * (first + g)), v[g]);
  }
}
#endif

#endif
