#ifndef LLM_OPS_H
#define LLM_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "kv_cache.h"
#include "tensor.h"
#include "threadpool.h"

/* out = x / sqrt(mean(x^2) + eps) * weight, for n_rows rows of `dim` values (out may alias x). */
void llm_rmsnorm(float *out, const float *x, const struct llm_tensor *weight, int n_rows, int dim, float eps);
/* The residual add and the next norm in one pass over x, rows across the pool: x += add, then out = rmsnorm(x) (out
 * may alias add). The same bits as the add followed by llm_rmsnorm. */
void llm_add_rmsnorm(struct llm_threadpool *pool, float *x, const float *add, float *out, const struct llm_tensor *weight,
                     int n_rows, int dim, float eps);

/* Rotates each head of `vec` (n_heads * head_dim values) for position pos: pair i turns by angle
 * (float)pos * freqs[i], computed in float32. Interleaved pairs are (2i, 2i+1) (Meta/GGUF/llama2.c); otherwise
 * (i, i + head_dim/2) (HF rotate_half). */
/* The largest head size the engine accepts (real models use 64..256); rope works on one head on the stack. */
#define LLM_MAX_HEAD_DIM 1024

/* Rotates q or k of one token in place; the output is in interleaved pair order whatever the input layout. */
void llm_rope(float *vec, int n_heads, int head_dim, int pos, const float *freqs, bool interleaved);

/* out = silu(gate) * up, elementwise over n values (out may alias gate). */
void llm_swiglu(float *out, const float *gate, const float *up, int64_t n);
/* llm_swiglu over n_rows rows of `hidden` values, rows across the pool (the same bits: each value's result does not
 * depend on where it falls). */
void llm_swiglu_rows(struct llm_threadpool *pool, float *out, const float *gate, const float *up, int n_rows, int64_t hidden);

/* out = row `token` of the [vocab, dim] embedding table, converted (dequantized) to f32. */
void llm_embedding(float *out, const struct llm_tensor *table, int32_t token);

/* Causal grouped-query attention for the queries of several sequences over the paged KV cache (kv_cache.h). Each
 * sequence has n_tokens queries at positions pos.. pos+n_tokens-1: q and out are [n_tokens][n_heads * head_dim];
 * its block table places its positions 0.. pos+n_tokens-1 (all written already) in one layer's keys and values:
 * position p is row p % LLM_KV_BLOCK_TOKENS of block blocks[p / LLM_KV_BLOCK_TOKENS], at byte
 * (block * LLM_KV_BLOCK_TOKENS + row) * row_bytes, a row being n_kv_heads * head_dim values of kv_type. Query i
 * attends to positions <= pos + i. scores: n_threads scratch rows of scores_stride >= every pos + n_tokens floats. */
struct llm_attention_seq {
  float *out;
  const float *q;
  const int32_t *blocks;
  int n_tokens;
  int pos;
};
struct llm_attention_args {
  const struct llm_attention_seq *seqs;
  int n_seqs;
  float *scores;
  int64_t scores_stride;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  enum llm_kv_type kv_type;
  const uint8_t *keys;
  const uint8_t *values;
  size_t row_bytes;
};
void llm_attention(struct llm_threadpool *pool, const struct llm_attention_args *args);

/* Index of the largest value (the lowest index among equal maxima; NaNs rank below every number, as in
 * llm_top_k). */
int llm_argmax(const float *values, int n);

/* Writes the indices of the k largest values into out_ids, largest first; equal values: lower index first.
 * NaNs rank below every number. O(n log k). k must be in [1, n]. */
void llm_top_k(const float *values, int n, int k, int32_t *out_ids);

#endif
