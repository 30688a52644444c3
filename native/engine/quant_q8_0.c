/* q8_0: blocks of 32 values, value i = d * qs[i] with d an IEEE half (34 bytes per block). Weights in this
 * format are multiplied with activations in the same format. */
#include <math.h>

#include "dot.h"
#include "quant.h"
#include "simd_avx2.h"
#include "simd_avx512.h"

_Static_assert(sizeof(struct llm_block_q8_0) == 34, "q8_0 block is 34 bytes per 32 values");

/* ggml's quantize_row_q8_0_ref to the bit: d = amax / 127 stored as a half (round to nearest even), values
 * scaled by 1/d computed from the unrounded d, then roundf (ties away from zero). */
void llm_quantize_row_q8_0_ref(const float *x, void *out, int64_t n) {
  struct llm_block_q8_0 *y = out;
  for (int64_t b = 0; b < n / LLM_QK8_0; b++, x += LLM_QK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < LLM_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = llm_f32_to_f16(d);
    for (int j = 0; j < LLM_QK8_0; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
  }
}

void llm_dequantize_row_q8_0(const void *in, float *y, int64_t n) {
  const struct llm_block_q8_0 *x = in;
  for (int64_t b = 0; b < n / LLM_QK8_0; b++) {
    const float d = llm_f16_to_f32(x[b].d);
    for (int j = 0; j < LLM_QK8_0; j++) *y++ = d * (float)x[b].qs[j];
  }
}

/* The integer dot product of each block, scaled by both block scales, summed in block order. */
static float dot_q8_0_q8_0(int64_t cols, const void *w_row, const void *x_row) {
  const struct llm_block_q8_0 *w = w_row, *x = x_row;
  float sum = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    int32_t sumi = 0;
    for (int j = 0; j < LLM_QK8_0; j++) sumi += (int32_t)w[b].qs[j] * x[b].qs[j];
    sum += (float)sumi * (llm_f16_to_f32(w[b].d) * llm_f16_to_f32(x[b].d));
  }
  return sum;
}

LLM_DEFINE_SCALAR_TILE(tile_q8_0_scalar, dot_q8_0_q8_0)
const struct llm_dot_kernel llm_dot_q8_0_scalar = { LLM_ACTIVATION_Q8_0, 1, 1, tile_q8_0_scalar };

#if LLM_HAVE_AVX2_KERNELS

/* Blocks ahead that the decode tile prefetches: ~1 KiB per row, more than the hardware prefetchers keep ahead
 * of with 4 interleaved streams. */
#define PREFETCH_BLOCKS 32

/* Up to 4 rows x TOKENS tokens; each token's 4 row sums are folded into one vector per block (simd_avx2.h). */
LLM_AVX2_INLINE void tile_q8_0_avx2(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                    float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  __m256 acc[4];
  for (int j = 0; j < TOKENS; j++) acc[j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    __m256i wq[4];
    uint16_t wd[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < ROWS; i++) {
      const struct llm_block_q8_0 *wb = (const struct llm_block_q8_0 *)((const char *)w + i * w_stride) + b;
      if (TOKENS == 1) _mm_prefetch((const char *)(wb + PREFETCH_BLOCKS), _MM_HINT_T0);
      wq[i] = _mm256_loadu_si256((const __m256i *)wb->qs);
      wd[i] = wb->d;
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

LLM_DEFINE_AVX2_TILE(tile_q8_0_avx2_dispatch, tile_q8_0_avx2, 4, 4)
const struct llm_dot_kernel llm_dot_q8_0_avx2 = { LLM_ACTIVATION_Q8_0, 4, 4, tile_q8_0_avx2_dispatch };

#endif

#if LLM_HAVE_AVX512_KERNELS

/* The panel of 16 rows, per block of 32 values: 8 vectors of |q| (vector g: values 4g..4g+3 of each row, row r in
 * lane r), the 8 masks of the negative ones (8 bytes each), and the f32 row scales. maddubs takes |q| as its
 * unsigned operand and the activations negated where q < 0 (a masked subtract: AVX-512 has no vpsignb). */
#define Q8_0_PANEL_BLOCK (8 * 64 + 64 + 64)

static size_t q8_0_panel_bytes(int64_t cols) { return (size_t)(cols / LLM_QK8_0) * Q8_0_PANEL_BLOCK; }

LLM_TARGET_AVX512 static void pack_q8_0(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  _Alignas(64) uint8_t staging[LLM_PANEL_ROWS][2 * LLM_QK8_0];
  memset(staging, 0, sizeof staging);
  const int64_t nb = cols / LLM_QK8_0;
  for (int64_t b0 = 0; b0 < nb; b0 += 2) {
    const int pair = nb - b0 >= 2 ? 2 : 1;
    for (int k = 0; k < pair; k++) {
      float *scale = (float *)((uint8_t *)panel + (b0 + k) * Q8_0_PANEL_BLOCK + 576);
      for (int r = 0; r < LLM_PANEL_ROWS; r++) {
        if (r >= n_rows) {
          scale[r] = 0.0f;
          continue;
        }
        const struct llm_block_q8_0 *blk = (const struct llm_block_q8_0 *)((const char *)w + r * w_stride) + b0 + k;
        _mm256_store_si256((__m256i *)(staging[r] + 32 * k), _mm256_loadu_si256((const __m256i *)blk->qs));
        scale[r] = _cvtsh_ss(blk->d);
      }
    }
    __m512i v[16];
    llm_transpose_16x16(&staging[0][0], 2 * LLM_QK8_0, v);
    for (int k = 0; k < pair; k++) {
      uint8_t *pb = (uint8_t *)panel + (b0 + k) * Q8_0_PANEL_BLOCK;
      for (int g = 0; g < 8; g++) {
        const uint64_t negative = _cvtmask64_u64(_mm512_movepi8_mask(v[8 * k + g]));
        memcpy(pb + 512 + 8 * g, &negative, sizeof negative);
        _mm512_store_si512((__m512i *)(pb + 64 * g), _mm512_abs_epi8(v[8 * k + g]));
      }
    }
  }
}

LLM_AVX512_INLINE void gemm_q8_0_tile(int64_t cols, const uint8_t *panel, const uint8_t *x, size_t x_stride, float *out,
                                      int64_t out_stride, __mmask16 mask, const int TOKENS) {
  const __m512i ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
  __m512 acc[8];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    const uint8_t *pb = panel + b * Q8_0_PANEL_BLOCK;
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

LLM_TARGET_AVX512 static void gemm_q8_0(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                        int64_t out_stride, int n_rows, int n_tokens) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
  int t = 0;
  for (; t + 8 <= n_tokens; t += 8) gemm_q8_0_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 8);
  if (t + 4 <= n_tokens) {
    gemm_q8_0_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 4);
    t += 4;
  }
  if (t + 2 <= n_tokens) {
    gemm_q8_0_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 2);
    t += 2;
  }
  if (t < n_tokens) gemm_q8_0_tile(cols, panel, xs + t * x_stride, x_stride, out + t * out_stride, out_stride, mask, 1);
}

/* Decode: per block and row the exact integer sum(x q), 4 rows folded into the lanes of one vector, then the
 * panel's float steps lane by lane (batch == decode, bit for bit). */
LLM_AVX512_INLINE void rows_q8_0_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, float *out,
                                        const int ROWS) {
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
      const struct llm_block_q8_0 *wb = (const struct llm_block_q8_0 *)((const char *)w + i * w_stride) + b;
      _mm_prefetch((const char *)wb + LLM_DECODE_PREFETCH_ROWS * w_stride, _MM_HINT_T0);
      sums[i] = llm_dot_i8(_mm256_loadu_si256((const __m256i *)wb->qs), xq);
      wd[i] = wb->d;
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

LLM_DEFINE_AVX512_DECODE_TILE(tile_q8_0_avx512, rows_q8_0_avx512)

const struct llm_dot_kernel llm_dot_q8_0_avx512 = {
  LLM_ACTIVATION_Q8_0, 4, 1, tile_q8_0_avx512, LLM_ACTIVATION_Q8_0_PANEL_SIGNED, LLM_PANEL_ROWS, 4,
  q8_0_panel_bytes, pack_q8_0, gemm_q8_0,
};

#endif

#if LLM_HAVE_AVX512_KERNELS
/* roundf (half away from zero) of each lane, exactly: the fraction v - trunc(v) is exact in f32. */
LLM_AVX512_INLINE __m512i round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_sub_ps(v, t);
  const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(frac), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
  return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, one));
}

/* llm_quantize_row_q8_0_ref to the bit. */
LLM_TARGET_AVX512 void llm_quantize_row_q8_0_avx512(const float *x, void *out, int64_t n) {
  struct llm_block_q8_0 *y = out;
  for (int64_t b = 0; b < n / LLM_QK8_0; b++, x += LLM_QK8_0) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = llm_f32_to_f16(d);
    _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(v0, _mm512_set1_ps(id)))));
    _mm_storeu_si128((__m128i *)(y[b].qs + 16), _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(v1, _mm512_set1_ps(id)))));
  }
}
#endif
