/* q4_0: blocks of 32 values, value j = d * (q_j - 8) with 4-bit q_j: byte j holds q_j in its low nibble and
 * q_(j+16) in its high nibble (18 bytes per block). Multiplied with q8_0 activations: the scalar and AVX2 kernels
 * are shared with q4_1, q5_0 and q5_1 (quant_b32.h); the AVX-512 decode rows and panel are q4_0's own. */
#include <math.h>

#include "quant.h"
#include "quant_b32.h"
#include "simd_avx512.h"

/* ggml's quantize_row_q4_0_ref to the bit: the value of largest magnitude keeps its sign and maps to -8
 * (d = max / -8), so the opposite end reaches +7 after clamping; x/d + 8.5 truncated is round-half-up. */
void llm_quantize_row_q4_0_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q4_0 *y = out;
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

void llm_dequantize_row_q4_0(const void *in, float *y, int64_t n) { b32_dequantize_row(in, y, n, B32_Q4_0); }

static float dot_q4_0_q8_0(int64_t cols, const void *w_row, const void *x_row) { return b32_dot_q8_0(cols, w_row, x_row, B32_Q4_0); }

LLM_DEFINE_SCALAR_TILE(tile_q4_0_scalar, dot_q4_0_q8_0)
const struct llm_dot_kernel llm_dot_q4_0_scalar = { LLM_ACTIVATION_Q8_0, 1, 1, tile_q4_0_scalar };

#if LLM_HAVE_AVX2_KERNELS

LLM_AVX2_INLINE void tile_q4_0_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  b32_tile_avx2(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, B32_Q4_0);
}

LLM_DEFINE_AVX2_TILE(tile_q4_0_avx2_dispatch, tile_q4_0_avx2, 4, 4)
const struct llm_dot_kernel llm_dot_q4_0_avx2 = { LLM_ACTIVATION_Q8_0, 4, 4, tile_q4_0_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

/* The panel of 16 rows, per block of 32 values: 8 vectors of the signed values q - 8 (vector g: values 4g..4g+3
 * of each row, row r in lane r), then per row 128 * sum(q - 8) as int32 (the activations come biased by +128,
 * dot.h) and the f32 scale. */
#define Q4_0_PANEL_BLOCK (8 * 64 + 64 + 64)

static size_t q4_0_panel_bytes(int64_t cols) { return (size_t)(cols / LLM_QK4_0) * Q4_0_PANEL_BLOCK; }

LLM_TARGET_AVX512 static void pack_q4_0(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  const __m128i low = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
  /* Two blocks per row at a time: one 16 x 16 transpose gives both blocks' 8 vectors. */
  _Alignas(64) uint8_t staging[LLM_PANEL_ROWS][2 * LLM_QK4_0];
  memset(staging, 0, sizeof staging);
  const int64_t nb = cols / LLM_QK4_0;
  for (int64_t b0 = 0; b0 < nb; b0 += 2) {
    const int pair = nb - b0 >= 2 ? 2 : 1;
    for (int k = 0; k < pair; k++) {
      const int64_t b = b0 + k;
      uint8_t *pb = (uint8_t *)panel + b * Q4_0_PANEL_BLOCK;
      int32_t *corr = (int32_t *)(pb + 512);
      float *scale = (float *)(pb + 576);
      for (int r = 0; r < LLM_PANEL_ROWS; r++) {
        if (r >= n_rows) {
          corr[r] = 0;
          scale[r] = 0.0f;
          continue;
        }
        const struct llm_block_q4_0 *blk = (const struct llm_block_q4_0 *)((const char *)w + r * w_stride) + b;
        const __m128i q = _mm_loadu_si128((const __m128i *)blk->qs);
        const __m128i lo = _mm_and_si128(q, low), hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
        _mm_store_si128((__m128i *)(staging[r] + 32 * k), _mm_sub_epi8(lo, eight));
        _mm_store_si128((__m128i *)(staging[r] + 32 * k + 16), _mm_sub_epi8(hi, eight));
        const __m128i sad = _mm_add_epi64(_mm_sad_epu8(lo, _mm_setzero_si128()), _mm_sad_epu8(hi, _mm_setzero_si128()));
        corr[r] = 128 * (_mm_cvtsi128_si32(sad) + _mm_extract_epi32(sad, 2) - 8 * LLM_QK4_0);
        scale[r] = _cvtsh_ss(blk->d);
      }
    }
    __m512i v[16];
    llm_transpose_16x16(&staging[0][0], 2 * LLM_QK4_0, v);
    for (int k = 0; k < pair; k++)
      for (int g = 0; g < 8; g++)
        _mm512_store_si512((__m512i *)((uint8_t *)panel + (b0 + k) * Q4_0_PANEL_BLOCK + 64 * g), v[8 * k + g]);
  }
}

/* TOKENS tokens x 16 rows: per block, 8 broadcasts of 4 activation bytes per token against the 8 weight
 * vectors; int16 sums are safe (|q - 8| <= 8, x + 128 <= 255: 8 * 2 * 255 * 8 < 32768). */
LLM_AVX512_INLINE void gemm_q4_0_tile(int64_t cols, const uint8_t *panel, const uint8_t *x, size_t x_stride, float *out,
                                      int64_t out_stride, __mmask16 mask, const int TOKENS) {
  const __m512i ones = _mm512_set1_epi16(1);
  __m512 acc[8];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK4_0; b++) {
    const uint8_t *pb = panel + b * Q4_0_PANEL_BLOCK;
    __m512i p[8];
    for (int g = 0; g < 8; g++) {
      const __m512i wv = _mm512_load_si512((const __m512i *)(pb + 64 * g));
      for (int t = 0; t < TOKENS; t++) {
        const __m512i m = _mm512_maddubs_epi16(llm_bcast4(x + t * x_stride + b * LLM_QK4_0 + 4 * g), wv);
        p[t] = g == 0 ? m : _mm512_add_epi16(p[t], m);
      }
    }
    const __m512i corr = _mm512_load_si512((const __m512i *)(pb + 512));
    const __m512 scale = _mm512_load_ps((const float *)(pb + 576));
    for (int t = 0; t < TOKENS; t++) {
      const float xd = ((const float *)(x + t * x_stride + cols))[b];
      const __m512i sum = _mm512_sub_epi32(_mm512_madd_epi16(p[t], ones), corr);
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sum), scale), _mm512_set1_ps(xd), acc[t]);
    }
  }
  for (int t = 0; t < TOKENS; t++) _mm512_mask_storeu_ps(out + t * out_stride, mask, acc[t]);
}

LLM_TARGET_AVX512 static void gemm_q4_0(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                        int64_t out_stride, int n_rows, int n_tokens) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
#define Q4_0_TILE(first, TOKENS) gemm_q4_0_tile(cols, panel, xs + (first) * x_stride, x_stride, out + (first) * out_stride, out_stride, mask, TOKENS)
  LLM_AVX512_TOKEN_TILES(n_tokens, 8, Q4_0_TILE);
#undef Q4_0_TILE
}

/* Decode: per block and row the exact integer sum(x (q - 8)) (the panel's I) as sum(x q) - 8 sum(x), 4 rows
 * folded into the lanes of one vector, then the panel's float steps lane by lane, so a token gets the same logits
 * whether it comes in a batch or alone. The activations come as LLM_ACTIVATION_Q8_0_SUMS: sum(x) and the f32
 * scale of each block are loads, not work per 4 rows. */
LLM_AVX512_INLINE void rows_q4_0_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out,
                                        const int ROWS) {
  const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
  const __m256i nibble_shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
  const int8_t *xqs = x;
  const float *xd = (const float *)(xqs + cols);
  const int32_t *xsums = (const int32_t *)(xd + cols / LLM_QK4_0);
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK4_0; b++) {
    const __m256i xq = _mm256_loadu_si256((const __m256i *)(xqs + b * LLM_QK4_0));
    __m256i sums[4];
    uint16_t wd[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < 4; i++) {
      if (i >= ROWS) {
        sums[i] = _mm256_setzero_si256();
        continue;
      }
      const struct llm_block_q4_0 *wb = (const struct llm_block_q4_0 *)((const char *)w + i * w_stride) + b;
      _mm_prefetch((const char *)wb + LLM_DECODE_PREFETCH_ROWS * w_stride, _MM_HINT_T0);
      const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)wb->qs));
      const __m256i wq = _mm256_and_si256(_mm256_srlv_epi32(both, nibble_shift), low_nibbles);
      sums[i] = llm_sum_pairs_i16(_mm256_maddubs_epi16(wq, xq));
      wd[i] = wb->d;
    }
    const __m256i folded = llm_fold_4_rows(sums[0], sums[1], sums[2], sums[3]);
    const __m128i exact = _mm_sub_epi32(_mm_add_epi32(_mm256_castsi256_si128(folded), _mm256_extracti128_si256(folded, 1)),
                                        _mm_slli_epi32(_mm_set1_epi32(xsums[b]), 3));
    const __m128 scales = llm_halves_4(wd[0], wd[1], wd[2], wd[3]);
    acc = _mm_fmadd_ps(_mm_mul_ps(_mm_cvtepi32_ps(exact), scales), _mm_set1_ps(xd[b]), acc);
  }
  float lanes[4];
  _mm_storeu_ps(lanes, acc);
  for (int i = 0; i < ROWS; i++) out[i] = lanes[i];
}

LLM_DEFINE_AVX512_DECODE_TILE(tile_q4_0_avx512, rows_q4_0_avx512)

const struct llm_dot_kernel llm_dot_q4_0_avx512 = {
  LLM_ACTIVATION_Q8_0_SUMS, 4, 1, tile_q4_0_avx512, LLM_ACTIVATION_Q8_0_PANEL, LLM_PANEL_ROWS, 4,
  q4_0_panel_bytes, pack_q4_0, gemm_q4_0,
};

#endif
