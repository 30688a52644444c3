#ifndef LLM_KV_CACHE_H
#define LLM_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* Keys and values of every position processed so far: f32 [layer][position][kvHeads * headDim]. Keys are
 * stored already rotated (RoPE applied), so a position's entries never change once written. A cache created for
 * a model with a backend lives in that backend's memory, in the same layout. */
struct llm_kv_cache {
  int context_size;
  int n_layers;
  int64_t kv_dim;
  float *keys;
  float *values;
  struct llm_backend *backend; /* NULL: keys and values are host memory */
};

/* Bytes of the keys and values of a cache of context_size positions for this model; SIZE_MAX when that overflows. */
size_t llm_kv_cache_bytes(const struct llm_model *model, int context_size);

struct llm_kv_cache *llm_kv_cache_create(const struct llm_model *model, int context_size, struct llm_error *err);
void llm_kv_cache_free(struct llm_kv_cache *cache);

/* Whether the cache was made for this model's shape. */
bool llm_kv_cache_fits(const struct llm_kv_cache *cache, const struct llm_model *model);

/* Copies positions [0, n_positions) of every layer from src into dst (a fork of a conversation). */
bool llm_kv_cache_copy(struct llm_kv_cache *dst, const struct llm_kv_cache *src, int n_positions,
                       struct llm_error *err);

/* The state of positions [0, n_positions): every layer's keys, then every layer's values, f32. What a saved
 * session stores; its size is llm_kv_cache_state_bytes. */
size_t llm_kv_cache_state_bytes(const struct llm_kv_cache *cache, int n_positions);
bool llm_kv_cache_read_state(const struct llm_kv_cache *cache, int n_positions, void *out, size_t out_bytes,
                             struct llm_error *err);
bool llm_kv_cache_write_state(struct llm_kv_cache *cache, int n_positions, const void *in, size_t in_bytes,
                              struct llm_error *err);

#endif
