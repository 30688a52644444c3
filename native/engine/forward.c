/* The forward pass of a Llama model over a batch of sequences. */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "custom_ops.h"
#include "matmul.h"
#include "ops.h"
#include "tensor_check.h"

/* A run of consecutive tokens of one sequence inside a pass. */
struct piece {
  const struct llm_batch_sequence *seq;
  int first; /* index of its first token in seq->tokens */
  int n;
  int row;   /* its first row in the pass's activations */
};

static bool grow_bytes(void **buffer, size_t bytes) {
  void *grown = realloc(*buffer, bytes);
  if (!grown) return false;
  *buffer = grown;
  return true;
}

static bool grow(float **buffer, size_t floats) { return grow_bytes((void **)buffer, floats * sizeof(float)); }

/* Makes the scratch big enough for n_tokens tokens attending over up to context_size positions. */
static bool reserve_scratch(struct llm_model *m, int n_tokens, int context_size) {
  struct llm_scratch *s = &m->scratch;
  const struct llm_config *c = &m->config;
  if (n_tokens > s->capacity_tokens) {
    size_t n = (size_t)n_tokens;
    size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    if (!grow(&s->x, n * c->dim) || !grow(&s->xb, n * c->dim) || !grow(&s->q, n * q_dim) ||
        !grow(&s->k, n * kv_dim) || !grow(&s->v, n * kv_dim) || !grow(&s->attn_out, n * q_dim) ||
        !grow(&s->hb, n * c->hidden_dim) || !grow(&s->hb2, n * c->hidden_dim) ||
        !grow_bytes((void **)&s->positions, n * sizeof(int32_t)))
      return false;
    s->capacity_tokens = n_tokens;
  }
  if (context_size > s->scores_stride) {
    if (!grow(&s->scores, (size_t)llm_threadpool_size(m->pool) * (size_t)context_size)) return false;
    s->scores_stride = context_size;
  }
  return true;
}

static bool ends_sequence(const struct piece *p) { return p->first + p->n == p->seq->n_tokens; }

/* The rows of a piece whose logits are wanted: all of them, its last one when it ends its sequence (for the logits
 * or the top k), or none (hidden states only: project_logits writes those without the vocabulary product). */
static void logit_rows(const struct piece *p, int *first, int *count) {
  const struct llm_batch_sequence *seq = p->seq;
  *first = 0;
  *count = 0;
  if (seq->logits_mode == LLM_LOGITS_ALL) *count = p->n;
  else if ((seq->logits_mode == LLM_LOGITS_LAST || seq->top_k > 0) && ends_sequence(p)) {
    *first = p->n - 1;
    *count = 1;
  }
}

static float *logits_destination(const struct piece *p, int first, int vocab) {
  const int64_t token = p->seq->logits_mode == LLM_LOGITS_ALL ? p->first + first : 0;
  return p->seq->logits + token * vocab;
}

/* Fails with LLM_ERR_NUMERICAL when one of a piece's `count` rows of logits (from its row `first`) holds NaN or
 * infinity: a sampler could only pick garbage from it. A scan of vocab floats per row, next to a vocab x dim
 * product. */
static bool check_logits(const float *logits, const struct piece *p, int first, int count, int vocab,
                         struct llm_error *err) {
  for (int r = 0; r < count; r++) {
    const float *row = logits + (int64_t)r * vocab;
    const int64_t bad = llm_first_non_finite_f32(row, vocab);
    if (bad >= 0)
      return llm_fail(err, LLM_ERR_NUMERICAL,
                      "the logits at position %d are not finite (token %lld: %g): the weights hold NaN or infinity, "
                      "or the activations overflow", p->seq->pos + p->first + first + r, (long long)bad, row[bad]);
  }
  return true;
}

/* A sequence's top k ids of its last logits row (and their logits, when it asked for them apart). */
static void rank_top(const float *row, int vocab, const struct llm_batch_sequence *seq) {
  llm_top_k(row, vocab, seq->top_k, seq->top_ids);
  if (seq->top_logits)
    for (int i = 0; i < seq->top_k; i++) seq->top_logits[i] = row[seq->top_ids[i]];
}

/* Final norm and the vocabulary projection of the wanted rows of every piece: one product for all of them (the
 * output matrix is the largest; streaming it once per sequence would undo the batching). False on running out of
 * scratch memory, or with err filled (LLM_ERR_NUMERICAL) on logits that are not finite. */
static bool project_logits(struct llm_model *m, const struct piece *pieces, int n_pieces, struct llm_error *err) {
  const struct llm_config *c = &m->config;
  struct llm_scratch *s = &m->scratch;
  const int dim = c->dim, vocab = c->vocab_size;
  int n_rows = 0, n_owners = 0;
  const struct piece *owner = NULL;
  for (int i = 0; i < n_pieces; i++) {
    const struct piece *p = &pieces[i];
    if (p->seq->logits_mode == LLM_HIDDEN_ALL)
      m->ops->rmsnorm(m->ops, m->pool, s->x + (int64_t)p->row * dim, NULL, p->seq->logits + (int64_t)p->first * dim,
                      &m->output_norm, p->n, dim, c->norm_eps);
  }
  for (int i = 0; i < n_pieces; i++) {
    int first, count;
    logit_rows(&pieces[i], &first, &count);
    if (count == 0) continue;
    m->ops->rmsnorm(m->ops, m->pool, s->x + (int64_t)(pieces[i].row + first) * dim, NULL, s->xb + (int64_t)n_rows * dim,
                    &m->output_norm, count, dim, c->norm_eps);
    n_rows += count;
    n_owners++;
    owner = &pieces[i];
  }
  if (n_rows == 0) return true;
  if (n_owners == 1 && owner->seq->logits_mode != LLM_LOGITS_NONE) {
    int first, count;
    logit_rows(owner, &first, &count);
    float *logits = logits_destination(owner, first, vocab);
    if (!llm_matmul(m->pool, logits, &m->output, s->xb, n_rows)) return false;
    if (!check_logits(logits, owner, first, count, vocab, err)) return false;
    if (owner->seq->top_k > 0 && ends_sequence(owner)) rank_top(logits + (int64_t)(count - 1) * vocab, vocab, owner->seq);
    return true;
  }
  if ((int64_t)n_rows * vocab > s->logits_capacity) {
    if (!grow(&s->logits, (size_t)n_rows * (size_t)vocab)) return false;
    s->logits_capacity = (int64_t)n_rows * vocab;
  }
  if (!llm_matmul(m->pool, s->logits, &m->output, s->xb, n_rows)) return false;
  int row = 0;
  for (int i = 0; i < n_pieces; i++) {
    int first, count;
    logit_rows(&pieces[i], &first, &count);
    if (count == 0) continue;
    const struct llm_batch_sequence *seq = pieces[i].seq;
    if (!check_logits(s->logits + (int64_t)row * vocab, &pieces[i], first, count, vocab, err)) return false;
    if (seq->logits_mode != LLM_LOGITS_NONE)
      memcpy(logits_destination(&pieces[i], first, vocab), s->logits + (int64_t)row * vocab,
             (size_t)count * (size_t)vocab * sizeof(float));
    if (seq->top_k > 0 && ends_sequence(&pieces[i])) rank_top(s->logits + (int64_t)(row + count - 1) * vocab, vocab, seq);
    row += count;
  }
  return true;
}

/* One pass over n tokens made of pieces of different sequences; the Llama block reads top to bottom.
 * `attention` has room for one entry per piece. False when a matmul cannot get scratch memory, or with err
 * filled when the logits are not finite. */
static bool forward_pass(struct llm_model *m, const struct piece *pieces, int n_pieces, int n,
                         struct llm_attention_seq *attention, struct llm_error *err) {
  const struct llm_config *c = &m->config;
  struct llm_scratch *s = &m->scratch;
  struct llm_threadpool *pool = m->pool;
  const struct llm_ops *ops = m->ops; /* rmsnorm, rope, swiglu: the built-in kernels or a custom library's */
  const int dim = c->dim;
  const int64_t q_dim = (int64_t)c->n_heads * c->head_dim;
  const int64_t kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
  const int64_t hidden = c->hidden_dim;

  for (int i = 0; i < n_pieces; i++)
    for (int t = 0; t < pieces[i].n; t++) {
      llm_embedding(s->x + (int64_t)(pieces[i].row + t) * dim, &m->token_embd, pieces[i].seq->tokens[pieces[i].first + t]);
      s->positions[pieces[i].row + t] = pieces[i].seq->pos + pieces[i].first + t;
    }

  for (int l = 0; l < c->n_layers; l++) {
    const struct llm_layer *layer = &m->layers[l];

    /* Attention: shared projections, then each sequence against its own cache. The previous layer's residual add
     * goes with this norm. */
    ops->rmsnorm(ops, pool, s->x, l == 0 ? NULL : s->xb, s->xb, &layer->attn_norm, n, dim, c->norm_eps);
    float *const qkv_out[] = { s->q, s->k, s->v };
    const struct llm_tensor *const qkv[] = { &layer->attn_q, &layer->attn_k, &layer->attn_v };
    if (!llm_matmul_many(pool, 3, qkv_out, qkv, s->xb, n)) return false;
    ops->rope(ops, s->q, s->k, s->positions, n, c);
    const struct llm_kv_pool_layout *kv = llm_kv_pool_layout(m->kv_pool);
    const size_t layer_bytes = (size_t)kv->n_blocks * LLM_KV_BLOCK_TOKENS * kv->row_bytes;
    for (int i = 0; i < n_pieces; i++) {
      const struct piece *p = &pieces[i];
      const struct llm_kv_cache *cache = p->seq->cache;
      const int pos = p->seq->pos + p->first;
      for (int t = 0; t < p->n; t++) {
        llm_kv_store_row(kv->type, s->k + (p->row + t) * kv_dim, llm_kv_row(kv, kv->keys, cache, l, pos + t), kv_dim);
        llm_kv_store_row(kv->type, s->v + (p->row + t) * kv_dim, llm_kv_row(kv, kv->values, cache, l, pos + t), kv_dim);
      }
      attention[i] = (struct llm_attention_seq){
        .out = s->attn_out + p->row * q_dim, .q = s->q + p->row * q_dim, .blocks = cache->blocks, .n_tokens = p->n,
        .pos = pos,
      };
    }
    struct llm_attention_args attention_args = {
      .seqs = attention, .n_seqs = n_pieces, .scores = s->scores, .scores_stride = s->scores_stride,
      .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim, .kv_type = kv->type,
      .keys = kv->keys + l * layer_bytes, .values = kv->values + l * layer_bytes, .row_bytes = kv->row_bytes,
    };
    llm_attention(pool, &attention_args);
    if (!llm_matmul(pool, s->xb, &layer->attn_output, s->attn_out, n)) return false;

    /* Feed-forward: down(silu(gate(h)) * up(h)), after the attention's residual add. */
    ops->rmsnorm(ops, pool, s->x, s->xb, s->xb, &layer->ffn_norm, n, dim, c->norm_eps);
    float *const gate_up_out[] = { s->hb, s->hb2 };
    const struct llm_tensor *const gate_up[] = { &layer->ffn_gate, &layer->ffn_up };
    if (!llm_matmul_many(pool, 2, gate_up_out, gate_up, s->xb, n)) return false;
    ops->swiglu(ops, pool, s->hb, s->hb, s->hb2, n, hidden);
    if (!llm_matmul(pool, s->xb, &layer->ffn_down, s->hb, n)) return false;
  }
  for (int64_t i = 0; i < (int64_t)n * dim; i++) s->x[i] += s->xb[i]; /* the last layer's residual add */
  return project_logits(m, pieces, n_pieces, err);
}

static bool check_sequence(const struct llm_model *m, const struct llm_batch_sequence *seq, int index,
                           struct llm_error *err) {
  const struct llm_config *c = &m->config;
  if (!seq->cache || !seq->tokens || seq->n_tokens < 1)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "sequence %d: no tokens to decode", index);
  if (seq->cache->pool != m->kv_pool)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "sequence %d: its KV cache was created for a different model", index);
  if (seq->pos < 0) return llm_fail_argument(err, "pos", "sequence %d: position %d is negative", index, seq->pos);
  /* Positions are contiguous: a pass extends what the cache holds, or rewrites it from pos on. */
  if (seq->pos > seq->cache->n_positions)
    return llm_fail_argument(err, "pos", "sequence %d: position %d is past the %d positions its cache holds", index,
                             seq->pos, seq->cache->n_positions);
  if (seq->pos > seq->cache->context_size - seq->n_tokens)
    return llm_fail_overflow(err, (int64_t)seq->pos + seq->n_tokens, seq->cache->context_size,
                             "sequence %d: positions %d..%d do not fit in a context of %d", index, seq->pos,
                             seq->pos + seq->n_tokens - 1, seq->cache->context_size);
  if (seq->logits_mode != LLM_LOGITS_NONE && !seq->logits)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "sequence %d: logits wanted but no buffer given", index);
  if (seq->logits_mode == LLM_HIDDEN_ALL && m->backend)
    return llm_fail(err, LLM_ERR_DEVICE, "sequence %d: hidden states (embeddings) are computed on the CPU only", index);
  if (seq->logits_mode == LLM_HIDDEN_ALL && seq->top_k != 0)
    return llm_fail_argument(err, "topK", "sequence %d: hidden states come without a top k", index);
  if (seq->top_k < 0 || seq->top_k > c->vocab_size || (seq->top_k > 0 && !seq->top_ids))
    return llm_fail_argument(err, "topK", "sequence %d: top_k = %d needs 0 <= k <= %d and a buffer", index,
                             seq->top_k, c->vocab_size);
  for (int i = 0; i < seq->n_tokens; i++)
    if (seq->tokens[i] < 0 || seq->tokens[i] >= c->vocab_size)
      return llm_fail_argument(err, "tokens", "sequence %d: token id %d at index %d is outside the vocabulary [0, %d)",
                               index, seq->tokens[i], i, c->vocab_size);
  return true;
}

/* Gives every sequence's cache the blocks its tokens are written into; on failure (the pool is full) the caches
 * prepared before are truncated back to their pass's first position, so that no cache holds blocks for rows that
 * were never written. */
static bool prepare_caches(const struct llm_batch_sequence *seqs, int n_seqs, struct llm_error *err) {
  for (int i = 0; i < n_seqs; i++) {
    if (llm_kv_cache_prepare(seqs[i].cache, seqs[i].pos, seqs[i].tokens, seqs[i].n_tokens, err)) continue;
    for (int j = 0; j <= i; j++) llm_kv_cache_truncate(seqs[j].cache, seqs[j].pos);
    return false;
  }
  return true;
}

/* The passes of a prepared batch (on the backend, or here in passes of at most LLM_CPU_PASS_TOKENS tokens), then
 * the commit of every cache; a failed pass leaves each cache holding the positions before its tokens. Called with
 * the forward lock held. */
static bool run_passes(struct llm_model *m, const struct llm_batch_sequence *seqs, int n_seqs, int total,
                       int max_context, struct llm_error *err) {
  bool ok;
  if (m->backend) {
    ok = m->backend->forward_batch(m->backend, seqs, n_seqs, err);
  } else {
    /* A pass holds at most one piece of each sequence. */
    struct piece *pieces = malloc((size_t)n_seqs * sizeof *pieces);
    struct llm_attention_seq *attention = malloc((size_t)n_seqs * sizeof *attention);
    err->kind = LLM_OK;
    ok = pieces && attention &&
         reserve_scratch(m, total < LLM_CPU_PASS_TOKENS ? total : LLM_CPU_PASS_TOKENS, max_context);
    for (int seq = 0, done = 0; ok && seq < n_seqs;) {
      int rows = 0, n_pieces = 0;
      while (seq < n_seqs && rows < LLM_CPU_PASS_TOKENS) {
        const int left = seqs[seq].n_tokens - done;
        const int take = left < LLM_CPU_PASS_TOKENS - rows ? left : LLM_CPU_PASS_TOKENS - rows;
        pieces[n_pieces++] = (struct piece){ &seqs[seq], done, take, rows };
        rows += take;
        done += take;
        if (done == seqs[seq].n_tokens) {
          seq++;
          done = 0;
        }
      }
      ok = forward_pass(m, pieces, n_pieces, rows, attention, err);
    }
    free(pieces);
    free(attention);
    if (!ok && err->kind != LLM_ERR_NUMERICAL)
      llm_fail(err, LLM_ERR_SYSTEM, "out of memory for a batch of %d tokens", total);
  }
  for (int i = 0; i < n_seqs; i++) {
    if (ok) llm_kv_cache_commit(seqs[i].cache, seqs[i].pos + seqs[i].n_tokens);
    else llm_kv_cache_truncate(seqs[i].cache, seqs[i].pos);
  }
  return ok;
}

bool llm_forward_batch(struct llm_model *m, const struct llm_batch_sequence *seqs, int n_seqs, struct llm_error *err) {
  if (n_seqs < 1) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "no sequences to decode");
  int total = 0, max_context = 0;
  for (int i = 0; i < n_seqs; i++) {
    if (!check_sequence(m, &seqs[i], i, err)) return false;
    for (int j = 0; j < i; j++)
      if (seqs[j].cache == seqs[i].cache)
        return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "sequences %d and %d share a KV cache", j, i);
    total = seqs[i].n_tokens > INT32_MAX - total ? INT32_MAX : total + seqs[i].n_tokens;
    if (seqs[i].cache->context_size > max_context) max_context = seqs[i].cache->context_size;
  }
  pthread_mutex_lock(&m->forward_lock);
  const bool ok = prepare_caches(seqs, n_seqs, err) && run_passes(m, seqs, n_seqs, total, max_context, err);
  pthread_mutex_unlock(&m->forward_lock);
  return ok;
}

int llm_model_pass_tokens(const struct llm_model *m) {
  return m->backend ? m->backend->pass_tokens : LLM_CPU_PASS_TOKENS;
}

bool llm_forward(struct llm_model *m, struct llm_kv_cache *cache, const int32_t *tokens, int n_tokens, int pos,
                 float *logits, enum llm_logits_mode logits_mode, struct llm_error *err) {
  const struct llm_batch_sequence seq = { cache, tokens, n_tokens, pos, logits, logits_mode, 0, NULL };
  return llm_forward_batch(m, &seq, 1, err);
}
