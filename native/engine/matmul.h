#ifndef LLM_MATMUL_H
#define LLM_MATMUL_H

#include <stdbool.h>

#include "cpu_features.h"
#include "tensor.h"
#include "threadpool.h"

/* Most products one llm_matmul_many call takes. */
#define LLM_MATMUL_MAX_PRODUCTS 8

/* out[t * w->rows + r] = sum_c W[r][c] * x[t * w->cols + c] for t < n_tokens: the weight matrix times a
 * batch of f32 activation rows. For quantized weights the activation rows are first quantized once (q8_0 or
 * q8_K, dot.h) so the inner loops are integer dot products. Rows are split across the pool; for n_tokens > 1
 * each tile of weight rows is reused across tokens from registers and cache (a matrix-matrix product).
 * Returns false only when the pool's scratch for the quantized activations cannot be allocated. */
bool llm_matmul(struct llm_threadpool *pool, float *out, const struct llm_tensor *w, const float *x, int n_tokens);

/* outs[p] = weights[p] x for p < n_products (at most LLM_MATMUL_MAX_PRODUCTS, all with the same cols):
 * several products of the same activations (q/k/v, gate/up) in one parallel loop, so the pool synchronises once
 * instead of n_products times and the activations are quantized once per format. */
bool llm_matmul_many(struct llm_threadpool *pool, int n_products, float *const outs[],
                     const struct llm_tensor *const weights[], const float *x, int n_tokens);

/* llm_matmul_many on a given kernel set rather than the CPU's best: the scalar-vs-SIMD tests. */
bool llm_matmul_many_on(struct llm_threadpool *pool, enum llm_kernel_set set, int n_products, float *const outs[],
                        const struct llm_tensor *const weights[], const float *x, int n_tokens);

#endif
