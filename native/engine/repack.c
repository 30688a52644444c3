/* The repacked q4_0, q8_0, q4_K, q5_K and q6_K layouts (repack.h) and their products on the four x86 SIMD sets. Every set
 * computes, per row, block and token, exact integer sums, then the float steps of the AVX-512 kernels on the mapped
 * rows: q4_0 / q8_0 (quant_i8.h, quant_q4_0.c) acc = fma(sum * row scale, token scale, acc); q4_K / q5_K (quant_k4.h)
 * acc = fma(I * d - M * dmin, token scale, acc) with I = sum_s scale_s sum(x q) and M = sum_s min_s sum(x); q6_K
 * (quant_k16.h) acc = fma(I * d, token scale, acc) with I = sum_g scale_g sum(x (q - 32)). So the sets agree with
 * each other bit for bit, a token gets the same logits alone or in a batch, and LLAMA_NAPI_REPACK=0 changes no result
 * on AVX-512. q4_0 / q8_0 take their activations as LLM_ACTIVATION_Q8_0_SUMS (the block sums take q4_0's -8 and
 * q8_0's +128 out of the sums), the K-quants as q8_K blocks (whose 16-value sums serve the mins and the -32). */
#include "repack.h"

#include <string.h>

#include "blocks.h"
#include "dot.h"
#include "quant_k4.h"
#include "simd_avx2.h"
#include "simd_avx512.h"

_Static_assert(LLM_QK4_0 == LLM_QK8_0, "one block size for both layouts");
_Static_assert(offsetof(struct llm_block_q4_0, d) == 0 && offsetof(struct llm_block_q8_0, d) == 0, "d comes first");

/* Bytes of one block's value vectors in a group of q4_0 or q8_0. */
static size_t values_bytes(enum llm_type type) { return type == LLM_Q4_0 ? 4 * 64 : 8 * 64; }

/* A q4_K or q5_K super-block of a group (repack.h), by offset; q5_K's fifth bits follow. */
#define RK4_VALUES 0
#define RK4_SCALES (32 * 64)
#define RK4_MINS (RK4_SCALES + 8 * LLM_REPACK_ROWS)
#define RK4_D (RK4_MINS + 8 * LLM_REPACK_ROWS)
#define RK4_DMIN (RK4_D + 2 * LLM_REPACK_ROWS)
#define RK4_QH (RK4_DMIN + 2 * LLM_REPACK_ROWS)
#define RK4_SUPER_BLOCK(FIVE_BITS) (RK4_QH + ((FIVE_BITS) ? 8 * 64 : 0))
_Static_assert(RK4_QH % 64 == 0, "q4_K / q5_K super-blocks keep the vectors aligned");

/* A q6_K super-block of a group (repack.h), by offset. */
#define K6_LOW 0
#define K6_HIGH (32 * 64)
#define K6_SCALES (K6_HIGH + 16 * 64)
#define K6_D (K6_SCALES + 16 * LLM_REPACK_ROWS)
#define K6_SUPER_BLOCK ((K6_D + 2 * LLM_REPACK_ROWS + 63) / 64 * 64)

bool llm_repack_type(enum llm_type type) {
  return type == LLM_Q4_0 || type == LLM_Q8_0 || type == LLM_Q4_K || type == LLM_Q5_K || type == LLM_Q6_K;
}

size_t llm_repack_group_bytes(enum llm_type type, int64_t cols) {
  if (type == LLM_Q4_K || type == LLM_Q5_K) return (size_t)(cols / LLM_QK_K) * RK4_SUPER_BLOCK(type == LLM_Q5_K);
  if (type == LLM_Q6_K) return (size_t)(cols / LLM_QK_K) * K6_SUPER_BLOCK;
  const size_t blocks = (size_t)(cols / LLM_QK8_0);
  return (blocks * (values_bytes(type) + LLM_REPACK_ROWS * sizeof(uint16_t)) + 63) / 64 * 64;
}

size_t llm_repacked_bytes(enum llm_type type, int64_t rows, int64_t cols) {
  return (size_t)((rows + LLM_REPACK_ROWS - 1) / LLM_REPACK_ROWS) * llm_repack_group_bytes(type, cols);
}

static void repack_k4(int64_t cols, const void *w, size_t w_stride, int n_rows, uint8_t *group, const int FIVE_BITS) {
  for (int r = 0; r < n_rows; r++) {
    for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
      const uint8_t *raw = (const uint8_t *)w + r * w_stride + b * K4_BLOCK_BYTES(FIVE_BITS);
      const struct llm_block_q4_K *block = k4_head(raw); /* d, dmin and scales; qs at K4_QS */
      uint8_t *sb = group + b * RK4_SUPER_BLOCK(FIVE_BITS);
      for (int v = 0; v < 32; v++) memcpy(sb + RK4_VALUES + 64 * v + 4 * r, raw + K4_QS(FIVE_BITS) + 4 * v, 4);
      if (FIVE_BITS)
        for (int v = 0; v < 8; v++) memcpy(sb + RK4_QH + 64 * v + 4 * r, raw + K4_QH + 4 * v, 4);
      uint8_t sm[16];
      unpack_scales_mins(block->scales, sm);
      for (int sub = 0; sub < 8; sub++) {
        sb[RK4_SCALES + LLM_REPACK_ROWS * sub + r] = sm[sub];
        sb[RK4_MINS + 2 * LLM_REPACK_ROWS * (sub / 2) + 2 * r + sub % 2] = sm[8 + sub];
      }
      memcpy(sb + RK4_D + 2 * r, &block->d, sizeof block->d);
      memcpy(sb + RK4_DMIN + 2 * r, &block->dmin, sizeof block->dmin);
    }
  }
}

static void repack_q6_K(int64_t cols, const void *w, size_t w_stride, int n_rows, uint8_t *group) {
  for (int r = 0; r < n_rows; r++) {
    for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
      const struct llm_block_q6_K *block = (const struct llm_block_q6_K *)((const uint8_t *)w + r * w_stride) + b;
      uint8_t *sb = group + b * K6_SUPER_BLOCK;
      for (int v = 0; v < 32; v++) memcpy(sb + K6_LOW + 64 * v + 4 * r, block->ql + 4 * v, 4);
      for (int v = 0; v < 16; v++) memcpy(sb + K6_HIGH + 64 * v + 4 * r, block->qh + 4 * v, 4);
      for (int g = 0; g < 16; g++) sb[K6_SCALES + 2 * LLM_REPACK_ROWS * (g / 2) + 2 * r + g % 2] = (uint8_t)block->scales[g];
      memcpy(sb + K6_D + 2 * r, &block->d, sizeof block->d);
    }
  }
}

void llm_repack_group(enum llm_type type, int64_t cols, const void *w, size_t w_stride, int n_rows, void *group) {
  memset(group, 0, llm_repack_group_bytes(type, cols));
  if (type == LLM_Q4_K || type == LLM_Q5_K) {
    repack_k4(cols, w, w_stride, n_rows, group, type == LLM_Q5_K);
    return;
  }
  if (type == LLM_Q6_K) {
    repack_q6_K(cols, w, w_stride, n_rows, group);
    return;
  }
  const int64_t nb = cols / LLM_QK8_0;
  const size_t block_bytes = llm_type_block_bytes(type), lanes_bytes = values_bytes(type);
  const size_t qs_offset = type == LLM_Q4_0 ? offsetof(struct llm_block_q4_0, qs) : offsetof(struct llm_block_q8_0, qs);
  const uint8_t bias = type == LLM_Q8_0 ? 128 : 0;
  uint8_t *values = group;
  uint16_t *scales = (uint16_t *)(values + nb * lanes_bytes);
  for (int r = 0; r < n_rows; r++) {
    const uint8_t *row = (const uint8_t *)w + r * w_stride;
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t *block = row + b * block_bytes;
      memcpy(&scales[b * LLM_REPACK_ROWS + r], block, sizeof(uint16_t)); /* d */
      for (size_t v = 0; v < lanes_bytes / 64; v++)
        for (int i = 0; i < 4; i++) values[b * lanes_bytes + 64 * v + 4 * r + i] = (uint8_t)(block[qs_offset + 4 * v + i] + bias);
    }
  }
}

/* Blocks ahead that the kernels prefetch within a group (a group is one contiguous stream): 8-16 KiB, about a DRAM
 * latency's worth of bytes at the ~20 GB/s one core can stream. The AVX2 kernels' second half re-reads lines the
 * first brought into L2. */
#define REPACK_PREFETCH_BLOCKS 32
/* K-quant super-blocks ahead: each line the kernels read, 4 super-blocks (8-13 KiB) before they read it. Without a
 * prefetch per line the q6_K kernels on AVX2 streamed a matrix from L3 at a tenth of the AVX-512 ones' speed. */
#define REPACK_PREFETCH_SUPER_BLOCKS 4

#if LLM_HAVE_AVX2_KERNELS
/* The lines of a q6_K super-block's step (n, u): its two ql vectors and its qh vector, super-blocks ahead. */
static inline void k6_prefetch(const uint8_t *sb, int n, int u) {
  const char *ahead = (const char *)sb + REPACK_PREFETCH_SUPER_BLOCKS * K6_SUPER_BLOCK;
  _mm_prefetch(ahead + K6_LOW + 64 * (16 * n + u), _MM_HINT_T0);
  _mm_prefetch(ahead + K6_LOW + 64 * (16 * n + 8 + u), _MM_HINT_T0);
  _mm_prefetch(ahead + K6_HIGH + 64 * (8 * n + u), _MM_HINT_T0);
}
#endif

#if LLM_HAVE_AVX2_KERNELS

/* vpdpbusd (acc += the 4-byte dot products of unsigned w and signed x, per 32-bit lane) through inline assembly:
 * the VNNI instances share their code with the plain ones through a compile-time flag, and the intrinsics would need
 * the VNNI target attribute on the shared code, where the plain instances must not have it. {vex} picks the AVX-VNNI
 * encoding, which AVX2-only CPUs have. */
LLM_AVX2_INLINE __m256i dpbusd_avx2(__m256i acc, __m256i w, __m256i x) {
#if LLM_HAVE_AVX2_VNNI_KERNELS
  __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(w), "x"(x));
  return acc;
#else
  (void)w, (void)x; /* no VNNI instance is built without the instruction (cpu_features.h) */
  __builtin_unreachable();
#endif
}

LLM_AVX2_INLINE __m256i bcast4_avx2(const int8_t *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

/* Each token's 8 results of half `half` of a group, of which n_rows (from 8 half on) are real. */
LLM_AVX2_INLINE void store_half_avx2(const __m256 acc[], int n_tokens, float *out, int64_t out_stride, int half, int n_rows) {
  for (int t = 0; t < n_tokens; t++) {
    float *o = out + t * out_stride + 8 * half;
    if (n_rows >= 8) {
      _mm256_storeu_ps(o, acc[t]);
    } else {
      float lanes[8];
      _mm256_storeu_ps(lanes, acc[t]);
      memcpy(o, lanes, (size_t)n_rows * sizeof(float));
    }
  }
}

/* Rows 8 half .. 8 half + 7 of a group times TOKENS tokens (x: LLM_ACTIVATION_Q8_0_SUMS rows). */
LLM_AVX2_INLINE void group_half_avx2(int64_t cols, const uint8_t *group, const uint8_t *x, size_t x_stride, float *out,
                                     int64_t out_stride, int half, int n_rows, const int TOKENS, const int FORMAT,
                                     const int VNNI) {
  const int64_t nb = cols / LLM_QK8_0;
  const size_t lanes_bytes = values_bytes(FORMAT);
  const uint16_t *scales = (const uint16_t *)(group + nb * lanes_bytes);
  const __m256i low = _mm256_set1_epi8(0x0f), bias = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
  const int8_t *xq[4];
  const float *xd[4];
  const int32_t *xsum[4];
  for (int t = 0; t < TOKENS; t++) {
    xq[t] = (const int8_t *)(x + t * x_stride);
    xd[t] = (const float *)(xq[t] + cols);
    xsum[t] = (const int32_t *)(xd[t] + nb);
  }
  __m256 acc[4];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *vb = group + b * lanes_bytes + 32 * half;
    if (half == 0) _mm_prefetch((const char *)vb + REPACK_PREFETCH_BLOCKS * lanes_bytes, _MM_HINT_T0);
    __m256i sum[4];
    if (FORMAT == LLM_Q4_0) {
      __m256i lo[4], hi[4];
      for (int k = 0; k < 4; k++) {
        const __m256i w = _mm256_load_si256((const __m256i *)(vb + 64 * k));
        lo[k] = _mm256_and_si256(w, low);
        hi[k] = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
      }
      for (int t = 0; t < TOKENS; t++) {
        const int8_t *xb = xq[t] + b * LLM_QK8_0;
        if (VNNI) {
          __m256i s = _mm256_setzero_si256();
          for (int k = 0; k < 4; k++) {
            s = dpbusd_avx2(s, lo[k], bcast4_avx2(xb + 4 * k));
            s = dpbusd_avx2(s, hi[k], bcast4_avx2(xb + 16 + 4 * k));
          }
          sum[t] = s;
        } else {
          /* int16 pairs: 8 products of |x| <= 127 with q <= 15 stay below 2^15. */
          __m256i p = _mm256_setzero_si256();
          for (int k = 0; k < 4; k++) {
            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(lo[k], bcast4_avx2(xb + 4 * k)));
            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(hi[k], bcast4_avx2(xb + 16 + 4 * k)));
          }
          sum[t] = _mm256_madd_epi16(p, ones);
        }
        sum[t] = _mm256_sub_epi32(sum[t], _mm256_set1_epi32(8 * xsum[t][b]));
      }
    } else {
      __m256i wv[8];
      for (int g = 0; g < 8; g++) wv[g] = _mm256_load_si256((const __m256i *)(vb + 64 * g));
      for (int t = 0; t < TOKENS; t++) {
        const int8_t *xb = xq[t] + b * LLM_QK8_0;
        __m256i s = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
          if (VNNI) {
            s = dpbusd_avx2(s, wv[g], bcast4_avx2(xb + 4 * g));
          } else {
            const __m256i signed_w = _mm256_xor_si256(wv[g], bias);
            s = _mm256_add_epi32(s, llm_dot_i8(signed_w, bcast4_avx2(xb + 4 * g)));
          }
        }
        sum[t] = VNNI ? _mm256_sub_epi32(s, _mm256_set1_epi32(128 * xsum[t][b])) : s;
      }
    }
    const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + b * LLM_REPACK_ROWS + 8 * half)));
    for (int t = 0; t < TOKENS; t++)
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(sum[t]), scale), _mm256_set1_ps(xd[t][b]), acc[t]);
  }
  store_half_avx2(acc, TOKENS, out, out_stride, half, n_rows);
}

/* The pairs (sum of x over sub-block 2k, over 2k + 1) of a q8_K block as int16 pairs in one int32, k = 0..3: what
 * madd meets with the rows' (min_2k, min_2k+1). */
static inline void k4_sum_pairs(const struct llm_block_q8_K *x, int32_t pairs[4]) {
  for (int k = 0; k < 4; k++) {
    const uint16_t even = (uint16_t)(x->bsums[4 * k] + x->bsums[4 * k + 1]);
    const uint16_t odd = (uint16_t)(x->bsums[4 * k + 2] + x->bsums[4 * k + 3]);
    pairs[k] = (int32_t)((uint32_t)even | (uint32_t)odd << 16);
  }
}

/* Rows 8 half .. 8 half + 7 of a q4_K or q5_K group times TOKENS tokens (q8_K blocks). Per sub-block the int32
 * sum(x q), through vpdpbusd, or maddubs in int16 met by the scale in madd every RK4_FLUSH(FIVE_BITS) vectors (8
 * products of q <= 15 and |x| <= 128 stay below 2^15; 4 of q <= 31). q5_K's fifth bit of sub-block s is bit s of
 * its qh byte. */
#define RK4_FLUSH(FIVE_BITS) ((FIVE_BITS) ? 4 : 8)

LLM_AVX2_INLINE void k4_half_avx2(int64_t cols, const uint8_t *group, const uint8_t *x, size_t x_stride, float *out,
                                  int64_t out_stride, int half, int n_rows, const int TOKENS, const int FIVE_BITS,
                                  const int VNNI) {
  const int64_t nb = cols / LLM_QK_K;
  const __m256i low = _mm256_set1_epi8(0x0f), bit = _mm256_set1_epi8(1);
  __m256 acc[2];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *sb = group + b * RK4_SUPER_BLOCK(FIVE_BITS);
    const struct llm_block_q8_K *xb[2];
    for (int t = 0; t < TOKENS; t++) xb[t] = (const struct llm_block_q8_K *)(x + t * x_stride) + b;
    __m256i total[2];
    for (int t = 0; t < TOKENS; t++) total[t] = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
      const __m256i scale_lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + RK4_SCALES + LLM_REPACK_ROWS * (2 * j) + 8 * half)));
      const __m256i scale_hi = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sb + RK4_SCALES + LLM_REPACK_ROWS * (2 * j + 1) + 8 * half)));
      __m256i sum_lo[2], sum_hi[2];
      for (int t = 0; t < TOKENS; t++) sum_lo[t] = sum_hi[t] = _mm256_setzero_si256();
      for (int k = 0; k < 8; k++) {
        if (half == 0) _mm_prefetch((const char *)sb + REPACK_PREFETCH_SUPER_BLOCKS * RK4_SUPER_BLOCK(FIVE_BITS) + RK4_VALUES + 64 * (8 * j + k), _MM_HINT_T0);
        const __m256i w = _mm256_load_si256((const __m256i *)(sb + RK4_VALUES + 64 * (8 * j + k) + 32 * half));
        __m256i lo = _mm256_and_si256(w, low), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
        if (FIVE_BITS) {
          const __m256i h = _mm256_load_si256((const __m256i *)(sb + RK4_QH + 64 * k + 32 * half));
          lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * j), bit), 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * j + 1), bit), 4));
        }
        for (int t = 0; t < TOKENS; t++) {
          const __m256i x_lo = bcast4_avx2(xb[t]->qs + 64 * j + 4 * k), x_hi = bcast4_avx2(xb[t]->qs + 64 * j + 32 + 4 * k);
          if (VNNI) {
            sum_lo[t] = dpbusd_avx2(sum_lo[t], lo, x_lo);
            sum_hi[t] = dpbusd_avx2(sum_hi[t], hi, x_hi);
          } else {
            sum_lo[t] = _mm256_add_epi16(sum_lo[t], _mm256_maddubs_epi16(lo, x_lo));
            sum_hi[t] = _mm256_add_epi16(sum_hi[t], _mm256_maddubs_epi16(hi, x_hi));
            if (k % RK4_FLUSH(FIVE_BITS) == RK4_FLUSH(FIVE_BITS) - 1) { /* the scale in both int16 halves of madd */
              total[t] = _mm256_add_epi32(total[t], _mm256_madd_epi16(sum_lo[t], _mm256_or_si256(scale_lo, _mm256_slli_epi32(scale_lo, 16))));
              total[t] = _mm256_add_epi32(total[t], _mm256_madd_epi16(sum_hi[t], _mm256_or_si256(scale_hi, _mm256_slli_epi32(scale_hi, 16))));
              sum_lo[t] = sum_hi[t] = _mm256_setzero_si256();
            }
          }
        }
      }
      for (int t = 0; t < TOKENS && VNNI; t++) {
        total[t] = _mm256_add_epi32(total[t], _mm256_mullo_epi32(sum_lo[t], scale_lo));
        total[t] = _mm256_add_epi32(total[t], _mm256_mullo_epi32(sum_hi[t], scale_hi));
      }
    }
    __m256i mins[4];
    for (int k = 0; k < 4; k++)
      mins[k] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(sb + RK4_MINS + 2 * LLM_REPACK_ROWS * k + 16 * half)));
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sb + RK4_D + 16 * half)));
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sb + RK4_DMIN + 16 * half)));
    for (int t = 0; t < TOKENS; t++) {
      int32_t pairs[4];
      k4_sum_pairs(xb[t], pairs);
      __m256i min_sum = _mm256_setzero_si256();
      for (int k = 0; k < 4; k++) min_sum = _mm256_add_epi32(min_sum, _mm256_madd_epi16(mins[k], _mm256_set1_epi32(pairs[k])));
      const __m256 term = _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(total[t]), d), _mm256_mul_ps(_mm256_cvtepi32_ps(min_sum), dmin));
      acc[t] = _mm256_fmadd_ps(term, _mm256_set1_ps(xb[t]->d), acc[t]);
    }
  }
  store_half_avx2(acc, TOKENS, out, out_stride, half, n_rows);
}

LLM_AVX2_INLINE void gemm_k4_avx2(int64_t cols, const void *group, const void *x, size_t x_stride, float *out,
                                  int64_t out_stride, int n_rows, int n_tokens, const int FORMAT, const int VNNI) {
  const uint8_t *xs = x;
  for (int half = 0; half < 2 && 8 * half < n_rows; half++) {
#define K4_HALF_TILE(first, TOKENS)                                                                                \
  k4_half_avx2(cols, group, xs + (first) * x_stride, x_stride, out + (first) * out_stride, out_stride, half,      \
               n_rows - 8 * half, TOKENS, FORMAT == LLM_Q5_K, VNNI)
    LLM_AVX512_TOKEN_TILES(n_tokens, 2, K4_HALF_TILE);
#undef K4_HALF_TILE
  }
}

/* Rows 8 half .. 8 half + 7 of a q6_K group times TOKENS tokens (q8_K blocks). Half n of a super-block, lanes u:
 * low bytes a = ql[64 n + 4 u], b = ql[64 n + 32 + 4 u] and high bits h = qh[32 n + 4 u] give the 6-bit q of values
 * 128 n + 32 m + 4 u .. + 3 (m = 0..3: a's low nibbles, b's low, a's high, b's high; h's bits 2m, 2m + 1 on top), of
 * group 8 n + 2 m + u / 4. Per group the int32 sum(x q) through vpdpbusd,
 * then times the scale; or maddubs (2 products of q <= 63, |x| <= 128 fit int16) met by the scale in madd. The -32
 * goes as 32 sum_g scale_g sum(x over g), from the activations' 16-value sums. */
/* Group 2 m + odd's scale from the row pairs (group 2 m, 2 m + 1): as int32 (for mullo), or in both int16 halves (for
 * madd against maddubs' pairs). */
LLM_AVX2_INLINE __m256i k6_scale_avx2(__m256i pairs, int odd, const int VNNI) {
  const __m256i scale = odd ? _mm256_srai_epi32(pairs, 16) : _mm256_srai_epi32(_mm256_slli_epi32(pairs, 16), 16);
  return VNNI ? scale : _mm256_or_si256(_mm256_and_si256(scale, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(scale, 16));
}

LLM_AVX2_INLINE void k6_half_avx2(int64_t cols, const uint8_t *group, const uint8_t *x, size_t x_stride, float *out,
                                  int64_t out_stride, int half, int n_rows, const int TOKENS, const int VNNI) {
  const int64_t nb = cols / LLM_QK_K;
  const __m256i low = _mm256_set1_epi8(0x0f), top = _mm256_set1_epi8(0x30);
  __m256 acc[2];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *sb = group + b * K6_SUPER_BLOCK;
    const struct llm_block_q8_K *xb[2];
    for (int t = 0; t < TOKENS; t++) xb[t] = (const struct llm_block_q8_K *)(x + t * x_stride) + b;
    __m256i total[2];
    for (int t = 0; t < TOKENS; t++) total[t] = _mm256_setzero_si256();
    for (int n = 0; n < 2; n++) {
      /* The scales of groups 8 n + 2 m + {0, 1} as int16 pairs, per row; loaded where used (registers are short). */
#define K6_PAIRS(m) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(sb + K6_SCALES + 2 * LLM_REPACK_ROWS * (4 * n + (m)) + 16 * half)))
      for (int odd = 0; odd < 2; odd++) {
        __m256i scale[4], sum[2][4];
        for (int m = 0; m < 4; m++) {
          if (!VNNI) scale[m] = k6_scale_avx2(K6_PAIRS(m), odd, 0);
          for (int t = 0; t < TOKENS; t++) sum[t][m] = _mm256_setzero_si256();
        }
        for (int u = 4 * odd; u < 4 * odd + 4; u++) {
          if (half == 0) k6_prefetch(sb, n, u);
          const __m256i a = _mm256_load_si256((const __m256i *)(sb + K6_LOW + 64 * (16 * n + u) + 32 * half));
          const __m256i bq = _mm256_load_si256((const __m256i *)(sb + K6_LOW + 64 * (16 * n + 8 + u) + 32 * half));
          const __m256i h = _mm256_load_si256((const __m256i *)(sb + K6_HIGH + 64 * (8 * n + u) + 32 * half));
          /* One q at a time: AVX2's 16 registers hold the sums, not four unpacked vectors besides. */
          for (int m = 0; m < 4; m++) {
            const __m256i bits = m % 2 ? bq : a;
            const __m256i q = _mm256_or_si256(_mm256_and_si256(m < 2 ? bits : _mm256_srli_epi16(bits, 4), low),
                                              _mm256_and_si256(m == 0   ? _mm256_slli_epi16(h, 4)
                                                               : m == 1 ? _mm256_slli_epi16(h, 2)
                                                               : m == 2 ? h
                                                                        : _mm256_srli_epi16(h, 2),
                                                               top));
            for (int t = 0; t < TOKENS; t++) {
              const __m256i xv = bcast4_avx2(xb[t]->qs + 128 * n + 32 * m + 4 * u);
              sum[t][m] = VNNI ? dpbusd_avx2(sum[t][m], q, xv)
                               : _mm256_add_epi32(sum[t][m], _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), scale[m]));
            }
          }
        }
        /* VNNI: the scales only now, so that the loop above keeps its sums in registers. */
        for (int m = 0; m < 4; m++) {
          if (VNNI) scale[m] = k6_scale_avx2(K6_PAIRS(m), odd, 1);
          for (int t = 0; t < TOKENS; t++)
            total[t] = _mm256_add_epi32(total[t], VNNI ? _mm256_mullo_epi32(sum[t][m], scale[m]) : sum[t][m]);
        }
      }
      for (int t = 0; t < TOKENS; t++)
        for (int m = 0; m < 4; m++) {
          const __m256i group_sums = bcast4_avx2((const int8_t *)(xb[t]->bsums + 2 * (4 * n + m)));
          total[t] = _mm256_sub_epi32(total[t], _mm256_slli_epi32(_mm256_madd_epi16(K6_PAIRS(m), group_sums), 5));
        }
#undef K6_PAIRS
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sb + K6_D + 16 * half)));
    for (int t = 0; t < TOKENS; t++)
      acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(total[t]), d), _mm256_set1_ps(xb[t]->d), acc[t]);
  }
  store_half_avx2(acc, TOKENS, out, out_stride, half, n_rows);
}

LLM_AVX2_INLINE void gemm_k6_avx2(int64_t cols, const void *group, const void *x, size_t x_stride, float *out,
                                  int64_t out_stride, int n_rows, int n_tokens, const int FORMAT, const int VNNI) {
  (void)FORMAT;
  const uint8_t *xs = x;
  for (int half = 0; half < 2 && 8 * half < n_rows; half++) {
#define K6_HALF_TILE(first, TOKENS)                                                                                \
  k6_half_avx2(cols, group, xs + (first) * x_stride, x_stride, out + (first) * out_stride, out_stride, half,      \
               n_rows - 8 * half, TOKENS, VNNI)
    LLM_AVX512_TOKEN_TILES(n_tokens, 2, K6_HALF_TILE);
#undef K6_HALF_TILE
  }
}

LLM_AVX2_INLINE void gemm_avx2(int64_t cols, const void *group, const void *x, size_t x_stride, float *out,
                               int64_t out_stride, int n_rows, int n_tokens, const int FORMAT, const int VNNI) {
  const uint8_t *xs = x;
  for (int half = 0; half < 2 && 8 * half < n_rows; half++) {
    const int half_rows = n_rows - 8 * half;
#define HALF_TILE(first, TOKENS)                                                                                   \
  group_half_avx2(cols, group, xs + (first) * x_stride, x_stride, out + (first) * out_stride, out_stride, half,   \
                  half_rows, TOKENS, FORMAT, VNNI)
    LLM_AVX512_TOKEN_TILES(n_tokens, 4, HALF_TILE);
#undef HALF_TILE
  }
}

#endif

#if LLM_HAVE_AVX512_KERNELS

/* vpdpbusd on zmm: see dpbusd_avx2. */
LLM_AVX512_INLINE __m512i dpbusd_avx512(__m512i acc, __m512i w, __m512i x) {
#if LLM_HAVE_AVX512_VNNI_KERNELS
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(w), "v"(x));
  return acc;
#else
  (void)w, (void)x; /* as dpbusd_avx2 */
  __builtin_unreachable();
#endif
}

/* The 16 rows of a group times TOKENS tokens. */
LLM_AVX512_INLINE void group_avx512(int64_t cols, const uint8_t *group, const uint8_t *x, size_t x_stride, float *out,
                                    int64_t out_stride, __mmask16 mask, const int TOKENS, const int FORMAT,
                                    const int VNNI) {
  const int64_t nb = cols / LLM_QK8_0;
  const size_t lanes_bytes = values_bytes(FORMAT);
  const uint16_t *scales = (const uint16_t *)(group + nb * lanes_bytes);
  const __m512i low = _mm512_set1_epi8(0x0f), bias = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi16(1);
  const __m512i zero = _mm512_setzero_si512();
  const uint8_t *xq[8];
  const float *xd[8];
  const int32_t *xsum[8];
  for (int t = 0; t < TOKENS; t++) {
    xq[t] = x + t * x_stride;
    xd[t] = (const float *)(xq[t] + cols);
    xsum[t] = (const int32_t *)(xd[t] + nb);
  }
  __m512 acc[8];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *vb = group + b * lanes_bytes;
    /* Every line of the block ahead: one prefetch per block left three of its four lines to the hardware. */
    for (size_t line = 0; line < lanes_bytes; line += 64)
      _mm_prefetch((const char *)vb + REPACK_PREFETCH_BLOCKS * lanes_bytes + line, _MM_HINT_T0);
    __m512i sum[8];
    if (FORMAT == LLM_Q4_0) {
      __m512i lo[4], hi[4];
      for (int k = 0; k < 4; k++) {
        const __m512i w = _mm512_load_si512((const __m512i *)(vb + 64 * k));
        lo[k] = _mm512_and_si512(w, low);
        hi[k] = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
      }
      for (int t = 0; t < TOKENS; t++) {
        const uint8_t *xb = xq[t] + b * LLM_QK8_0;
        if (VNNI) {
          /* Two chains: eight dependent vpdpbusd would make a block wait on their latency. */
          __m512i s_lo = zero, s_hi = zero;
          for (int k = 0; k < 4; k++) {
            s_lo = dpbusd_avx512(s_lo, lo[k], llm_bcast4(xb + 4 * k));
            s_hi = dpbusd_avx512(s_hi, hi[k], llm_bcast4(xb + 16 + 4 * k));
          }
          sum[t] = _mm512_add_epi32(s_lo, s_hi);
        } else {
          __m512i p = zero; /* int16 pairs, as in group_half_avx2 */
          for (int k = 0; k < 4; k++) {
            p = _mm512_add_epi16(p, _mm512_maddubs_epi16(lo[k], llm_bcast4(xb + 4 * k)));
            p = _mm512_add_epi16(p, _mm512_maddubs_epi16(hi[k], llm_bcast4(xb + 16 + 4 * k)));
          }
          sum[t] = _mm512_madd_epi16(p, ones);
        }
        sum[t] = _mm512_sub_epi32(sum[t], _mm512_set1_epi32(8 * xsum[t][b]));
      }
    } else {
      __m512i wv[8], magnitude[8];
      __mmask64 negative[8];
      for (int g = 0; g < 8; g++) {
        wv[g] = _mm512_load_si512((const __m512i *)(vb + 64 * g));
        if (!VNNI) {
          /* maddubs wants |w| unsigned and x negated where w < 0 (AVX-512 has no vpsignb). */
          const __m512i signed_w = _mm512_xor_si512(wv[g], bias);
          magnitude[g] = _mm512_abs_epi8(signed_w);
          negative[g] = _mm512_movepi8_mask(signed_w);
        }
      }
      for (int t = 0; t < TOKENS; t++) {
        const uint8_t *xb = xq[t] + b * LLM_QK8_0;
        __m512i s = zero;
        for (int g = 0; g < 8; g++) {
          const __m512i xv = llm_bcast4(xb + 4 * g);
          if (VNNI) {
            s = dpbusd_avx512(s, wv[g], xv);
          } else {
            const __m512i signed_x = _mm512_mask_sub_epi8(xv, negative[g], zero, xv);
            s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_maddubs_epi16(magnitude[g], signed_x), ones));
          }
        }
        sum[t] = VNNI ? _mm512_sub_epi32(s, _mm512_set1_epi32(128 * xsum[t][b])) : s;
      }
    }
    const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + b * LLM_REPACK_ROWS)));
    for (int t = 0; t < TOKENS; t++)
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sum[t]), scale), _mm512_set1_ps(xd[t][b]), acc[t]);
  }
  for (int t = 0; t < TOKENS; t++) _mm512_mask_storeu_ps(out + t * out_stride, mask, acc[t]);
}

/* The 16 rows of a q4_K or q5_K group times TOKENS tokens: k4_half_avx2 on zmm. */
LLM_AVX512_INLINE void k4_group_avx512(int64_t cols, const uint8_t *group, const uint8_t *x, size_t x_stride, float *out,
                                       int64_t out_stride, __mmask16 mask, const int TOKENS, const int FIVE_BITS,
                                       const int VNNI) {
  const int64_t nb = cols / LLM_QK_K;
  const __m512i low = _mm512_set1_epi8(0x0f), bit = _mm512_set1_epi8(1);
  __m512 acc[4];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *sb = group + b * RK4_SUPER_BLOCK(FIVE_BITS);
    const struct llm_block_q8_K *xb[4];
    for (int t = 0; t < TOKENS; t++) xb[t] = (const struct llm_block_q8_K *)(x + t * x_stride) + b;
    __m512i total[4];
    for (int t = 0; t < TOKENS; t++) total[t] = _mm512_setzero_si512();
    for (int j = 0; j < 4; j++) {
      const __m512i scale_lo = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + RK4_SCALES + LLM_REPACK_ROWS * (2 * j))));
      const __m512i scale_hi = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + RK4_SCALES + LLM_REPACK_ROWS * (2 * j + 1))));
      __m512i sum_lo[4], sum_hi[4];
      for (int t = 0; t < TOKENS; t++) sum_lo[t] = sum_hi[t] = _mm512_setzero_si512();
      for (int k = 0; k < 8; k++) {
        const uint8_t *v = sb + RK4_VALUES + 64 * (8 * j + k);
        _mm_prefetch((const char *)v + REPACK_PREFETCH_SUPER_BLOCKS * RK4_SUPER_BLOCK(FIVE_BITS), _MM_HINT_T0);
        const __m512i w = _mm512_load_si512((const __m512i *)v);
        __m512i lo = _mm512_and_si512(w, low), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
        if (FIVE_BITS) {
          const __m512i h = _mm512_load_si512((const __m512i *)(sb + RK4_QH + 64 * k));
          if (j == 0) _mm_prefetch((const char *)sb + RK4_QH + 64 * k + REPACK_PREFETCH_SUPER_BLOCKS * RK4_SUPER_BLOCK(FIVE_BITS), _MM_HINT_T0);
          lo = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 2 * j), bit), 4));
          hi = _mm512_or_si512(hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 2 * j + 1), bit), 4));
        }
        for (int t = 0; t < TOKENS; t++) {
          const __m512i x_lo = llm_bcast4((const uint8_t *)xb[t]->qs + 64 * j + 4 * k);
          const __m512i x_hi = llm_bcast4((const uint8_t *)xb[t]->qs + 64 * j + 32 + 4 * k);
          if (VNNI) {
            sum_lo[t] = dpbusd_avx512(sum_lo[t], lo, x_lo);
            sum_hi[t] = dpbusd_avx512(sum_hi[t], hi, x_hi);
          } else {
            sum_lo[t] = _mm512_add_epi16(sum_lo[t], _mm512_maddubs_epi16(lo, x_lo));
            sum_hi[t] = _mm512_add_epi16(sum_hi[t], _mm512_maddubs_epi16(hi, x_hi));
            if (k % RK4_FLUSH(FIVE_BITS) == RK4_FLUSH(FIVE_BITS) - 1) {
              total[t] = _mm512_add_epi32(total[t], _mm512_madd_epi16(sum_lo[t], _mm512_or_si512(scale_lo, _mm512_slli_epi32(scale_lo, 16))));
              total[t] = _mm512_add_epi32(total[t], _mm512_madd_epi16(sum_hi[t], _mm512_or_si512(scale_hi, _mm512_slli_epi32(scale_hi, 16))));
              sum_lo[t] = sum_hi[t] = _mm512_setzero_si512();
            }
          }
        }
      }
      for (int t = 0; t < TOKENS && VNNI; t++) {
        total[t] = _mm512_add_epi32(total[t], _mm512_mullo_epi32(sum_lo[t], scale_lo));
        total[t] = _mm512_add_epi32(total[t], _mm512_mullo_epi32(sum_hi[t], scale_hi));
      }
    }
    __m512i mins[4];
    for (int k = 0; k < 4; k++)
      mins[k] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(sb + RK4_MINS + 2 * LLM_REPACK_ROWS * k)));
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + RK4_D)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + RK4_DMIN)));
    for (int t = 0; t < TOKENS; t++) {
      int32_t pairs[4];
      k4_sum_pairs(xb[t], pairs);
      __m512i min_sum = _mm512_setzero_si512();
      for (int k = 0; k < 4; k++) min_sum = _mm512_add_epi32(min_sum, _mm512_madd_epi16(mins[k], _mm512_set1_epi32(pairs[k])));
      const __m512 term = _mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(total[t]), d), _mm512_mul_ps(_mm512_cvtepi32_ps(min_sum), dmin));
      acc[t] = _mm512_fmadd_ps(term, _mm512_set1_ps(xb[t]->d), acc[t]);
    }
  }
  for (int t = 0; t < TOKENS; t++) _mm512_mask_storeu_ps(out + t * out_stride, mask, acc[t]);
}

LLM_AVX512_INLINE void gemm_k4_avx512(int64_t cols, const void *group, const void *x, size_t x_stride, float *out,
                                      int64_t out_stride, int n_rows, int n_tokens, const int FORMAT, const int VNNI) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
#define K4_GROUP_TILE(first, TOKENS)                                                                               \
  k4_group_avx512(cols, group, xs + (first) * x_stride, x_stride, out + (first) * out_stride, out_stride, mask,   \
                  TOKENS, FORMAT == LLM_Q5_K, VNNI)
  LLM_AVX512_TOKEN_TILES(n_tokens, 4, K4_GROUP_TILE);
#undef K4_GROUP_TILE
}

/* k6_scale_avx2 on zmm. */
LLM_AVX512_INLINE __m512i k6_scale_avx512(__m512i pairs, int odd, const int VNNI) {
  const __m512i scale = odd ? _mm512_srai_epi32(pairs, 16) : _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16);
  return VNNI ? scale : _mm512_or_si512(_mm512_and_si512(scale, _mm512_set1_epi32(0xffff)), _mm512_slli_epi32(scale, 16));
}

/* The 16 rows of a q6_K group times TOKENS tokens: k6_half_avx2 on zmm. */
LLM_AVX512_INLINE void k6_group_avx512(int64_t cols, const uint8_t *group, const uint8_t *x, size_t x_stride, float *out,
                                       int64_t out_stride, __mmask16 mask, const int TOKENS, const int VNNI) {
  const int64_t nb = cols / LLM_QK_K;
  const __m512i low = _mm512_set1_epi8(0x0f), top = _mm512_set1_epi8(0x30);
  __m512 acc[2];
  for (int t = 0; t < TOKENS; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *sb = group + b * K6_SUPER_BLOCK;
    const struct llm_block_q8_K *xb[2];
    for (int t = 0; t < TOKENS; t++) xb[t] = (const struct llm_block_q8_K *)(x + t * x_stride) + b;
    __m512i total[2];
    for (int t = 0; t < TOKENS; t++) total[t] = _mm512_setzero_si512();
    for (int n = 0; n < 2; n++) {
      __m512i pairs[4];
      for (int m = 0; m < 4; m++)
        pairs[m] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(sb + K6_SCALES + 2 * LLM_REPACK_ROWS * (4 * n + m))));
      for (int odd = 0; odd < 2; odd++) {
        __m512i scale[4], sum[2][4];
        for (int m = 0; m < 4; m++) {
          if (!VNNI) scale[m] = k6_scale_avx512(pairs[m], odd, 0);
          for (int t = 0; t < TOKENS; t++) sum[t][m] = _mm512_setzero_si512();
        }
        for (int u = 4 * odd; u < 4 * odd + 4; u++) {
          const uint8_t *a_at = sb + K6_LOW + 64 * (16 * n + u);
          k6_prefetch(sb, n, u);
          const __m512i a = _mm512_load_si512((const __m512i *)a_at);
          const __m512i bq = _mm512_load_si512((const __m512i *)(a_at + 8 * 64));
          const __m512i h = _mm512_load_si512((const __m512i *)(sb + K6_HIGH + 64 * (8 * n + u)));
          const __m512i q[4] = {
            _mm512_or_si512(_mm512_and_si512(a, low), _mm512_and_si512(_mm512_slli_epi16(h, 4), top)),
            _mm512_or_si512(_mm512_and_si512(bq, low), _mm512_and_si512(_mm512_slli_epi16(h, 2), top)),
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(a, 4), low), _mm512_and_si512(h, top)),
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(bq, 4), low), _mm512_and_si512(_mm512_srli_epi16(h, 2), top)),
          };
          for (int t = 0; t < TOKENS; t++)
            for (int m = 0; m < 4; m++) {
              const __m512i xv = llm_bcast4((const uint8_t *)xb[t]->qs + 128 * n + 32 * m + 4 * u);
              sum[t][m] = VNNI ? dpbusd_avx512(sum[t][m], q[m], xv)
                               : _mm512_add_epi32(sum[t][m], _mm512_madd_epi16(_mm512_maddubs_epi16(q[m], xv), scale[m]));
            }
        }
        for (int m = 0; m < 4; m++) {
          if (VNNI) scale[m] = k6_scale_avx512(pairs[m], odd, 1);
          for (int t = 0; t < TOKENS; t++)
            total[t] = _mm512_add_epi32(total[t], VNNI ? _mm512_mullo_epi32(sum[t][m], scale[m]) : sum[t][m]);
        }
      }
      for (int t = 0; t < TOKENS; t++)
        for (int m = 0; m < 4; m++) {
          const __m512i group_sums = llm_bcast4((const uint8_t *)(xb[t]->bsums + 2 * (4 * n + m)));
          total[t] = _mm512_sub_epi32(total[t], _mm512_slli_epi32(_mm512_madd_epi16(pairs[m], group_sums), 5));
        }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + K6_D)));
    for (int t = 0; t < TOKENS; t++)
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(total[t]), d), _mm512_set1_ps(xb[t]->d), acc[t]);
  }
  for (int t = 0; t < TOKENS; t++) _mm512_mask_storeu_ps(out + t * out_stride, mask, acc[t]);
}

LLM_AVX512_INLINE void gemm_k6_avx512(int64_t cols, const void *group, const void *x, size_t x_stride, float *out,
                                      int64_t out_stride, int n_rows, int n_tokens, const int FORMAT, const int VNNI) {
  (void)FORMAT;
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
#define K6_GROUP_TILE(first, TOKENS)                                                                               \
  k6_group_avx512(cols, group, xs + (first) * x_stride, x_stride, out + (first) * out_stride, out_stride, mask,   \
                  TOKENS, VNNI)
  LLM_AVX512_TOKEN_TILES(n_tokens, 2, K6_GROUP_TILE);
#undef K6_GROUP_TILE
}

LLM_AVX512_INLINE void gemm_avx512(int64_t cols, const void *group, const void *x, size_t x_stride, float *out,
                                   int64_t out_stride, int n_rows, int n_tokens, const int FORMAT, const int VNNI) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const uint8_t *xs = x;
#define GROUP_TILE(first, TOKENS)                                                                                  \
  group_avx512(cols, group, xs + (first) * x_stride, x_stride, out + (first) * out_stride, out_stride, mask, TOKENS, \
               FORMAT, VNNI)
  LLM_AVX512_TOKEN_TILES(n_tokens, 8, GROUP_TILE);
#undef GROUP_TILE
}

#endif

/* The entry points: one per type and set, and the tables that llm_repacked_kernel reads. */
#define DEFINE_REPACKED_GEMM(name, TARGET, gemm, FORMAT, VNNI)                                                      \
  TARGET static void name(int64_t cols, const void *group, const void *x, size_t x_stride, float *out,           \
                          int64_t out_stride, int n_rows, int n_tokens) {                                         \
    gemm(cols, group, x, x_stride, out, out_stride, n_rows, n_tokens, FORMAT, VNNI);                               \
  }

#if LLM_HAVE_AVX2_KERNELS
DEFINE_REPACKED_GEMM(gemm_q4_0_avx2, LLM_TARGET_AVX2, gemm_avx2, LLM_Q4_0, 0)
DEFINE_REPACKED_GEMM(gemm_q8_0_avx2, LLM_TARGET_AVX2, gemm_avx2, LLM_Q8_0, 0)
DEFINE_REPACKED_GEMM(gemm_q4_K_avx2, LLM_TARGET_AVX2, gemm_k4_avx2, LLM_Q4_K, 0)
DEFINE_REPACKED_GEMM(gemm_q5_K_avx2, LLM_TARGET_AVX2, gemm_k4_avx2, LLM_Q5_K, 0)
DEFINE_REPACKED_GEMM(gemm_q6_K_avx2, LLM_TARGET_AVX2, gemm_k6_avx2, LLM_Q6_K, 0)
#endif
#if LLM_HAVE_AVX2_VNNI_KERNELS
DEFINE_REPACKED_GEMM(gemm_q4_0_avx2_vnni, LLM_TARGET_AVX2, gemm_avx2, LLM_Q4_0, 1)
DEFINE_REPACKED_GEMM(gemm_q8_0_avx2_vnni, LLM_TARGET_AVX2, gemm_avx2, LLM_Q8_0, 1)
DEFINE_REPACKED_GEMM(gemm_q4_K_avx2_vnni, LLM_TARGET_AVX2, gemm_k4_avx2, LLM_Q4_K, 1)
DEFINE_REPACKED_GEMM(gemm_q5_K_avx2_vnni, LLM_TARGET_AVX2, gemm_k4_avx2, LLM_Q5_K, 1)
DEFINE_REPACKED_GEMM(gemm_q6_K_avx2_vnni, LLM_TARGET_AVX2, gemm_k6_avx2, LLM_Q6_K, 1)
#endif
#if LLM_HAVE_AVX512_KERNELS
DEFINE_REPACKED_GEMM(gemm_q4_0_avx512, LLM_TARGET_AVX512, gemm_avx512, LLM_Q4_0, 0)
DEFINE_REPACKED_GEMM(gemm_q8_0_avx512, LLM_TARGET_AVX512, gemm_avx512, LLM_Q8_0, 0)
DEFINE_REPACKED_GEMM(gemm_q4_K_avx512, LLM_TARGET_AVX512, gemm_k4_avx512, LLM_Q4_K, 0)
DEFINE_REPACKED_GEMM(gemm_q5_K_avx512, LLM_TARGET_AVX512, gemm_k4_avx512, LLM_Q5_K, 0)
DEFINE_REPACKED_GEMM(gemm_q6_K_avx512, LLM_TARGET_AVX512, gemm_k6_avx512, LLM_Q6_K, 0)
#endif
#if LLM_HAVE_AVX512_VNNI_KERNELS
DEFINE_REPACKED_GEMM(gemm_q4_0_avx512_vnni, LLM_TARGET_AVX512, gemm_avx512, LLM_Q4_0, 1)
DEFINE_REPACKED_GEMM(gemm_q8_0_avx512_vnni, LLM_TARGET_AVX512, gemm_avx512, LLM_Q8_0, 1)
DEFINE_REPACKED_GEMM(gemm_q4_K_avx512_vnni, LLM_TARGET_AVX512, gemm_k4_avx512, LLM_Q4_K, 1)
DEFINE_REPACKED_GEMM(gemm_q5_K_avx512_vnni, LLM_TARGET_AVX512, gemm_k4_avx512, LLM_Q5_K, 1)
DEFINE_REPACKED_GEMM(gemm_q6_K_avx512_vnni, LLM_TARGET_AVX512, gemm_k6_avx512, LLM_Q6_K, 1)
#endif

const struct llm_repacked_kernel *llm_repacked_kernel(enum llm_type type, enum llm_kernel_set set) {
  if (!llm_repack_type(type)) return NULL;
  /* By type: q4_0, q8_0, q4_K, q5_K, q6_K. */
  const int format = type == LLM_Q4_0 ? 0 : type == LLM_Q8_0 ? 1 : type == LLM_Q4_K ? 2 : type == LLM_Q5_K ? 3 : 4;
#define REPACKED_KERNELS(suffix)                                                                                    \
  { { LLM_ACTIVATION_Q8_0_SUMS, gemm_q4_0_##suffix }, { LLM_ACTIVATION_Q8_0_SUMS, gemm_q8_0_##suffix },            \
    { LLM_ACTIVATION_Q8_K, gemm_q4_K_##suffix }, { LLM_ACTIVATION_Q8_K, gemm_q5_K_##suffix },                       \
    { LLM_ACTIVATION_Q8_K, gemm_q6_K_##suffix } }
#if LLM_HAVE_AVX2_KERNELS
  static const struct llm_repacked_kernel avx2[5] = REPACKED_KERNELS(avx2);
  if (set == LLM_KERNELS_AVX2) return &avx2[format];
#endif
#if LLM_HAVE_AVX2_VNNI_KERNELS
  static const struct llm_repacked_kernel avx2_vnni[5] = REPACKED_KERNELS(avx2_vnni);
  if (set == LLM_KERNELS_AVX2_VNNI) return &avx2_vnni[format];
#endif
#if LLM_HAVE_AVX512_KERNELS
  static const struct llm_repacked_kernel avx512[5] = REPACKED_KERNELS(avx512);
  if (set == LLM_KERNELS_AVX512) return &avx512[format];
#endif
#if LLM_HAVE_AVX512_VNNI_KERNELS
  static const struct llm_repacked_kernel avx512_vnni[5] = REPACKED_KERNELS(avx512_vnni);
  if (set == LLM_KERNELS_AVX512_VNNI) return &avx512_vnni[format];
#endif
#undef REPACKED_KERNELS
  (void)format;
  return NULL;
}
