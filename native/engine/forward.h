#ifndef LLM_FORWARD_H
#define LLM_FORWARD_H

#include <stdint.h>

#include "model.h"

/* Keys and values of every position processed so far: f32 [layer][position][kvHeads * headDim]. */
struct llm_kv_cache {
  int context_size;
  int n_layers;
  int64_t kv_dim;
  float *keys;
  float *values;
};

struct llm_kv_cache *llm_kv_cache_create(const struct llm_model *model, int context_size, struct llm_error *err);
void llm_kv_cache_free(struct llm_kv_cache *cache);

enum llm_logits_mode {
  LLM_LOGITS_NONE = 0, /* only fill the cache (prompt prefill whose output is not needed) */
  LLM_LOGITS_LAST = 1, /* logits: [vocab] for the last token */
  LLM_LOGITS_ALL = 2,  /* logits: [n_tokens][vocab] */
};

/* Runs tokens[0..n_tokens) at positions pos.. pos+n_tokens-1 through the model, writing their keys and values
 * into the cache; token i attends to positions <= pos + i. Thread-safe: passes on one model are serialised.
 * Returns false with err filled on invalid arguments or allocation failure. */
bool llm_forward(struct llm_model *model, struct llm_kv_cache *cache, const int32_t *tokens, int n_tokens, int pos,
                 float *logits, enum llm_logits_mode logits_mode, struct llm_error *err);

#endif
