/* q4_K: super-blocks of 256 values in 8 sub-blocks of 32, value = d * scale_s * q - dmin * min_s with 4-bit q
 * and 6-bit scale_s/min_s packed into 12 bytes (144 bytes per block). Bytes 32k..32k+31 of qs hold sub-block 2k
 * in their low nibbles and sub-block 2k+1 in their high nibbles. Multiplied with q8_K activations. */
#include <math.h>

#include "dot.h"
#include "quant.h"
#include "simd_avx2.h"
#include "simd_avx512.h"

/* The 8 scales then the 8 mins of a block, each 6 bits: the first four of each are the low 6 bits of bytes
 * 0-3 (scales) and 4-7 (mins); the last four take their low 4 bits from the nibbles of bytes 8-11 and their top
 * 2 bits from the top bits of bytes 0-3 (scales) and 4-7 (mins). Four bytes at a time, in little-endian words. */
static inline void unpack_scales_mins(const uint8_t packed[12], uint8_t out[16]) {
  uint32_t in[3], words[4];
  memcpy(in, packed, sizeof in);
  words[0] = in[0] & 0x3f3f3f3f;
  words[1] = (in[2] & 0x0f0f0f0f) | ((in[0] >> 6) & 0x03030303) << 4;
  words[2] = in[1] & 0x3f3f3f3f;
  words[3] = ((in[2] >> 4) & 0x0f0f0f0f) | ((in[1] >> 6) & 0x03030303) << 4;
  memcpy(out, words, sizeof words);
}

/* ggml's make_qkx2_quants: a weighted least-squares fit of scale and min for one sub-block, trying nstep + 1
 * scales around (max - min) / nmax and keeping the one of least weighted squared error. Returns the scale;
 * *neg_min receives -min (>= 0). */
static float fit_scale_min(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min,
                           float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; i++) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    memset(L, 0, (size_t)n);
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
  for (int i = 0; i < n; i++) {
    int l = llm_nearest_int(iscale * (x[i] - min));
    L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
    float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * diff * diff;
  }
  uint8_t trial[32]; /* n <= 32 */
  for (int step = 0; step <= nstep; step++) {
    iscale = (rmin + rdelta * step + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; i++) {
      int l = llm_nearest_int(iscale * (x[i] - min));
      l = l < 0 ? 0 : l > nmax ? nmax : l;
      trial[i] = (uint8_t)l;
      float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float error = 0;
      for (int i = 0; i < n; i++) {
        float diff = this_scale * trial[i] + this_min - x[i];
        error += weights[i] * diff * diff;
      }
      if (error < best_error) {
        memcpy(L, trial, (size_t)n);
        best_error = error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_min = -min;
  return scale;
}

/* ggml's quantize_row_q4_K_ref: fit each sub-block (weights favour large values), quantize the 8 scales and 8
 * mins to 6 bits against the block's largest, then requantize the values with the rounded scales. */
void llm_quantize_row_q4_K_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q4_K *y = out;
  for (int64_t b = 0; b < n / LLM_QK_K; b++, x += LLM_QK_K) {
    uint8_t L[LLM_QK_K];
    float weights[32], scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int s = 0; s < 8; s++) {
      const float *xs = x + 32 * s;
      float sum_x2 = 0;
      for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
      const float av_x = sqrtf(sum_x2 / 32);
      for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xs[l]);
      scales[s] = fit_scale_min(32, 15, xs, weights, L + 32 * s, &mins[s], -1.0f, 0.1f, 20);
      if (scales[s] > max_scale) max_scale = scales[s];
      if (mins[s] > max_min) max_min = mins[s];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    memset(y[b].scales, 0, sizeof y[b].scales);
    for (int s = 0; s < 8; s++) {
      uint8_t ls = (uint8_t)llm_nearest_int(inv_scale * scales[s]), lm = (uint8_t)llm_nearest_int(inv_min * mins[s]);
      ls = ls < 63 ? ls : 63;
      lm = lm < 63 ? lm : 63;
      if (s < 4) {
        y[b].scales[s] |= ls;
        y[b].scales[s + 4] |= lm;
      } else {
        y[b].scales[s + 4] = (uint8_t)((ls & 0x0f) | (lm & 0x0f) << 4);
        y[b].scales[s - 4] |= (uint8_t)((ls >> 4) << 6);
        y[b].scales[s] |= (uint8_t)((lm >> 4) << 6);
      }
    }
    y[b].d = llm_f32_to_f16(max_scale / 63.0f);
    y[b].dmin = llm_f32_to_f16(max_min / 63.0f);
    uint8_t sm[16];
    unpack_scales_mins(y[b].scales, sm);
    for (int s = 0; s < 8; s++) {
      const float d = llm_f16_to_f32(y[b].d) * sm[s];
      if (d == 0.0f) continue;
      const float dm = llm_f16_to_f32(y[b].dmin) * sm[8 + s];
      for (int l = 0; l < 32; l++) {
        int q = llm_nearest_int((x[32 * s + l] + dm) / d);
        L[32 * s + l] = (uint8_t)(q < 0 ? 0 : q > 15 ? 15 : q);
      }
    }
    for (int k = 0; k < 4; k++)
      for (int l = 0; l < 32; l++) y[b].qs[32 * k + l] = (uint8_t)(L[64 * k + l] | L[64 * k + 32 + l] << 4);
  }
}

/* Value i of a block as the unsigned 4-bit q, whose sub-block is i / 32. */
static inline int q4_K_value(const struct llm_block_q4_K *b, int i) {
  const uint8_t byte = b->qs[32 * (i / 64) + i % 32];
  return (i % 64) < 32 ? byte & 0x0f : byte >> 4;
}

void llm_dequantize_row_q4_K(const void *in, float *y, int64_t n) {
  const struct llm_block_q4_K *x = in;
  for (int64_t b = 0; b < n / LLM_QK_K; b++) {
    uint8_t sm[16];
    unpack_scales_mins(x[b].scales, sm);
    const float d = llm_f16_to_f32(x[b].d), dmin = llm_f16_to_f32(x[b].dmin);
    for (int i = 0; i < LLM_QK_K; i++) *y++ = d * sm[i / 32] * (float)q4_K_value(&x[b], i) - dmin * sm[8 + i / 32];
  }
}

/* sum_i (d sc q_i - dmin m) y_i = d * sum_s sc_s (q . y)_s - dmin * sum_s m_s (sum of y over s): integers per
 * block, then two float terms. */
static float dot_q4_K_q8_K(int64_t cols, const void *w_row, const void *x_row) {
  const struct llm_block_q4_K *w = w_row;
  const struct llm_block_q8_K *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    uint8_t sm[16];
    unpack_scales_mins(w[b].scales, sm);
    int32_t sumi = 0, sum_mins = 0;
    for (int s = 0; s < 8; s++) {
      int32_t sub = 0;
      for (int l = 0; l < 32; l++) sub += q4_K_value(&w[b], 32 * s + l) * x[b].qs[32 * s + l];
      sumi += sm[s] * sub;
      sum_mins += sm[8 + s] * (x[b].bsums[2 * s] + x[b].bsums[2 * s + 1]);
    }
    sum += x[b].d * (llm_f16_to_f32(w[b].d) * (float)sumi - llm_f16_to_f32(w[b].dmin) * (float)sum_mins);
  }
  return sum;
}

LLM_DEFINE_SCALAR_TILE(tile_q4_K_scalar, dot_q4_K_q8_K)
const struct llm_dot_kernel llm_dot_q4_K_scalar = { LLM_ACTIVATION_Q8_K, 1, 1, tile_q4_K_scalar };

#if LLM_HAVE_AVX2_KERNELS

#define PREFETCH_BLOCKS 7 /* ~1 KiB ahead per row */

/* Per row and block: the nibbles of each 64 values split into two vectors of unsigned 4-bit values, the 8
 * scales as int16 broadcasts, the 8 mins repeated in pairs to meet the 16 bsums of each token. Per row and
 * token: maddubs/madd per sub-block into int32, then the two float terms. */
/* Quarter k (64 values) of a q4_K block: its low and high nibbles as bytes, and the int16 scales of its two
 * sub-blocks broadcast from scales16 (byte shuffles; k is a constant once unrolled). Shared by the AVX2 tile and
 * the AVX-512 decode rows, so that they unpack identically. */
struct q4_K_quarter {
  __m256i lo, hi, scale_lo, scale_hi;
};

LLM_AVX2_INLINE struct q4_K_quarter unpack_q4_K_quarter(const uint8_t *qs, __m256i scales16, int k) {
  const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
  const __m256i packed = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
  return (struct q4_K_quarter){
    _mm256_and_si256(packed, low_nibbles),
    _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles),
    _mm256_shuffle_epi8(scales16, _mm256_set1_epi16((short)(0x0202 * (2 * k) + 0x0100))),
    _mm256_shuffle_epi8(scales16, _mm256_set1_epi16((short)(0x0202 * (2 * k + 1) + 0x0100))),
  };
}

LLM_AVX2_INLINE void tile_q4_K_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  __m256 acc[4][4];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) acc[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    __m256i sumi[4][4], sum_mins[4][4];
    float wd[4], wdmin[4];
    for (int i = 0; i < ROWS; i++) {
      const struct llm_block_q4_K *wb = (const struct llm_block_q4_K *)((const char *)w + i * w_stride) + b;
      if (TOKENS == 1) {
        _mm_prefetch((const char *)(wb + PREFETCH_BLOCKS), _MM_HINT_T0);
        _mm_prefetch((const char *)(wb + PREFETCH_BLOCKS) + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)(wb + PREFETCH_BLOCKS) + 128, _MM_HINT_T0);
      }
      wd[i] = llm_half_to_float(wb->d);
      wdmin[i] = llm_half_to_float(wb->dmin);
      uint8_t sm[16];
      unpack_scales_mins(wb->scales, sm);
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
        const struct q4_K_quarter q = unpack_q4_K_quarter(wb->qs, scales16, k);
        const __m256i lo = q.lo, hi = q.hi, scale_lo = q.scale_lo, scale_hi = q.scale_hi;
        for (int j = 0; j < TOKENS; j++) {
          const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b;
          const __m256i y_lo = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * k));
          const __m256i y_hi = _mm256_loadu_si256((const __m256i *)(xb->qs + 64 * k + 32));
          const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y_lo), scale_lo);
          const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y_hi), scale_hi);
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

LLM_DEFINE_AVX2_TILE(tile_q4_K_avx2_dispatch, tile_q4_K_avx2, 2, 2)
const struct llm_dot_kernel llm_dot_q4_K_avx2 = { LLM_ACTIVATION_Q8_K, 2, 2, tile_q4_K_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

/* The panel of 16 rows, per super-block: for each of the 8 sub-blocks, 8 vectors of the signed values q - 8
 * (vector g: values 4g..4g+3 of the sub-block, row r in lane r); per sub-block the row scales as int16 pairs;
 * per row 128 * sum_s scale_s * sum(q - 8) as int32 (the activations come biased by +128), d and dmin; then the
 * scales and the mins of sub-blocks 2k, 2k+1 as int16 pairs, which madd meets with the activation sums (dot.h).
 * With w' = q - 8 and x + 128 as maddubs' operands, sum x q = sum (x + 128) w' + 8 sum x - 128 sum w'.
 * Per row and token: I = sum_s scale_s sum(x q) and M = sum_s min_s sum(x) exactly, then
 * x_d * (d * I - dmin * M) in f32 (the decode kernel takes the same steps). */
#define Q4_K_PANEL_W 0
#define Q4_K_PANEL_SCALES (64 * 64)
#define Q4_K_PANEL_CORR (Q4_K_PANEL_SCALES + 8 * 64)
#define Q4_K_PANEL_D (Q4_K_PANEL_CORR + 64)
#define Q4_K_PANEL_DMIN (Q4_K_PANEL_D + 64)
#define Q4_K_PANEL_SCALE_PAIRS (Q4_K_PANEL_DMIN + 64)
#define Q4_K_PANEL_MIN_PAIRS (Q4_K_PANEL_SCALE_PAIRS + 4 * 64)
#define Q4_K_PANEL_BLOCK (Q4_K_PANEL_MIN_PAIRS + 4 * 64)

static size_t q4_K_panel_bytes(int64_t cols) { return (size_t)(cols / LLM_QK_K) * Q4_K_PANEL_BLOCK; }

LLM_TARGET_AVX512 static void pack_q4_K(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  const __m256i low = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8), ones16 = _mm256_set1_epi16(1);
  _Alignas(64) uint8_t staging[LLM_PANEL_ROWS][LLM_QK_K];
  memset(staging, 0, sizeof staging);
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    uint8_t *pb = (uint8_t *)panel + b * Q4_K_PANEL_BLOCK;
    int16_t *scales = (int16_t *)(pb + Q4_K_PANEL_SCALES);
    int16_t *scale_pairs = (int16_t *)(pb + Q4_K_PANEL_SCALE_PAIRS), *min_pairs = (int16_t *)(pb + Q4_K_PANEL_MIN_PAIRS);
    int32_t *corr = (int32_t *)(pb + Q4_K_PANEL_CORR);
    float *d = (float *)(pb + Q4_K_PANEL_D), *dmin = (float *)(pb + Q4_K_PANEL_DMIN);
    for (int r = 0; r < LLM_PANEL_ROWS; r++) {
      uint8_t sm[16] = { 0 };
      if (r < n_rows) {
        const struct llm_block_q4_K *blk = (const struct llm_block_q4_K *)((const char *)w + r * w_stride) + b;
        unpack_scales_mins(blk->scales, sm);
        __m256i weighted = _mm256_setzero_si256(); /* sum_s scale_s * sum q, in int32 lanes */
        for (int k = 0; k < 4; k++) {
          const __m256i packed = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * k));
          const __m256i lo = _mm256_and_si256(packed, low), hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
          _mm256_store_si256((__m256i *)(staging[r] + 64 * k), _mm256_sub_epi8(lo, eight));
          _mm256_store_si256((__m256i *)(staging[r] + 64 * k + 32), _mm256_sub_epi8(hi, eight));
          weighted = _mm256_add_epi32(weighted, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_set1_epi8((char)sm[2 * k])), ones16));
          weighted = _mm256_add_epi32(weighted, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_set1_epi8((char)sm[2 * k + 1])), ones16));
        }
        int scale_sum = 0;
        for (int s = 0; s < 8; s++) scale_sum += sm[s];
        corr[r] = 128 * (llm_hsum_epi32(weighted) - 8 * 32 * scale_sum);
        d[r] = _cvtsh_ss(blk->d);
        dmin[r] = _cvtsh_ss(blk->dmin);
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
    llm_panel_transpose(&staging[0][0], LLM_QK_K, pb + Q4_K_PANEL_W);
  }
}

LLM_AVX512_INLINE void gemm_q4_K_tile(int64_t cols, const uint8_t *panel, const uint8_t *x, size_t x_stride, float *out,
                                      int64_t out_stride, __mmask16 mask, const int TOKENS) {
  const int64_t nb = cols / LLM_QK_K;
  __m512 acc[4];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *pb = panel + b * Q4_K_PANEL_BLOCK;
    __m512i sum[4];
    for (int t = 0; t < TOKENS; t++) sum[t] = _mm512_setzero_si512();
    for (int s = 0; s < 8; s++) {
      __m512i p[4];
      for (int g = 0; g < 8; g++) {
        const __m512i wv = _mm512_load_si512((const __m512i *)(pb + Q4_K_PANEL_W + 64 * (8 * s + g)));
        for (int t = 0; t < TOKENS; t++) {
          const __m512i m = _mm512_maddubs_epi16(llm_bcast4(x + t * x_stride + b * LLM_QK_K + 32 * s + 4 * g), wv);
          p[t] = g == 0 ? m : _mm512_add_epi16(p[t], m);
        }
      }
      const __m512i scale = _mm512_load_si512((const __m512i *)(pb + Q4_K_PANEL_SCALES + 64 * s));
      for (int t = 0; t < TOKENS; t++) sum[t] = _mm512_add_epi32(sum[t], _mm512_madd_epi16(p[t], scale));
    }
    const __m512i corr = _mm512_load_si512((const __m512i *)(pb + Q4_K_PANEL_CORR));
    const __m512 d = _mm512_load_ps((const float *)(pb + Q4_K_PANEL_D)), dmin = _mm512_load_ps((const float *)(pb + Q4_K_PANEL_DMIN));
    for (int t = 0; t < TOKENS; t++) {
      const uint8_t *xt = x + t * x_stride;
      const uint8_t *xsums = xt + cols + nb * sizeof(float) + b * 8 * sizeof(int16_t);
      __m512i scaled_sums = _mm512_setzero_si512(), min_sums = _mm512_setzero_si512();
      for (int k = 0; k < 4; k++) {
        const __m512i pair = llm_bcast4(xsums + 4 * k);
        scaled_sums = _mm512_add_epi32(scaled_sums, _mm512_madd_epi16(_mm512_load_si512((const __m512i *)(pb + Q4_K_PANEL_SCALE_PAIRS + 64 * k)), pair));
        min_sums = _mm512_add_epi32(min_sums, _mm512_madd_epi16(_mm512_load_si512((const __m512i *)(pb + Q4_K_PANEL_MIN_PAIRS + 64 * k)), pair));
      }
      const __m512i exact = _mm512_add_epi32(_mm512_sub_epi32(sum[t], corr), _mm512_slli_epi32(scaled_sums, 3));
      const __m512 term = _mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(exact), d), _mm512_mul_ps(_mm512_cvtepi32_ps(min_sums), dmin));
      acc[t] = _mm512_fmadd_ps(term, _mm512_set1_ps(((const float *)(xt + cols))[b]), acc[t]);
    }
  }
  for (int t = 0; t < TOKENS; t++) _mm512_mask_storeu_ps(out + t * out_stride, mask, acc[t]);
}

LLM_TARGET_AVX512 static void gemm_q4_K(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                        int64_t out_stride, int n_rows, int n_tokens) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) gemm_q4_K_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 4);
  if (t + 2 <= n_tokens) {
    gemm_q4_K_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 2);
    t += 2;
  }
  if (t < n_tokens) gemm_q4_K_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 1);
}

/* Decode: per super-block and row the exact integers I = sum_s scale_s sum(x q) and M = sum_s min_s sum(x), 4
 * rows folded into the lanes of one vector each, then the panel's float steps lane by lane (batch == decode,
 * bit for bit). The integer products run two rows per zmm (row 2p in the low half, 2p + 1 in the high half,
 * the activations broadcast to both), so each unpack, maddubs and madd serves two rows. */
LLM_AVX512_INLINE void rows_q4_K_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out,
                                        const int ROWS) {
  const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)x + b;
    const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb->bsums);
    const struct llm_block_q4_K *wb[4] = { NULL, NULL, NULL, NULL };
    __m256i scales16[4], mins[4], sumi[4];
    uint16_t wd[4] = { 0, 0, 0, 0 }, wdmin[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < 4; i++) {
      if (i >= ROWS) {
        scales16[i] = mins[i] = _mm256_setzero_si256();
        continue;
      }
      wb[i] = (const struct llm_block_q4_K *)((const char *)w + i * w_stride) + b;
      for (int line = 0; line < 3; line++)
        _mm_prefetch((const char *)wb[i] + LLM_DECODE_PREFETCH_ROWS * w_stride + 64 * line, _MM_HINT_T0);
      uint8_t sm[16];
      unpack_scales_mins(wb[i]->scales, sm);
      wd[i] = wb[i]->d;
      wdmin[i] = wb[i]->dmin;
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
      __m512i sum = _mm512_setzero_si512();
      for (int k = 0; k < 4; k++) {
        const __m256i q0 = _mm256_loadu_si256((const __m256i *)(wb[r0]->qs + 32 * k));
        const __m256i q1 = r1 < ROWS ? _mm256_loadu_si256((const __m256i *)(wb[r1]->qs + 32 * k)) : _mm256_setzero_si256();
        const __m512i packed = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
        const __m512i lo = _mm512_and_si512(packed, low_nibbles);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles);
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

LLM_DEFINE_AVX512_DECODE_TILE(tile_q4_K_avx512, rows_q4_K_avx512)

const struct llm_dot_kernel llm_dot_q4_K_avx512 = {
  LLM_ACTIVATION_Q8_K, 4, 1, tile_q4_K_avx512, LLM_ACTIVATION_Q8_K_PANEL, LLM_PANEL_ROWS, 4,
  q4_K_panel_bytes, pack_q4_K, gemm_q4_K,
};

#endif
