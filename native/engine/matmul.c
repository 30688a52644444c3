#include "matmul.h"

#include "cpu_features.h"

#if LLM_HAVE_AVX2_KERNELS
#include <immintrin.h>
#endif

/* Rows per parallel task; also the row tile of the SIMD micro-kernel. */
#define ROW_TILE 4
/* Tokens per micro-kernel call: 4 rows x 3 tokens = 12 accumulators + 4 weight registers = all 16 ymm. */
#define TOKEN_TILE 3
/* How far ahead of the loads the decode kernel prefetches weights. */
#define PREFETCH_BYTES 1024
/* Activation bytes kept hot in L2 while a thread walks its rows: bounds the tokens processed per pass. */
#define ACTIVATION_BLOCK_BYTES (256 * 1024)

void llm_matmul_rows_scalar(float *out, const struct llm_tensor *w, const float *x, int n_tokens, int64_t row_begin,
                            int64_t row_end) {
  const int64_t rows = w->rows, cols = w->cols;
  for (int64_t r = row_begin; r < row_end; r++) {
    for (int t = 0; t < n_tokens; t++) {
      const float *xt = x + (int64_t)t * cols;
      float sum = 0.0f;
      for (int64_t c = 0; c < cols; c++) sum += llm_tensor_get(w->data, w->type, r * cols + c) * xt[c];
      out[(int64_t)t * rows + r] = sum;
    }
  }
}

#if LLM_HAVE_AVX2_KERNELS

#define AVX2_INLINE static inline __attribute__((always_inline)) LLM_TARGET_AVX2

/* 8 consecutive weights from element i, widened to f32. */
AVX2_INLINE __m256 load8(const void *data, int64_t i, enum llm_type type) {
  switch (type) {
  case LLM_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)data + i)));
  case LLM_BF16: {
    __m256i widened = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)data + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(widened, 16));
  }
  default: return _mm256_loadu_ps((const float *)data + i);
  }
}

AVX2_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* out[t][row + i] for i < n_rows, t < n_tok: n_rows x n_tok dot products sharing each weight and activation
 * load. Called with constant n_rows/n_tok so the compiler unrolls the loops and keeps acc in registers. */
AVX2_INLINE void micro_kernel(float *out, const struct llm_tensor *w, enum llm_type type, const float *x, int64_t row,
                              int t0, const int n_rows, const int n_tok) {
  const int64_t cols = w->cols;
  const int64_t elem_size = type == LLM_F32 ? 4 : 2;
  const float *xt = x + (int64_t)t0 * cols;
  __m256 acc[ROW_TILE][TOKEN_TILE];
  for (int i = 0; i < n_rows; i++)
    for (int j = 0; j < n_tok; j++) acc[i][j] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    __m256 wv[ROW_TILE];
    for (int i = 0; i < n_rows; i++) wv[i] = load8(w->data, (row + i) * cols + c, type);
    if (n_tok == 1 && ((c * elem_size) & 63) == 0) {
      /* Decode is bound by memory: pull each row's next cache lines early (4 interleaved streams are more
       * than the hardware prefetchers keep ahead of on their own). */
      for (int i = 0; i < n_rows; i++)
        _mm_prefetch((const char *)w->data + ((row + i) * cols + c) * elem_size + PREFETCH_BYTES, _MM_HINT_T0);
    }
    for (int j = 0; j < n_tok; j++) {
      __m256 xv = _mm256_loadu_ps(xt + j * cols + c);
      for (int i = 0; i < n_rows; i++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  for (int i = 0; i < n_rows; i++) {
    for (int j = 0; j < n_tok; j++) {
      float sum = hsum(acc[i][j]);
      for (int64_t cc = c; cc < cols; cc++)
        sum += llm_tensor_get(w->data, type, (row + i) * cols + cc) * xt[j * cols + cc];
      out[(int64_t)(t0 + j) * w->rows + row + i] = sum;
    }
  }
}

AVX2_INLINE void rows_avx2(float *out, const struct llm_tensor *w, enum llm_type type, const float *x, int n_tokens,
                           int64_t row_begin, int64_t row_end) {
  int64_t block = ACTIVATION_BLOCK_BYTES / (w->cols * (int64_t)sizeof(float));
  int tokens_per_pass = block < TOKEN_TILE ? TOKEN_TILE : (int)(block < n_tokens ? block : n_tokens);
  for (int pass = 0; pass < n_tokens; pass += tokens_per_pass) {
    int pass_end = pass + tokens_per_pass < n_tokens ? pass + tokens_per_pass : n_tokens;
    int64_t r = row_begin;
    for (; r + ROW_TILE <= row_end; r += ROW_TILE) {
      int t = pass;
      for (; t + TOKEN_TILE <= pass_end; t += TOKEN_TILE) micro_kernel(out, w, type, x, r, t, ROW_TILE, TOKEN_TILE);
      for (; t < pass_end; t++) micro_kernel(out, w, type, x, r, t, ROW_TILE, 1);
    }
    for (; r < row_end; r++)
      for (int t = pass; t < pass_end; t++) micro_kernel(out, w, type, x, r, t, 1, 1);
  }
}

LLM_TARGET_AVX2 void llm_matmul_rows_avx2(float *out, const struct llm_tensor *w, const float *x, int n_tokens,
                                          int64_t row_begin, int64_t row_end) {
  /* One specialised copy of the loops per weight type. */
  switch (w->type) {
  case LLM_F16: rows_avx2(out, w, LLM_F16, x, n_tokens, row_begin, row_end); break;
  case LLM_BF16: rows_avx2(out, w, LLM_BF16, x, n_tokens, row_begin, row_end); break;
  default: rows_avx2(out, w, LLM_F32, x, n_tokens, row_begin, row_end); break;
  }
}

#endif

struct matmul_job {
  int n_products;
  float *const *outs;
  const struct llm_tensor *const *weights;
  const float *x;
  int n_tokens;
  void (*kernel)(float *, const struct llm_tensor *, const float *, int, int64_t, int64_t);
};

static int64_t row_tiles(const struct llm_tensor *w) { return (w->rows + ROW_TILE - 1) / ROW_TILE; }

/* Tasks number the row tiles of all products back to back; a chunk may span the end of one and the start of
 * the next. */
static void matmul_task(void *ctx, size_t begin, size_t end, int worker) {
  const struct matmul_job *job = ctx;
  int64_t first_tile = 0;
  for (int p = 0; p < job->n_products && (size_t)first_tile < end; p++) {
    const struct llm_tensor *w = job->weights[p];
    int64_t tiles = row_tiles(w);
    int64_t lo = (int64_t)begin > first_tile ? (int64_t)begin - first_tile : 0;
    int64_t hi = (int64_t)end - first_tile < tiles ? (int64_t)end - first_tile : tiles;
    if (lo < hi) {
      int64_t row_end = hi * ROW_TILE < w->rows ? hi * ROW_TILE : w->rows;
      job->kernel(job->outs[p], w, job->x, job->n_tokens, lo * ROW_TILE, row_end);
    }
    first_tile += tiles;
  }
}

void llm_matmul_many(struct llm_threadpool *pool, int n_products, float *const outs[],
                     const struct llm_tensor *const weights[], const float *x, int n_tokens) {
  struct matmul_job job = { n_products, outs, weights, x, n_tokens, llm_matmul_rows_scalar };
#if LLM_HAVE_AVX2_KERNELS
  if (llm_kernel_set() == LLM_KERNELS_AVX2) job.kernel = llm_matmul_rows_avx2;
#endif
  int64_t tiles = 0;
  for (int p = 0; p < n_products; p++) tiles += row_tiles(weights[p]);
  llm_parallel_for(pool, (size_t)tiles, matmul_task, &job);
}

void llm_matmul(struct llm_threadpool *pool, float *out, const struct llm_tensor *w, const float *x, int n_tokens) {
  llm_matmul_many(pool, 1, &out, &w, x, n_tokens);
}
