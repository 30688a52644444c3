#ifndef LLM_MATMUL_H
#define LLM_MATMUL_H

#include "tensor.h"
#include "threadpool.h"

/* out[t * w->rows + r] = sum_c W[r][c] * x[t * w->cols + c] for t < n_tokens: the weight matrix times a
 * batch of f32 activation rows. Rows are split across the pool; for n_tokens > 1 each block of weight rows is
 * reused across tokens from registers and cache (a matrix-matrix product). */
void llm_matmul(struct llm_threadpool *pool, float *out, const struct llm_tensor *w, const float *x, int n_tokens);

/* outs[p] = weights[p] x for p < n_products: several products of the same activations (q/k/v, gate/up) in one
 * parallel loop, so the pool synchronises once instead of n_products times. */
void llm_matmul_many(struct llm_threadpool *pool, int n_products, float *const outs[],
                     const struct llm_tensor *const weights[], const float *x, int n_tokens);

/* The kernels behind llm_matmul, computing rows [row_begin, row_end) for every token. Exposed for the
 * scalar-vs-SIMD tests. */
void llm_matmul_rows_scalar(float *out, const struct llm_tensor *w, const float *x, int n_tokens, int64_t row_begin,
                            int64_t row_end);
#if defined(__x86_64__)
void llm_matmul_rows_avx2(float *out, const struct llm_tensor *w, const float *x, int n_tokens, int64_t row_begin,
                          int64_t row_end);
#endif

#endif
