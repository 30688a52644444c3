/* q6_K: super-blocks of 256 values in 16 groups of 16, value = d * scale_g * (q - 32) with 6-bit q and int8
 * scale_g (210 bytes per block). Each half of 128 values keeps the low 4 bits of q in 64 bytes of ql (values
 * l and l+64 share byte l, l+32 and l+96 share byte l+32) and the top 2 bits in 32 bytes of qh (values l, l+32,
 * l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7 of byte l). Multiplied with q8_K activations. */
#include <math.h>

#include "dot.h"
#include "quant.h"
#include "simd_avx2.h"

struct block_q6_K {
  uint8_t ql[LLM_QK_K / 2];
  uint8_t qh[LLM_QK_K / 4];
  int8_t scales[LLM_QK_K / 16];
  uint16_t d;
};
_Static_assert(sizeof(struct block_q6_K) == 210, "q6_K block is 210 bytes per 256 values");

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
  struct block_q6_K *y = out;
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
static inline int q6_K_value(const struct block_q6_K *b, int i) {
  const int half = i / 128, l = i % 32, quarter = (i % 128) / 32; /* quarter: which of l, l+32, l+64, l+96 */
  const uint8_t low = b->ql[64 * half + l + 32 * (quarter & 1)];
  const int low4 = quarter < 2 ? low & 0x0f : low >> 4;
  return low4 | ((b->qh[32 * half + l] >> (2 * quarter)) & 3) << 4;
}

void llm_dequantize_row_q6_K(const void *in, float *y, int64_t n) {
  const struct block_q6_K *x = in;
  for (int64_t b = 0; b < n / LLM_QK_K; b++) {
    const float d = llm_f16_to_f32(x[b].d);
    for (int i = 0; i < LLM_QK_K; i++) *y++ = d * x[b].scales[i / 16] * (float)(q6_K_value(&x[b], i) - 32);
  }
}

static float dot_q6_K_q8_K(int64_t cols, const void *w_row, const void *x_row) {
  const struct block_q6_K *w = w_row;
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

/* Unsigned 6-bit q against the activations with maddubs, each 16-value group scaled by madd, and the -32 offset
 * removed once per block as 32 * sum_g scale_g * bsum_g. */
LLM_AVX2_INLINE void tile_q6_K_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  const __m256i mask4 = _mm256_set1_epi8(0x0f), mask2 = _mm256_set1_epi8(0x03);
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
      const struct block_q6_K *wb = (const struct block_q6_K *)((const char *)w + i * w_stride) + b;
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
        const __m256i ql_a = _mm256_loadu_si256((const __m256i *)(wb->ql + 64 * half));
        const __m256i ql_b = _mm256_loadu_si256((const __m256i *)(wb->ql + 64 * half + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb->qh + 32 * half));
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(ql_a, mask4), _mm256_slli_epi16(_mm256_and_si256(qh, mask2), 4));
        q[1] = _mm256_or_si256(_mm256_and_si256(ql_b, mask4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), mask2), 4));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql_a, 4), mask4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), mask2), 4));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql_b, 4), mask4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), mask2), 4));
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
