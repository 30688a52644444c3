#ifndef LLM_FORWARD_H
#define LLM_FORWARD_H

#include <stdint.h>

#include "kv_cache.h"
#include "model.h"

enum llm_logits_mode {
  LLM_LOGITS_NONE = 0, /* only fill the cache (prompt prefill whose output is not needed) */
  LLM_LOGITS_LAST = 1, /* logits: [vocab] for the sequence's last token */
  LLM_LOGITS_ALL = 2,  /* logits: [n_tokens][vocab] */
  LLM_HIDDEN_ALL = 3,  /* logits: [n_tokens][dim], every token's final-norm hidden state and no vocabulary projection
                        * (embeddings); CPU only, with top_k 0 */
};

/* Passes on the CPU hold at most this many tokens: bounds the scratch memory and keeps a pass's activations in
 * cache while the weights stream past. A longer prompt runs in several passes, each seeing the previous ones
 * through the KV cache. */
#define LLM_CPU_PASS_TOKENS 256

/* The most tokens one pass of this model holds: LLM_CPU_PASS_TOKENS, or its backend's. A caller that feeds long
 * prompts in slices (so that the sequences already decoding keep getting a token per pass) uses slices of this
 * size; llm_forward_batch itself accepts any number of tokens. */
int llm_model_pass_tokens(const struct llm_model *model);

/* One sequence's share of a batch: its tokens at positions pos.. pos+n_tokens-1, its own KV cache, its own
 * logits. Token i attends to positions <= pos + i of its own cache only. With top_k > 0, top_ids receives the ids
 * of the k largest logits of its last token (llm_top_k's order), whatever logits_mode says, and top_logits (when not
 * NULL) their logits: a sampler that needs only those gets them without the vocabulary's logits (on a device,
 * without copying them to the host). */
struct llm_batch_sequence {
  struct llm_kv_cache *cache;
  const int32_t *tokens;
  int n_tokens;
  int pos;
  float *logits;
  enum llm_logits_mode logits_mode;
  int top_k;
  int32_t *top_ids;
  float *top_logits;
};

/* Runs every sequence's tokens through the model in shared passes: one matrix product per weight for all the
 * tokens of all the sequences, attention per sequence. Each sequence's results are the same as running it
 * alone. The caches must be distinct, of this model's pool, and each pos at most the positions its cache holds
 * (a pass extends a cache, or rewrites it from pos on). Before the passes every cache is prepared
 * (llm_kv_cache_prepare), after them committed. Passes on one model are serialised (thread-safe). Returns false
 * with err filled on invalid arguments (before touching any cache), with LLM_ERR_OUT_OF_MEMORY when the KV pool
 * has no block left for one of the sequences (every cache then holds what it held before pos, nothing was run),
 * and with LLM_ERR_NUMERICAL when wanted logits (or those the top k ranks) are NaN or infinite. */
bool llm_forward_batch(struct llm_model *model, const struct llm_batch_sequence *sequences, int n_sequences,
                       struct llm_error *err);

/* One sequence: llm_forward_batch of a single entry. */
bool llm_forward(struct llm_model *model, struct llm_kv_cache *cache, const int32_t *tokens, int n_tokens, int pos,
                 float *logits, enum llm_logits_mode logits_mode, struct llm_error *err);

#endif
