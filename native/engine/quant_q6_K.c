/* q6_K: super-blocks of 256 values in 16 groups of 16, value = d * scale_g * (q - 32) with 6-bit q and int8
 * scale_g (210 bytes per block). Each half of 128 values keeps the low 4 bits of q in 64 bytes of ql (values
 * l and l+64 share byte l, l+32 and l+96 share byte l+32) and the top 2 bits in 32 bytes of qh (values l, l+32,
 * l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7 of byte l). Multiplied with q8_K activations. */
#include <math.h>

#include "dot.h"
#include "quant.h"
#include "simd_avx2.h"
#include "simd_avx512.h"

/* Below this a group counts as all zeros (ggml's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

/* ggml's make_qx_quants with rmse_type 1: symmetric quantization to [-nmax, nmax - 1] with weights x^2, trying
 * 18 scales around max / -nmax and keeping the one that maximises (sum w x l)^2 / sum w l^2 (least weighted
 * squared error). L receives l + nmax. Returns the scale. */
static float fit_scale(int n, int nmax, const float *x, int8_t *L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; i++) {
    if (fabsf(x[i]) > amax) {
      amax = fabsf(x[i]);
      max = x[i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    memset(L, 0, (size_t)n);
    return 0.0f;
  }
  float iscale = -nmax / max, sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    int l = llm_nearest_int(iscale * x[i]);
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    L[i] = (int8_t)(l + nmax);
    float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
  for (int step = -9; step <= 9; step++) {
    if (step == 0) continue;
    iscale = -(nmax + 0.1f * step) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; i++) {
      int l = llm_nearest_int(iscale * x[i]);
      l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
      float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; i++) {
        int l = llm_nearest_int(iscale * x[i]);
        L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/* ggml's quantize_row_q6_K_ref: fit each group, quantize the 16 scales to int8 against the largest (which maps
 * to -128), then requantize the values with the rounded scales. */
void llm_quantize_row_q6_K_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q6_K *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    int8_t L[LLM_QK_K];
    float scales[16], max_scale = 0, max_abs_scale = 0;
    for (int g = 0; g < 16; g++) {
      scales[g] = fit_scale(16, 32, x + 16 * g, L + 16 * g);
      if (fabsf(scales[g]) > max_abs_scale) {
        max_abs_scale = fabsf(scales[g]);
        max_scale = scales[g];
      }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
      memset(&y[b], 0, sizeof y[b]);
      continue;
    }
    const float iscale = -128.0f / max_scale;
    y[b].d = llm_f32_to_f16(1 / iscale);
    for (int g = 0; g < 16; g++) {
      int s = llm_nearest_int(iscale * scales[g]);
      y[b].scales[g] = (int8_t)(s < 127 ? s : 127);
    }
    for (int g = 0; g < 16; g++) {
      const float d = llm_f16_to_f32(y[b].d) * y[b].scales[g];
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; l++) {
        int q = llm_nearest_int(x[16 * g + l] / d);
        L[16 * g + l] = (int8_t)((q < -32 ? -32 : q > 31 ? 31 : q) + 32);
      }
    }
    for (int half = 0; half < 2; half++) {
      uint8_t *ql = y[b].ql + 64 * half, *qh = y[b].qh + 32 * half;
      const int8_t *Lh = L + 128 * half;
      for (int l = 0; l < 32; l++) {
        ql[l] = (uint8_t)((Lh[l] & 0x0f) | (Lh[l + 64] & 0x0f) << 4);
        ql[l + 32] = (uint8_t)((Lh[l + 32] & 0x0f) | (Lh[l + 96] & 0x0f) << 4);
        qh[l] = (uint8_t)((Lh[l] >> 4) | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
      }
    }
  }
}

/* Value i of a block as the unsigned 6-bit q (the stored value is q - 32); its group is i / 16. */
static inline int q6_K_value(const struct llm_block_q6_K *b, int i) {
  const int half = i / 128, l = i % 32, quarter = (i % 128) / 32; /* quarter: which of l, l+32, l+64, l+96 */
  const uint8_t low = b->ql[64 * half + l + 32 * (quarter & 1)];
  const int low4 = quarter < 2 ? low & 0x0f : low >> 4;
  return low4 | ((b->qh[32 * half + l] >> (2 * quarter)) & 3) << 4;
}

void llm_dequantize_row_q6_K(const void *in, float *y, int64_t n) {
  const struct llm_block_q6_K *x = in;
  for (int64_t b = 0; b < n / LLM_QK_K; b++) {
    const float d = llm_f16_to_f32(x[b].d);
    for (int i = 0; i < LLM_QK_K; i++) *y++ = d * x[b].scales[i / 16] * (float)(q6_K_value(&x[b], i) - 32);
  }
}

static float dot_q6_K_q8_K(int64_t cols, const void *w_row, const void *x_row) {
  const struct llm_block_q6_K *w = w_row;
  const struct llm_block_q8_K *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    int32_t sumi = 0;
    for (int g = 0; g < 16; g++) {
      int32_t group = 0;
      for (int l = 0; l < 16; l++) group += (q6_K_value(&w[b], 16 * g + l) - 32) * x[b].qs[16 * g + l];
      sumi += w[b].scales[g] * group;
    }
    sum += llm_f16_to_f32(w[b].d) * x[b].d * (float)sumi;
  }
  return sum;
}

LLM_DEFINE_SCALAR_TILE(tile_q6_K_scalar, dot_q6_K_q8_K)
const struct llm_dot_kernel llm_dot_q6_K_scalar = { LLM_ACTIVATION_Q8_K, 1, 1, tile_q6_K_scalar };

#if LLM_HAVE_AVX2_KERNELS

#define PREFETCH_BLOCKS 5 /* ~1 KiB ahead per row */

/* Half `half` of a block as unsigned 6-bit values (q + 32): q[k] holds values 128 half + 32 k .. + 31. */
LLM_AVX2_INLINE void unpack_q6_K_half(const struct llm_block_q6_K *blk, int half, __m256i q[4]) {
  const __m256i mask4 = _mm256_set1_epi8(0x0f), mask2 = _mm256_set1_epi8(0x03);
  const __m256i ql_a = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * half));
  const __m256i ql_b = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * half + 32));
  const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * half));
  q[0] = _mm256_or_si256(_mm256_and_si256(ql_a, mask4), _mm256_slli_epi16(_mm256_and_si256(qh, mask2), 4));
  q[1] = _mm256_or_si256(_mm256_and_si256(ql_b, mask4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), mask2), 4));
  q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql_a, 4), mask4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), mask2), 4));
  q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql_b, 4), mask4),
                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), mask2), 4));
}

/* Unsigned 6-bit q against the activations with maddubs, each 16-value group scaled by madd, and the -32 offset
 * removed once per block as 32 * sum_g scale_g * bsum_g. */
LLM_AVX2_INLINE void tile_q6_K_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  /* Picks int16 0 in the low 128-bit lane and int16 1 in the high lane of a broadcast pair of scales. */
  const __m256i pair_spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3,
                                               2, 3, 2, 3, 2, 3, 2, 3);
  __m256 acc[4][4];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) acc[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    __m256i sumi[4][4];
    float wd[4];
    for (int i = 0; i < ROWS; i++) {
      const struct llm_block_q6_K *wb = (const struct llm_block_q6_K *)((const char *)w + i * w_stride) + b;
      if (TOKENS == 1)
        for (int line = 0; line < 4; line++)
          _mm_prefetch((const char *)(wb + PREFETCH_BLOCKS) + 64 * line, _MM_HINT_T0);
      wd[i] = llm_half_to_float(wb->d);
      const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb->scales));
      for (int j = 0; j < TOKENS; j++) {
        const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b;
        const __m256i offset = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), scales16);
        sumi[i][j] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 5));
      }
      for (int half = 0; half < 2; half++) {
        __m256i q[4];
        unpack_q6_K_half(wb, half, q);
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
      for (int i = 0; i < ROWS; i++)
        acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(wd[i] * xd), _mm256_cvtepi32_ps(sumi[i][j]), acc[i][j]);
    }
  }
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) out[j * out_stride + i] = llm_hsum_ps(acc[i][j]);
}

LLM_DEFINE_AVX2_TILE(tile_q6_K_avx2_dispatch, tile_q6_K_avx2, 2, 2)
const struct llm_dot_kernel llm_dot_q6_K_avx2 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_q6_K_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

/* The panel of 16 rows, per super-block: 64 vectors of the signed values q - 32 (vector v: values 4v..4v+3, row
 * r in lane r); per 16-value group the row scales as int16 pairs; per row 128 * sum_g scale_g * sum(q - 32) as
 * int32 (the activations come biased by +128, dot.h) and d. */
#define Q6_K_PANEL_W 0
#define Q6_K_PANEL_SCALES (64 * 64)
#define Q6_K_PANEL_CORR (Q6_K_PANEL_SCALES + 16 * 64)
#define Q6_K_PANEL_D (Q6_K_PANEL_CORR + 64)
#define Q6_K_PANEL_BLOCK (Q6_K_PANEL_D + 64)

static size_t q6_K_panel_bytes(int64_t cols) { return (size_t)(cols / LLM_QK_K) * Q6_K_PANEL_BLOCK; }

LLM_TARGET_AVX512 static void pack_q6_K(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  const __m256i offset = _mm256_set1_epi8(32);
  const __m256i ones16 = _mm256_set1_epi16(1);
  /* Spreads scale bytes 0 and 1 of a 16-byte vector over the low and high 16 bytes of a 32-byte one. */
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                          1, 1, 1, 1, 1, 1);
  _Alignas(64) uint8_t staging[LLM_PANEL_ROWS][LLM_QK_K];
  memset(staging, 0, sizeof staging);
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    uint8_t *pb = (uint8_t *)panel + b * Q6_K_PANEL_BLOCK;
    int16_t *scales = (int16_t *)(pb + Q6_K_PANEL_SCALES);
    int32_t *corr = (int32_t *)(pb + Q6_K_PANEL_CORR);
    float *d = (float *)(pb + Q6_K_PANEL_D);
    for (int r = 0; r < LLM_PANEL_ROWS; r++) {
      if (r >= n_rows) {
        for (int g = 0; g < 16; g++) scales[g * 32 + 2 * r] = scales[g * 32 + 2 * r + 1] = 0;
        corr[r] = 0;
        d[r] = 0.0f;
        continue;
      }
      const struct llm_block_q6_K *blk = (const struct llm_block_q6_K *)((const char *)w + r * w_stride) + b;
      const __m128i sc = _mm_loadu_si128((const __m128i *)blk->scales);
      __m256i weighted = _mm256_setzero_si256(); /* sum_g scale_g * sum q (q unsigned), in int32 lanes */
      for (int half = 0; half < 2; half++) {
        __m256i q[4];
        unpack_q6_K_half(blk, half, q);
        for (int k = 0; k < 4; k++) {
          /* Values 128 half + 32 k + 0..31: groups 8 half + 2k and 8 half + 2k + 1. */
          const int group = 8 * half + 2 * k;
          _mm256_store_si256((__m256i *)(staging[r] + 128 * half + 32 * k), _mm256_sub_epi8(q[k], offset));
          const __m256i group_scales =
              _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_srli_si128(sc, 0)), _mm256_add_epi8(spread, _mm256_set1_epi8((char)group)));
          weighted = _mm256_add_epi32(weighted, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], group_scales), ones16));
        }
      }
      int scale_sum = 0;
      for (int g = 0; g < 16; g++) {
        scales[g * 32 + 2 * r] = scales[g * 32 + 2 * r + 1] = blk->scales[g];
        scale_sum += blk->scales[g];
      }
      __m128i h = _mm_add_epi32(_mm256_castsi256_si128(weighted), _mm256_extracti128_si256(weighted, 1));
      h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
      h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
      corr[r] = 128 * (_mm_cvtsi128_si32(h) - 32 * 16 * scale_sum);
      d[r] = _cvtsh_ss(blk->d);
    }
    llm_panel_transpose(&staging[0][0], LLM_QK_K, pb + Q6_K_PANEL_W);
  }
}

/* Per 16-value group: 4 maddubs, summed in int16 two at a time (|q - 32| <= 32, x + 128 <= 255: 2 * 2 * 255 *
 * 32 < 32768), each pair scaled by madd with the group's scales. */
LLM_AVX512_INLINE void gemm_q6_K_tile(int64_t cols, const uint8_t *panel, const uint8_t *x, size_t x_stride, float *out,
                                      int64_t out_stride, __mmask16 mask, const int TOKENS) {
  __m512 acc[4];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    const uint8_t *pb = panel + b * Q6_K_PANEL_BLOCK;
    __m512i sum[4];
    for (int t = 0; t < TOKENS; t++) sum[t] = _mm512_setzero_si512();
    for (int g = 0; g < 16; g++) {
      const __m512i scale = _mm512_load_si512((const __m512i *)(pb + Q6_K_PANEL_SCALES + 64 * g));
      for (int pair = 0; pair < 2; pair++) {
        const int v = 4 * g + 2 * pair;
        const __m512i w0 = _mm512_load_si512((const __m512i *)(pb + Q6_K_PANEL_W + 64 * v));
        const __m512i w1 = _mm512_load_si512((const __m512i *)(pb + Q6_K_PANEL_W + 64 * (v + 1)));
        for (int t = 0; t < TOKENS; t++) {
          const uint8_t *xv = x + t * x_stride + b * LLM_QK_K + 4 * v;
          const __m512i p = _mm512_add_epi16(_mm512_maddubs_epi16(llm_bcast4(xv), w0),
                                             _mm512_maddubs_epi16(llm_bcast4(xv + 4), w1));
          sum[t] = _mm512_add_epi32(sum[t], _mm512_madd_epi16(p, scale));
        }
      }
    }
    const __m512i corr = _mm512_load_si512((const __m512i *)(pb + Q6_K_PANEL_CORR));
    const __m512 d = _mm512_load_ps((const float *)(pb + Q6_K_PANEL_D));
    for (int t = 0; t < TOKENS; t++) {
      const float xd = ((const float *)(x + t * x_stride + cols))[b];
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sum[t], corr)), d), _mm512_set1_ps(xd),
                               acc[t]);
    }
  }
  for (int t = 0; t < TOKENS; t++) _mm512_mask_storeu_ps(out + t * out_stride, mask, acc[t]);
}

LLM_TARGET_AVX512 static void gemm_q6_K(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                        int64_t out_stride, int n_rows, int n_tokens) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) gemm_q6_K_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 4);
  if (t + 2 <= n_tokens) {
    gemm_q6_K_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 2);
    t += 2;
  }
  if (t < n_tokens) gemm_q6_K_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 1);
}

/* Decode: per super-block and row the exact integer sum_g scale_g sum(x (q - 32)) (the panel's I), 4 rows
 * folded into the lanes of one vector, then the panel's float steps lane by lane (batch == decode, bit for bit). */
LLM_AVX512_INLINE void rows_q6_K_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out,
                                        const int ROWS) {
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
      const struct llm_block_q6_K *wb = (const struct llm_block_q6_K *)((const char *)w + i * w_stride) + b;
      for (int line = 0; line < 4; line++)
        _mm_prefetch((const char *)wb + LLM_DECODE_PREFETCH_ROWS * w_stride + 64 * line, _MM_HINT_T0);
      wd[i] = wb->d;
      const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb->scales));
      __m256i sum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales16), 5));
      for (int half = 0; half < 2; half++) {
        __m256i q[4];
        unpack_q6_K_half(wb, half, q);
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

LLM_DEFINE_AVX512_DECODE_TILE(tile_q6_K_avx512, rows_q6_K_avx512)

const struct llm_dot_kernel llm_dot_q6_K_avx512 = {
  LLM_ACTIVATION_Q8_K, 4, 1, tile_q6_K_avx512, LLM_ACTIVATION_Q8_K_PANEL, LLM_PANEL_ROWS, 4,
  q6_K_panel_bytes, pack_q6_K, gemm_q6_K,
};

#endif
