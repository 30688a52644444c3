#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "ops.h"

/* Longer prompts run in chunks of this many tokens: bounds the scratch memory and keeps a chunk's activations
 * in cache while the weights stream past. Each chunk sees the previous ones through the KV cache. */
#define MAX_BATCH 256


struct llm_kv_cache *llm_kv_cache_create(const struct llm_model *model, int context_size, struct llm_error *err) {
  if (context_size < 1) {
    llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "context size %d must be at least 1", context_size);
    return NULL;
  }
  struct llm_kv_cache *cache = calloc(1, sizeof *cache);
  if (!cache) {
    llm_fail(err, LLM_ERR_SYSTEM, "out of memory");
    return NULL;
  }
  cache->context_size = context_size;
  cache->n_layers = model->config.n_layers;
  cache->kv_dim = (int64_t)model->config.n_kv_heads * model->config.head_dim;
  size_t floats, bytes;
  bool overflow = __builtin_mul_overflow((size_t)cache->n_layers * (size_t)cache->kv_dim, (size_t)context_size, &floats) ||
                  __builtin_mul_overflow(floats, sizeof(float), &bytes);
  if (!overflow) {
    cache->keys = malloc(bytes);
    cache->values = malloc(bytes);
  }
  if (!cache->keys || !cache->values) {
    llm_fail(err, LLM_ERR_SYSTEM, "out of memory allocating a KV cache of %d positions (2 x %zu MiB)", context_size,
         overflow ? SIZE_MAX >> 20 : bytes >> 20);
    llm_kv_cache_free(cache);
    return NULL;
  }
  return cache;
}

void llm_kv_cache_free(struct llm_kv_cache *cache) {
  if (!cache) return;
  free(cache->keys);
  free(cache->values);
  free(cache);
}

static bool grow(float **buffer, size_t floats) {
  float *grown = realloc(*buffer, floats * sizeof(float));
  if (!grown) return false;
  *buffer = grown;
  return true;
}

/* Makes the scratch big enough for n_tokens tokens attending over up to context_size positions. */
static bool reserve_scratch(struct llm_model *m, int n_tokens, int context_size) {
  struct llm_scratch *s = &m->scratch;
  const struct llm_config *c = &m->config;
  if (n_tokens > s->capacity_tokens) {
    size_t n = (size_t)n_tokens;
    size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    if (!grow(&s->x, n * c->dim) || !grow(&s->xb, n * c->dim) || !grow(&s->q, n * q_dim) ||
        !grow(&s->k, n * kv_dim) || !grow(&s->v, n * kv_dim) || !grow(&s->attn_out, n * q_dim) ||
        !grow(&s->hb, n * c->hidden_dim) || !grow(&s->hb2, n * c->hidden_dim))
      return false;
    s->capacity_tokens = n_tokens;
  }
  if (context_size > s->scores_stride) {
    if (!grow(&s->scores, (size_t)llm_threadpool_size(m->pool) * (size_t)context_size)) return false;
    s->scores_stride = context_size;
  }
  return true;
}

/* One chunk of at most MAX_BATCH tokens; the Llama block reads top to bottom. False when a matmul cannot get
 * scratch memory for its quantized activations. */
static bool forward_batch(struct llm_model *m, struct llm_kv_cache *cache, const int32_t *tokens, int n, int pos,
                          float *logits, enum llm_logits_mode logits_mode) {
  const struct llm_config *c = &m->config;
  struct llm_scratch *s = &m->scratch;
  struct llm_threadpool *pool = m->pool;
  const int dim = c->dim;
  const int64_t q_dim = (int64_t)c->n_heads * c->head_dim;
  const int64_t kv_dim = cache->kv_dim;
  const int64_t hidden = c->hidden_dim;
  const int64_t layer_stride = (int64_t)cache->context_size * kv_dim;

  for (int t = 0; t < n; t++) llm_embedding(s->x + (int64_t)t * dim, &m->token_embd, tokens[t]);

  for (int l = 0; l < c->n_layers; l++) {
    const struct llm_layer *layer = &m->layers[l];
    float *key_cache = cache->keys + l * layer_stride;
    float *value_cache = cache->values + l * layer_stride;

    /* Attention. */
    llm_rmsnorm(s->xb, s->x, &layer->attn_norm, n, dim, c->norm_eps);
    float *const qkv_out[] = { s->q, s->k, s->v };
    const struct llm_tensor *const qkv[] = { &layer->attn_q, &layer->attn_k, &layer->attn_v };
    if (!llm_matmul_many(pool, 3, qkv_out, qkv, s->xb, n)) return false;
    for (int t = 0; t < n; t++) {
      llm_rope(s->q + t * q_dim, c->n_heads, c->head_dim, pos + t, c->rope_freqs, c->rope_interleaved);
      llm_rope(s->k + t * kv_dim, c->n_kv_heads, c->head_dim, pos + t, c->rope_freqs, c->rope_interleaved);
    }
    memcpy(key_cache + pos * kv_dim, s->k, (size_t)(n * kv_dim) * sizeof(float));
    memcpy(value_cache + pos * kv_dim, s->v, (size_t)(n * kv_dim) * sizeof(float));
    struct llm_attention_args attention = {
      .out = s->attn_out, .q = s->q, .key_cache = key_cache, .value_cache = value_cache, .scores = s->scores,
      .scores_stride = s->scores_stride, .n_tokens = n, .pos = pos, .n_heads = c->n_heads,
      .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
    };
    llm_attention(pool, &attention);
    if (!llm_matmul(pool, s->xb, &layer->attn_output, s->attn_out, n)) return false;
    for (int64_t i = 0; i < (int64_t)n * dim; i++) s->x[i] += s->xb[i];

    /* Feed-forward: down(silu(gate(h)) * up(h)). */
    llm_rmsnorm(s->xb, s->x, &layer->ffn_norm, n, dim, c->norm_eps);
    float *const gate_up_out[] = { s->hb, s->hb2 };
    const struct llm_tensor *const gate_up[] = { &layer->ffn_gate, &layer->ffn_up };
    if (!llm_matmul_many(pool, 2, gate_up_out, gate_up, s->xb, n)) return false;
    llm_swiglu(s->hb, s->hb, s->hb2, n * hidden);
    if (!llm_matmul(pool, s->xb, &layer->ffn_down, s->hb, n)) return false;
    for (int64_t i = 0; i < (int64_t)n * dim; i++) s->x[i] += s->xb[i];
  }

  /* Final norm and the vocabulary projection, only for the positions whose logits are wanted. */
  if (logits_mode == LLM_LOGITS_NONE) return true;
  int first = logits_mode == LLM_LOGITS_ALL ? 0 : n - 1;
  llm_rmsnorm(s->xb, s->x + (int64_t)first * dim, &m->output_norm, n - first, dim, c->norm_eps);
  return llm_matmul(pool, logits, &m->output, s->xb, n - first);
}

bool llm_forward(struct llm_model *m, struct llm_kv_cache *cache, const int32_t *tokens, int n_tokens, int pos,
                 float *logits, enum llm_logits_mode logits_mode, struct llm_error *err) {
  const struct llm_config *c = &m->config;
  if (n_tokens < 1) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "no tokens to decode");
  if (pos < 0 || pos > cache->context_size - n_tokens)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "positions %d..%d do not fit in a context of %d", pos,
                pos + n_tokens - 1, cache->context_size);
  if (cache->n_layers != c->n_layers || cache->kv_dim != (int64_t)c->n_kv_heads * c->head_dim)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "KV cache was created for a different model");
  for (int i = 0; i < n_tokens; i++)
    if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
      return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "token id %d at index %d is outside the vocabulary [0, %d)",
                  tokens[i], i, c->vocab_size);

  pthread_mutex_lock(&m->forward_lock);
  bool ok = reserve_scratch(m, n_tokens < MAX_BATCH ? n_tokens : MAX_BATCH, cache->context_size);
  for (int done = 0; ok && done < n_tokens;) {
    int n = n_tokens - done < MAX_BATCH ? n_tokens - done : MAX_BATCH;
    bool last_chunk = done + n == n_tokens;
    enum llm_logits_mode mode = logits_mode == LLM_LOGITS_ALL ? LLM_LOGITS_ALL
                                : last_chunk                  ? logits_mode
                                                              : LLM_LOGITS_NONE;
    float *chunk_logits = logits_mode == LLM_LOGITS_ALL ? logits + (int64_t)done * c->vocab_size : logits;
    ok = forward_batch(m, cache, tokens + done, n, pos + done, chunk_logits, mode);
    done += n;
  }
  pthread_mutex_unlock(&m->forward_lock);
  if (!ok) return llm_fail(err, LLM_ERR_SYSTEM, "out of memory for a batch of %d tokens", n_tokens);
  return true;
}
