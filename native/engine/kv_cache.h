#ifndef LLM_KV_CACHE_H
#define LLM_KV_CACHE_H

/* The paged KV cache (the contract between the CPU engine, the CUDA backend and the binding; session 8 design).
 *
 * One pool per model holds the keys and values of every sequence in fixed blocks of LLM_KV_BLOCK_TOKENS positions.
 * A sequence (struct llm_kv_cache) is a block table: position p lives in block blocks[p / LLM_KV_BLOCK_TOKENS],
 * slot p % LLM_KV_BLOCK_TOKENS. Memory follows the positions sequences actually hold, not contextSize each.
 *
 * Layout, read by the CPU attention and the CUDA kernels: `keys` and `values` are each
 *   n_layers x n_blocks x LLM_KV_BLOCK_TOKENS rows of row_bytes bytes,
 * layer l, block b, slot s at byte offset ((l * n_blocks + b) * LLM_KV_BLOCK_TOKENS + s) * row_bytes.
 * A row is one position's kv_dim = n_kv_heads * head_dim values, head after head, in the pool's type:
 *   LLM_KV_F32: float; LLM_KV_F16: IEEE half (uint16_t); LLM_KV_Q8_0: kv_dim / 32 struct llm_block_q8_0 (quant.h),
 *   so a head of head_dim values is head_dim / 32 whole blocks (q8_0 needs head_dim % 32 == 0).
 * Keys are stored rotated (RoPE applied): a position's row never changes once written.
 *
 * Sharing: full blocks whose tokens (and every token before them) match are shared between sequences through the
 * pool's prefix index (a chained hash of the token ids, checked against the stored ids); a block with more than one
 * owner is copied before a sequence writes into it (copy-on-write). A block no sequence owns but the index still
 * knows stays cached (its prefix can be adopted again) until the pool needs it (least recently used first). */

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define LLM_KV_BLOCK_TOKENS 32

enum llm_kv_type { LLM_KV_F32 = 0, LLM_KV_F16 = 1, LLM_KV_Q8_0 = 2 };

/* "f32", "f16", "q8_0"; NULL for an unknown code. */
const char *llm_kv_type_name(enum llm_kv_type type);

/* Bytes of one position's row of keys (or of values) in one layer. */
size_t llm_kv_row_bytes(enum llm_kv_type type, int64_t kv_dim);

struct llm_kv_pool; /* bookkeeping private to kv_cache.c, apart from the fields below */

struct llm_kv_pool_layout {
  enum llm_kv_type type;
  int n_layers;
  int64_t kv_dim;
  size_t row_bytes;
  int n_blocks;
  uint8_t *keys;               /* host memory, or the backend's device memory */
  uint8_t *values;
  struct llm_backend *backend; /* NULL: host memory */
};

/* Creates the model's pool (model->kv_pool) of at least capacity_tokens positions, rounded up to whole blocks:
 * LLM_ERR_OUT_OF_MEMORY (with .bytes) when it does not fit the host or the device, LLM_ERR_INVALID_ARGUMENT
 * (.option "kvCacheType") for q8_0 with head_dim % 32 != 0. On the host the memory is reserved, and committed only
 * as blocks are first written. The model frees it on close. */
bool llm_kv_pool_create(struct llm_model *model, enum llm_kv_type type, int64_t capacity_tokens, struct llm_error *err);
const struct llm_kv_pool_layout *llm_kv_pool_layout(const struct llm_kv_pool *pool);

/* Blocks: in total, owned by at least one sequence, cached (owned by none, still adoptable), free. Thread-safe. */
struct llm_kv_pool_usage {
  int total_blocks, used_blocks, cached_blocks, free_blocks;
};
struct llm_kv_pool_usage llm_kv_pool_usage(struct llm_kv_pool *pool);

/* One sequence: up to context_size positions of the model's pool. */
struct llm_kv_cache {
  struct llm_kv_pool *pool;
  int context_size;
  int n_positions;  /* positions [0, n_positions) hold keys and values */
  int32_t *blocks;  /* ceil(context_size / LLM_KV_BLOCK_TOKENS) block ids; -1: none yet */
  int32_t *tokens;  /* context_size token ids: the token at each held position */
};

struct llm_kv_cache *llm_kv_cache_create(struct llm_model *model, int context_size, struct llm_error *err);
/* Gives its blocks back (a block others share, or the prefix index knows, stays). */
void llm_kv_cache_free(struct llm_kv_cache *cache);

/* Makes the cache hold the longest prefix of tokens[0, n) it can without evaluating anything: the positions it
 * already holds with those ids, else (or then) full blocks of the pool's prefix index. At most n - 1 positions, so
 * that the last token is evaluated again for its logits. Drops the positions after that prefix. Returns the
 * positions held. */
int llm_kv_cache_adopt_prefix(struct llm_kv_cache *cache, const int32_t *tokens, int n);

/* Drops positions [n_positions, ...) (n_positions <= cache->n_positions). */
void llm_kv_cache_truncate(struct llm_kv_cache *cache, int n_positions);

/* Before a pass writes tokens[0, n) at positions pos.. (pos <= cache->n_positions): drops the positions from pos
 * on, gives the cache a block for every position written (copying a shared block before it is written into), and
 * records the ids. Fails with LLM_ERR_OUT_OF_MEMORY when the pool has no block left for it, having changed
 * nothing. llm_forward_batch calls it for every sequence of a batch (under the model's pass lock) and then
 * llm_kv_cache_commit once the pass has written the rows. */
bool llm_kv_cache_prepare(struct llm_kv_cache *cache, int pos, const int32_t *tokens, int n, struct llm_error *err);
/* Positions [0, end) now hold keys and values; full blocks among them join the prefix index. */
void llm_kv_cache_commit(struct llm_kv_cache *cache, int end);

/* The blocks prepare(cache, pos, ., n) would take from the pool (for a scheduler deciding what fits a pass); -1 when
 * the positions do not fit the context. */
int llm_kv_cache_blocks_needed(const struct llm_kv_cache *cache, int pos, int n);

/* A fork: dst (empty, same pool) shares src's first n_positions positions (copy-on-write). */
bool llm_kv_cache_share(struct llm_kv_cache *dst, const struct llm_kv_cache *src, int n_positions,
                        struct llm_error *err);

/* Saved state of positions [0, n_positions): every layer's keys then every layer's values, rows of the given type
 * (a session file says which). Reading in another type than the pool's converts (through f32); so does writing. */
size_t llm_kv_cache_state_bytes(const struct llm_kv_cache *cache, enum llm_kv_type type, int n_positions);
bool llm_kv_cache_read_state(const struct llm_kv_cache *cache, enum llm_kv_type type, int n_positions, void *out,
                             size_t out_bytes, struct llm_error *err);
bool llm_kv_cache_write_state(struct llm_kv_cache *cache, enum llm_kv_type type, int n_positions,
                              const int32_t *tokens, const void *in, size_t in_bytes, struct llm_error *err);

/* A layer's row of one position: position `pos` of the cache, layer `layer`, in `base` (layout.keys or .values).
 * The position must have a block (prepare gave it one). */
static inline uint8_t *llm_kv_row(const struct llm_kv_pool_layout *layout, uint8_t *base, const struct llm_kv_cache *cache,
                                  int layer, int pos) {
  const int64_t block = cache->blocks[pos / LLM_KV_BLOCK_TOKENS];
  return base + (((int64_t)layer * layout->n_blocks + block) * LLM_KV_BLOCK_TOKENS + pos % LLM_KV_BLOCK_TOKENS) *
                    (int64_t)layout->row_bytes;
}

/* One row of kv_dim values from f32 into the type (f16 round to nearest even, through F16C where the CPU has it;
 * q8_0 with the reference quantizer, kv_dim a multiple of 32), and back. */
void llm_kv_store_row(enum llm_kv_type type, const float *x, void *row, int64_t kv_dim);
void llm_kv_load_row(enum llm_kv_type type, const void *row, float *y, int64_t kv_dim);

/* The pool of a model (NULL before llm_kv_pool_create), and its release (llm_model_close calls it). */
void llm_kv_pool_free(struct llm_kv_pool *pool);

#endif
