/* Dot-product tiles for f32, f16 and bf16 weights against f32 activations. */
#include "dot.h"
#include "simd_avx2.h"
#include "simd_avx512.h"

/* Row-at-a-time reference: float accumulation in column order. */
static inline float dot_float_row(enum llm_type type, int64_t cols, const void *w, const float *x) {
  float sum = 0.0f;
  for (int64_t c = 0; c < cols; c++) sum += llm_tensor_get(w, type, c) * x[c];
  return sum;
}
static float dot_f32_row(int64_t cols, const void *w, const void *x) { return dot_float_row(LLM_F32, cols, w, x); }
static float dot_f16_row(int64_t cols, const void *w, const void *x) { return dot_float_row(LLM_F16, cols, w, x); }
static float dot_bf16_row(int64_t cols, const void *w, const void *x) { return dot_float_row(LLM_BF16, cols, w, x); }
LLM_DEFINE_SCALAR_TILE(tile_f32_scalar, dot_f32_row)
LLM_DEFINE_SCALAR_TILE(tile_f16_scalar, dot_f16_row)
LLM_DEFINE_SCALAR_TILE(tile_bf16_scalar, dot_bf16_row)
const struct llm_dot_kernel llm_dot_f32_scalar = { LLM_ACTIVATION_F32, 1, 1, tile_f32_scalar };
const struct llm_dot_kernel llm_dot_f16_scalar = { LLM_ACTIVATION_F32, 1, 1, tile_f16_scalar };
const struct llm_dot_kernel llm_dot_bf16_scalar = { LLM_ACTIVATION_F32, 1, 1, tile_bf16_scalar };

#if LLM_HAVE_AVX2_KERNELS

/* How far ahead of the loads the decode tile prefetches weights. */
#define PREFETCH_BYTES 1024

/* 8 consecutive weights from element i, widened to f32. */
LLM_AVX2_INLINE __m256 load8(const void *data, int64_t i, enum llm_type type) {
  switch (type) {
  case LLM_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)data + i)));
  case LLM_BF16: {
    __m256i widened = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)data + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(widened, 16));
  }
  default: return _mm256_loadu_ps((const float *)data + i);
  }
}

/* ROWS x TOKENS dot products sharing each weight and activation load: 4 rows x 3 tokens = 12 accumulators + 4
 * weight registers = all 16 ymm. */
LLM_AVX2_INLINE void tile_float(enum llm_type type, int64_t cols, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  const int64_t elem_size = type == LLM_F32 ? 4 : 2;
  __m256 acc[4][3];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) acc[i][j] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    __m256 wv[4];
    for (int i = 0; i < ROWS; i++) wv[i] = load8((const char *)w + i * w_stride, c, type);
    if (TOKENS == 1 && ((c * elem_size) & 63) == 0) {
      /* Decode is bound by memory: pull each row's next cache lines early (4 interleaved streams are more
       * than the hardware prefetchers keep ahead of on their own). */
      for (int i = 0; i < ROWS; i++)
        _mm_prefetch((const char *)w + i * w_stride + c * elem_size + PREFETCH_BYTES, _MM_HINT_T0);
    }
    for (int j = 0; j < TOKENS; j++) {
      __m256 xv = _mm256_loadu_ps((const float *)((const char *)x + j * x_stride) + c);
      for (int i = 0; i < ROWS; i++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  for (int i = 0; i < ROWS; i++) {
    for (int j = 0; j < TOKENS; j++) {
      const void *wr = (const char *)w + i * w_stride;
      const float *xr = (const float *)((const char *)x + j * x_stride);
      float sum = llm_hsum_ps(acc[i][j]);
      for (int64_t cc = c; cc < cols; cc++) sum += llm_tensor_get(wr, type, cc) * xr[cc];
      out[j * out_stride + i] = sum;
    }
  }
}

#define TILE_F32(...) tile_float(LLM_F32, __VA_ARGS__)
#define TILE_F16(...) tile_float(LLM_F16, __VA_ARGS__)
#define TILE_BF16(...) tile_float(LLM_BF16, __VA_ARGS__)
LLM_DEFINE_AVX2_TILE(tile_f32_avx2, TILE_F32, 4, 3)
LLM_DEFINE_AVX2_TILE(tile_f16_avx2, TILE_F16, 4, 3)
LLM_DEFINE_AVX2_TILE(tile_bf16_avx2, TILE_BF16, 4, 3)
const struct llm_dot_kernel llm_dot_f32_avx2 = { LLM_ACTIVATION_F32, 4, 3, tile_f32_avx2 };
const struct llm_dot_kernel llm_dot_f16_avx2 = { LLM_ACTIVATION_F32, 4, 3, tile_f16_avx2 };
const struct llm_dot_kernel llm_dot_bf16_avx2 = { LLM_ACTIVATION_F32, 4, 3, tile_bf16_avx2 };

#endif

#if LLM_HAVE_AVX512_KERNELS

/* 16 weights from element i (n < 16: the first n, the rest zero), widened to f32. */
LLM_AVX512_INLINE __m512 load16(const void *data, int64_t i, enum llm_type type, __mmask16 mask) {
  switch (type) {
  case LLM_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)data + i));
  case LLM_BF16:
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)data + i)), 16));
  default: return _mm512_maskz_loadu_ps(mask, (const float *)data + i);
  }
}

/* The panel path (prompt processing): per 4 columns, the 16 rows as 4 vectors of 4 rows x 4 columns (row r,
 * column c + l in lane 4 (r % 4) + l of vector r / 4), and each leftover column (cols % 4) as one vector, row r in
 * lane r. One 16-byte broadcast of a token's 4 activations then serves 4 rows per FMA: per 4 columns and a tile
 * of 6 tokens, 4 panel loads and 6 broadcasts for 24 FMAs. (With one column of 16 rows per vector and one
 * broadcast per column and token, it took 28 loads, and the layer products of stories110M and TinyLlama at 128
 * tokens ran 25-35% slower.) */
static size_t float_panel_bytes(int64_t cols) { return (size_t)cols * LLM_PANEL_ROWS * sizeof(float); }

LLM_AVX512_INLINE void pack_float(enum llm_type type, int64_t cols, const void *w, size_t w_stride, int n_rows,
                                  void *panel) {
  const int64_t body = cols / 4 * 4;
  float *out = panel;
  /* 16 columns of 4 rows at a time: a 4 x 4 transpose of their 4-column quarters. */
  for (int64_t c = 0; c < body; c += 16) {
    const int n = body - c >= 16 ? 16 : (int)(body - c);
    const __mmask16 mask = (__mmask16)((1u << n) - 1);
    for (int group = 0; group < LLM_PANEL_ROWS / 4; group++) {
      __m512 rows[4];
      for (int i = 0; i < 4; i++) {
        const int r = 4 * group + i;
        rows[i] = r < n_rows ? load16((const char *)w + r * w_stride, c, type, mask) : _mm512_setzero_ps();
      }
      const __m512 low01 = _mm512_shuffle_f32x4(rows[0], rows[1], 0x44), low23 = _mm512_shuffle_f32x4(rows[2], rows[3], 0x44);
      const __m512 high01 = _mm512_shuffle_f32x4(rows[0], rows[1], 0xee), high23 = _mm512_shuffle_f32x4(rows[2], rows[3], 0xee);
      const __m512 quarters[4] = { _mm512_shuffle_f32x4(low01, low23, 0x88), _mm512_shuffle_f32x4(low01, low23, 0xdd),
                                   _mm512_shuffle_f32x4(high01, high23, 0x88), _mm512_shuffle_f32x4(high01, high23, 0xdd) };
      for (int q = 0; q < n / 4; q++) _mm512_store_ps(out + (c + 4 * q) * LLM_PANEL_ROWS + 16 * group, quarters[q]);
    }
  }
  for (int64_t c = body; c < cols; c++)
    for (int r = 0; r < LLM_PANEL_ROWS; r++)
      out[c * LLM_PANEL_ROWS + r] = r < n_rows ? llm_tensor_get((const char *)w + r * w_stride, type, c) : 0.0f;
}

/* One row and one token sum as 4 partial sums by column modulo 4, folded as (s0 + s2) + (s1 + s3), then the
 * leftover columns one by one, unfused. The panel kernel keeps the 4 partial sums of 4 rows in one vector per
 * token; the decode kernel keeps them in the 4 lanes of one xmm per row. Same steps, same bits: a token gets the
 * same result in a batch or alone. 6 tokens x 4 vectors of accumulators + 4 panel vectors + a broadcast fill the
 * 32 registers. */
#define FLOAT_TILE_TOKENS 6

LLM_AVX512_INLINE void gemm_float_tile(int64_t cols, const float *panel, const float *x, int64_t x_stride, float *out,
                                       int64_t out_stride, __mmask16 mask, const int TOKENS) {
  const int64_t body = cols / 4 * 4;
  __m512 acc[FLOAT_TILE_TOKENS][4];
  for (int t = 0; t < TOKENS; t++)
    for (int g = 0; g < 4; g++) acc[t][g] = _mm512_setzero_ps();
  /* Unrolled twice: 3-5% faster (fewer loop instructions per FMA). */
#pragma GCC unroll 2
  for (int64_t c = 0; c < body; c += 4) {
    __m512 wv[4];
    for (int g = 0; g < 4; g++) wv[g] = _mm512_load_ps(panel + c * LLM_PANEL_ROWS + 16 * g);
    for (int t = 0; t < TOKENS; t++) {
      const __m512 xv = _mm512_broadcast_f32x4(_mm_loadu_ps(x + t * x_stride + c));
      for (int g = 0; g < 4; g++) acc[t][g] = _mm512_fmadd_ps(wv[g], xv, acc[t][g]);
    }
  }
  /* Lane 4 i of each folded vector holds row 4 g + i: gathered into row order. */
  const __m512i first_lanes = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 28, 24, 20, 16, 12, 8, 4, 0);
  for (int t = 0; t < TOKENS; t++) {
    __m512 folded[4];
    for (int g = 0; g < 4; g++) {
      const __m512 halves = _mm512_add_ps(acc[t][g], _mm512_permute_ps(acc[t][g], 0x4e)); /* s0 + s2, s1 + s3 */
      folded[g] = _mm512_add_ps(halves, _mm512_permute_ps(halves, 0xb1));
    }
    const __m512 rows_0_7 = _mm512_permutex2var_ps(folded[0], first_lanes, folded[1]);
    const __m512 rows_8_15 = _mm512_permutex2var_ps(folded[2], first_lanes, folded[3]);
    __m512 sum = _mm512_shuffle_f32x4(rows_0_7, rows_8_15, 0x44);
    for (int64_t c = body; c < cols; c++)
      sum = _mm512_add_ps(sum, _mm512_mul_ps(_mm512_load_ps(panel + c * LLM_PANEL_ROWS), _mm512_set1_ps(x[t * x_stride + c])));
    _mm512_mask_storeu_ps(out + t * out_stride, mask, sum);
  }
}

LLM_TARGET_AVX512 static void gemm_float(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                         int64_t out_stride, int n_rows, int n_tokens) {
  const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
  const float *xs = x;
  const int64_t stride = (int64_t)(x_stride / sizeof(float));
  int t = 0;
  for (; t + FLOAT_TILE_TOKENS <= n_tokens; t += FLOAT_TILE_TOKENS)
    gemm_float_tile(cols, panel, xs + t * stride, stride, out + t * out_stride, out_stride, mask, FLOAT_TILE_TOKENS);
  if (t + 4 <= n_tokens) {
    gemm_float_tile(cols, panel, xs + t * stride, stride, out + t * out_stride, out_stride, mask, 4);
    t += 4;
  }
  if (t + 2 <= n_tokens) {
    gemm_float_tile(cols, panel, xs + t * stride, stride, out + t * out_stride, out_stride, mask, 2);
    t += 2;
  }
  if (t < n_tokens) gemm_float_tile(cols, panel, xs + t * stride, stride, out + t * out_stride, out_stride, mask, 1);
}

/* 4 weights from element i widened to f32 (exactly as load16 widens them). */
LLM_AVX512_INLINE __m128 load4(const void *data, int64_t i, enum llm_type type) {
  switch (type) {
  case LLM_F16: return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)((const uint16_t *)data + i)));
  case LLM_BF16:
    return _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(_mm_loadl_epi64((const __m128i *)((const uint16_t *)data + i))), 16));
  default: return _mm_loadu_ps((const float *)data + i);
  }
}

/* Rows of one decode step that run side by side: each row is one chain of dependent FMAs (the panel's order),
 * so it takes 8 chains to cover the FMA latency on both ports. */
#define FLOAT_DECODE_ROWS 8

/* Rows shorter than this get a software prefetch of the same place in the next group of ROWS rows (read next):
 * the hardware prefetchers lock on to each row's stream too late to pay off in short rows. On longer rows they
 * keep up, and a prefetch (1 or 4 KiB ahead, or one group ahead) made a decode streamed from DRAM 0-20% slower;
 * on stories110M's rows (768 halves or floats) it makes it 12-22% faster. */
#define FLOAT_PREFETCH_MAX_ROW_BYTES 4096

/* The decode twin of gemm_float_tile: up to FLOAT_DECODE_ROWS rows at a time (independent chains), one token. */
LLM_AVX512_INLINE void rows_float(enum llm_type type, int64_t cols, const void *w, size_t w_stride, const float *x,
                                  float *out, const int ROWS) {
  const int64_t elem_size = type == LLM_F32 ? 4 : 2;
  const bool prefetch = w_stride < FLOAT_PREFETCH_MAX_ROW_BYTES;
  __m128 acc[FLOAT_DECODE_ROWS];
  for (int i = 0; i < ROWS; i++) acc[i] = _mm_setzero_ps();
  int64_t c = 0;
  if (type != LLM_F32) {
    /* Half-precision rows widen 8 values per instruction, then feed the chain 4 at a time (the same steps). ymm
     * rather than zmm conversions: while 512-bit instructions are in flight, port 1 runs no vector work, and
     * the xmm FMAs need it (a decode streamed from DRAM: 12-20% faster than widening 16 at a time). */
    for (; c + 16 <= cols; c += 16) {
      if (prefetch && ((c * elem_size) & 63) == 0)
        for (int i = 0; i < ROWS; i++) _mm_prefetch((const char *)w + (i + ROWS) * w_stride + c * elem_size, _MM_HINT_T0);
      const __m128 x0 = _mm_loadu_ps(x + c), x1 = _mm_loadu_ps(x + c + 4), x2 = _mm_loadu_ps(x + c + 8), x3 = _mm_loadu_ps(x + c + 12);
      for (int i = 0; i < ROWS; i++) {
        const __m256 lo = load8((const char *)w + i * w_stride, c, type), hi = load8((const char *)w + i * w_stride, c + 8, type);
        acc[i] = _mm_fmadd_ps(_mm256_castps256_ps128(lo), x0, acc[i]);
        acc[i] = _mm_fmadd_ps(_mm256_extractf128_ps(lo, 1), x1, acc[i]);
        acc[i] = _mm_fmadd_ps(_mm256_castps256_ps128(hi), x2, acc[i]);
        acc[i] = _mm_fmadd_ps(_mm256_extractf128_ps(hi, 1), x3, acc[i]);
      }
    }
  }
  for (; c + 4 <= cols; c += 4) {
    if (prefetch && ((c * elem_size) & 63) == 0)
      for (int i = 0; i < ROWS; i++) _mm_prefetch((const char *)w + (i + ROWS) * w_stride + c * elem_size, _MM_HINT_T0);
    const __m128 xv = _mm_loadu_ps(x + c);
    for (int i = 0; i < ROWS; i++) acc[i] = _mm_fmadd_ps(load4((const char *)w + i * w_stride, c, type), xv, acc[i]);
  }
  for (int i = 0; i < ROWS; i++) {
    const __m128 halves = _mm_add_ps(acc[i], _mm_movehl_ps(acc[i], acc[i])); /* s0 + s2, s1 + s3 */
    __m128 sum = _mm_add_ss(halves, _mm_movehdup_ps(halves));
    const void *wr = (const char *)w + i * w_stride;
    for (int64_t cc = c; cc < cols; cc++) sum = _mm_add_ss(sum, _mm_mul_ss(_mm_set_ss(llm_tensor_get(wr, type, cc)), _mm_set_ss(x[cc])));
    out[i] = _mm_cvtss_f32(sum);
  }
}

/* Most tokens of a small batch (several sequences decoding together) multiplied with each weight load. */
#define FLOAT_SMALL_BATCH_TOKENS 8

/* The same chains for 2..8 tokens at once, the activations interleaved by 4 tokens (LLM_ACTIVATION_F32_INTERLEAVED):
 * the 4 lanes of up to 4 tokens side by side in one zmm (token j of a group in lanes 4j..4j+3), each row's 4
 * weights broadcast to all four, so one weight load and one FMA serve 4 tokens. Per token and row the steps are
 * rows_float's (and so gemm_float_tile's): same bits, 4 to 8 times the work per weight byte read. */
LLM_AVX512_INLINE void rows_float_tokens(enum llm_type type, int64_t cols, const void *w, size_t w_stride,
                                         const float *x, float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  const int GROUPS = (TOKENS + 3) / 4;
  const int64_t elem_size = type == LLM_F32 ? 4 : 2, body = cols / 4 * 4;
  int group_tokens[FLOAT_SMALL_BATCH_TOKENS / 4];
  __mmask16 group_mask[FLOAT_SMALL_BATCH_TOKENS / 4];
  const float *group_x[FLOAT_SMALL_BATCH_TOKENS / 4];
  for (int g = 0; g < GROUPS; g++) {
    group_tokens[g] = TOKENS - 4 * g < 4 ? TOKENS - 4 * g : 4;
    group_mask[g] = (__mmask16)((1u << (4 * group_tokens[g])) - 1);
    group_x[g] = x + 4 * g * cols;
  }
  __m512 acc[4][FLOAT_SMALL_BATCH_TOKENS / 4];
  for (int i = 0; i < ROWS; i++)
    for (int g = 0; g < GROUPS; g++) acc[i][g] = _mm512_setzero_ps();
  for (int64_t c = 0; c < body; c += 4) {
    if (((c * elem_size) & 63) == 0)
      for (int i = 0; i < ROWS; i++) _mm_prefetch((const char *)w + i * w_stride + c * elem_size + PREFETCH_BYTES, _MM_HINT_T0);
    __m512 xv[FLOAT_SMALL_BATCH_TOKENS / 4];
    for (int g = 0; g < GROUPS; g++) xv[g] = _mm512_maskz_loadu_ps(group_mask[g], group_x[g] + c * group_tokens[g]);
    for (int i = 0; i < ROWS; i++) {
      const __m512 wv = _mm512_broadcast_f32x4(load4((const char *)w + i * w_stride, c, type));
      for (int g = 0; g < GROUPS; g++) acc[i][g] = _mm512_fmadd_ps(wv, xv[g], acc[i][g]);
    }
  }
  for (int i = 0; i < ROWS; i++) {
    const void *wr = (const char *)w + i * w_stride;
    for (int g = 0; g < GROUPS; g++) {
      /* In each token's 4 lanes: (s0 + s2) + (s1 + s3) lands in the first. */
      const __m512 halves = _mm512_add_ps(acc[i][g], _mm512_permute_ps(acc[i][g], 0x4e));
      float sums[16];
      _mm512_storeu_ps(sums, _mm512_add_ps(halves, _mm512_permute_ps(halves, 0xb1)));
      for (int j = 0; j < group_tokens[g]; j++) {
        const float *leftover = group_x[g] + body * group_tokens[g] + j * (cols - body);
        __m128 sum = _mm_set_ss(sums[4 * j]);
        for (int64_t cc = body; cc < cols; cc++)
          sum = _mm_add_ss(sum, _mm_mul_ss(_mm_set_ss(llm_tensor_get(wr, type, cc)), _mm_set_ss(leftover[cc - body])));
        out[(4 * g + j) * out_stride + i] = _mm_cvtss_f32(sum);
      }
    }
  }
}

/* n_rows x n_tokens (n_tokens <= FLOAT_SMALL_BATCH_TOKENS), rows four at a time, with compile-time tile sizes. */
LLM_AVX512_INLINE void tile_float_tokens(enum llm_type type, int64_t cols, const void *w, size_t w_stride, const float *x,
                                         float *out, int64_t out_stride, int n_rows, const int TOKENS) {
  int i = 0;
  if (TOKENS == 1) {
    for (; i + FLOAT_DECODE_ROWS <= n_rows; i += FLOAT_DECODE_ROWS)
      rows_float(type, cols, (const char *)w + i * w_stride, w_stride, x, out + i, FLOAT_DECODE_ROWS);
    for (; i + 4 <= n_rows; i += 4) rows_float(type, cols, (const char *)w + i * w_stride, w_stride, x, out + i, 4);
    for (; i < n_rows; i++) rows_float(type, cols, (const char *)w + i * w_stride, w_stride, x, out + i, 1);
    return;
  }
  for (; i + 4 <= n_rows; i += 4)
    rows_float_tokens(type, cols, (const char *)w + i * w_stride, w_stride, x, out + i, out_stride, 4, TOKENS);
  for (; i < n_rows; i++)
    rows_float_tokens(type, cols, (const char *)w + i * w_stride, w_stride, x, out + i, out_stride, 1, TOKENS);
}

/* x: the activations interleaved (LLM_ACTIVATION_F32_INTERLEAVED), starting at a group. */
LLM_AVX512_INLINE void tile_float_avx512(enum llm_type type, int64_t cols, const void *w, size_t w_stride, const void *x,
                                         float *out, int64_t out_stride, int n_rows, int n_tokens) {
#define FLOAT_TOKENS_CASE(T) \
  case T: tile_float_tokens(type, cols, w, w_stride, x, out, out_stride, n_rows, T); break;
  switch (n_tokens) {
    FLOAT_TOKENS_CASE(1) FLOAT_TOKENS_CASE(2) FLOAT_TOKENS_CASE(3) FLOAT_TOKENS_CASE(4)
    FLOAT_TOKENS_CASE(5) FLOAT_TOKENS_CASE(6) FLOAT_TOKENS_CASE(7) FLOAT_TOKENS_CASE(8)
  }
#undef FLOAT_TOKENS_CASE
}
_Static_assert(FLOAT_SMALL_BATCH_TOKENS == 8, "tile_float_avx512 has a case per token count");

LLM_TARGET_AVX512 static void tile_f32_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                              float *out, int64_t out_stride, int n_rows, int n_tokens) {
  (void)x_stride; /* cols floats per token (the interleaved layout) */
  tile_float_avx512(LLM_F32, cols, w, w_stride, x, out, out_stride, n_rows, n_tokens);
}
LLM_TARGET_AVX512 static void tile_f16_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                              float *out, int64_t out_stride, int n_rows, int n_tokens) {
  (void)x_stride; /* cols floats per token (the interleaved layout) */
  tile_float_avx512(LLM_F16, cols, w, w_stride, x, out, out_stride, n_rows, n_tokens);
}
LLM_TARGET_AVX512 static void tile_bf16_avx512(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                               float *out, int64_t out_stride, int n_rows, int n_tokens) {
  (void)x_stride; /* cols floats per token (the interleaved layout) */
  tile_float_avx512(LLM_BF16, cols, w, w_stride, x, out, out_stride, n_rows, n_tokens);
}

LLM_TARGET_AVX512 static void pack_f32(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  pack_float(LLM_F32, cols, w, w_stride, n_rows, panel);
}
LLM_TARGET_AVX512 static void pack_f16(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  pack_float(LLM_F16, cols, w, w_stride, n_rows, panel);
}
LLM_TARGET_AVX512 static void pack_bf16(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel) {
  pack_float(LLM_BF16, cols, w, w_stride, n_rows, panel);
}

/* Decode and small batches run the twins of gemm_float; from FLOAT_PANEL_MIN_TOKENS tokens on, packing a panel
 * pays for itself. */
#define FLOAT_PANEL_MIN_TOKENS 9
#define FLOAT_KERNEL(tile, pack)                                                                                   \
  { LLM_ACTIVATION_F32_INTERLEAVED, FLOAT_DECODE_ROWS, FLOAT_SMALL_BATCH_TOKENS, tile, LLM_ACTIVATION_F32, LLM_PANEL_ROWS, \
    FLOAT_PANEL_MIN_TOKENS, float_panel_bytes, pack, gemm_float }
const struct llm_dot_kernel llm_dot_f32_avx512 = FLOAT_KERNEL(tile_f32_avx512, pack_f32);
const struct llm_dot_kernel llm_dot_f16_avx512 = FLOAT_KERNEL(tile_f16_avx512, pack_f16);
const struct llm_dot_kernel llm_dot_bf16_avx512 = FLOAT_KERNEL(tile_bf16_avx512, pack_bf16);

#endif
