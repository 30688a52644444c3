/* The paged KV cache: one pool of blocks per model, block tables per sequence, the prefix index. */
#define _GNU_SOURCE
#include "kv_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu_features.h"
#include "quant.h"
#include "simd_neon.h"

#if LLM_HAVE_AVX2_KERNELS
#include <immintrin.h>
#endif

#define BLOCK LLM_KV_BLOCK_TOKENS

/* Block flags. HASHED: the block is full and final, hash[] holds the chained hash of its ids over its
 * predecessors'. INDEXED: the prefix index finds it (at most one block per chain). */
enum { BLOCK_HASHED = 1, BLOCK_INDEXED = 2 };

/* A block is free (no owner, not indexed: on the free stack), used (refs > 0), or cached (no owner, indexed: on the
 * least-recently-used list, handed out again once no free block is left). */
struct llm_kv_pool {
  struct llm_kv_pool_layout layout;
  pthread_mutex_t lock;
  size_t bytes; /* of the keys, and as many of the values */
  int32_t *refs;
  uint8_t *flags;
  uint64_t *hash;
  int32_t *ids;       /* n_blocks x BLOCK: the token ids of HASHED blocks, to verify index hits */
  int32_t *free_list; /* a stack: the next block handed out is on top (low ids first while untouched) */
  int n_free;
  int32_t *lru_prev, *lru_next; /* the cached blocks, least recently used at lru_head */
  int lru_head, lru_tail, n_cached;
  int32_t *table; /* the prefix index: open addressing on hash, linear probing; -1 empty */
  size_t table_mask;
};

#define CHAIN_SEED 0xcbf29ce484222325ull

/* FNV-1a over the ids, chained through the predecessor's hash, then splitmix64's finaliser. */
static uint64_t chain_hash(uint64_t previous, const int32_t *ids) {
  uint64_t h = previous ^ 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < BLOCK; i++) h = (h ^ (uint32_t)ids[i]) * 0x100000001b3ull;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

const char *llm_kv_type_name(enum llm_kv_type type) {
  switch (type) {
  case LLM_KV_F32: return "f32";
  case LLM_KV_F16: return "f16";
  case LLM_KV_Q8_0: return "q8_0";
  }
  return NULL;
}

size_t llm_kv_row_bytes(enum llm_kv_type type, int64_t kv_dim) {
  if (kv_dim < 1 || kv_dim > INT32_MAX) return 0;
  switch (type) {
  case LLM_KV_F32: return (size_t)kv_dim * sizeof(float);
  case LLM_KV_F16: return (size_t)kv_dim * sizeof(uint16_t);
  case LLM_KV_Q8_0: return kv_dim % LLM_QK8_0 ? 0 : (size_t)(kv_dim / LLM_QK8_0) * sizeof(struct llm_block_q8_0);
  }
  return 0;
}

#if LLM_HAVE_AVX2_KERNELS
LLM_TARGET_AVX2 static void store_f16_f16c(const float *x, uint16_t *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) y[i] = llm_f32_to_f16(x[i]);
}
#endif
#if LLM_HAVE_NEON_KERNELS
/* NEON's conversion rounds as llm_f32_to_f16 does (kernel_tests compares them). */
static void store_f16_neon(const float *x, uint16_t *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
  for (; i < n; i++) y[i] = llm_f32_to_f16(x[i]);
}
#endif

void llm_kv_store_row(enum llm_kv_type type, const float *x, void *row, int64_t kv_dim) {
  switch (type) {
  case LLM_KV_F32: memcpy(row, x, (size_t)kv_dim * sizeof(float)); return;
  case LLM_KV_F16:
#if LLM_HAVE_AVX2_KERNELS
    if (llm_kernel_set() >= LLM_KERNELS_AVX2) {
      store_f16_f16c(x, row, kv_dim);
      return;
    }
#endif
#if LLM_HAVE_NEON_KERNELS
    if (llm_kernel_set() >= LLM_KERNELS_NEON) {
      store_f16_neon(x, row, kv_dim);
      return;
    }
#endif
    llm_quantize_row(LLM_F16, x, row, kv_dim);
    return;
  case LLM_KV_Q8_0: llm_quantize_row_q8_0_ref(x, row, kv_dim); return;
  }
}

void llm_kv_load_row(enum llm_kv_type type, const void *row, float *y, int64_t kv_dim) {
  switch (type) {
  case LLM_KV_F32: memcpy(y, row, (size_t)kv_dim * sizeof(float)); return;
  case LLM_KV_F16: llm_dequantize_row(LLM_F16, row, y, kv_dim); return;
  case LLM_KV_Q8_0: llm_dequantize_row_q8_0(row, y, kv_dim); return;
  }
}

/* ---- The pool's bookkeeping; every function below takes the pool's lock held. ---- */

static void lru_remove(struct llm_kv_pool *p, int b) {
  const int prev = p->lru_prev[b], next = p->lru_next[b];
  if (prev >= 0) p->lru_next[prev] = next;
  else p->lru_head = next;
  if (next >= 0) p->lru_prev[next] = prev;
  else p->lru_tail = prev;
  p->n_cached--;
}

static void lru_append(struct llm_kv_pool *p, int b) {
  p->lru_prev[b] = p->lru_tail;
  p->lru_next[b] = -1;
  if (p->lru_tail >= 0) p->lru_next[p->lru_tail] = b;
  else p->lru_head = b;
  p->lru_tail = b;
  p->n_cached++;
}

/* The indexed block holding `ids` at the end of the chain `h`, or -1. */
static int index_find(const struct llm_kv_pool *p, uint64_t h, const int32_t *ids) {
  for (size_t i = h & p->table_mask;; i = (i + 1) & p->table_mask) {
    const int b = p->table[i];
    if (b < 0) return -1;
    if (p->hash[b] == h && memcmp(p->ids + (int64_t)b * BLOCK, ids, BLOCK * sizeof(int32_t)) == 0) return b;
  }
}

static void index_insert(struct llm_kv_pool *p, int b) {
  size_t i = p->hash[b] & p->table_mask;
  while (p->table[i] >= 0) i = (i + 1) & p->table_mask;
  p->table[i] = b;
  p->flags[b] |= BLOCK_INDEXED;
}

/* Forgets a block's contents: out of the index (closing the gap by shifting later entries of its probe run back)
 * and no longer hashed. */
static void forget_contents(struct llm_kv_pool *p, int b) {
  if (p->flags[b] & BLOCK_INDEXED) {
    size_t i = p->hash[b] & p->table_mask;
    while (p->table[i] != b) i = (i + 1) & p->table_mask;
    for (size_t j = (i + 1) & p->table_mask; p->table[j] >= 0; j = (j + 1) & p->table_mask) {
      const size_t home = p->hash[p->table[j]] & p->table_mask;
      /* The entry at j may fill the hole at i unless its home lies cyclically in (i, j]. */
      const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!stays) {
        p->table[i] = p->table[j];
        i = j;
      }
    }
    p->table[i] = -1;
  }
  p->flags[b] = 0;
}

/* A block for a writer: a free one, else the least recently used cached one. The caller checked that one exists. */
static int take_block(struct llm_kv_pool *p) {
  int b;
  if (p->n_free > 0) {
    b = p->free_list[--p->n_free];
  } else {
    b = p->lru_head;
    lru_remove(p, b);
    forget_contents(p, b);
  }
  p->refs[b] = 1;
  return b;
}

static void retain_block(struct llm_kv_pool *p, int b) {
  if (p->refs[b]++ == 0) lru_remove(p, b); /* an owner-less block still reachable is a cached one */
}

static void release_block(struct llm_kv_pool *p, int b) {
  if (--p->refs[b] > 0) return;
  if (p->flags[b] & BLOCK_INDEXED) lru_append(p, b);
  else {
    p->flags[b] = 0;
    p->free_list[p->n_free++] = b;
  }
}

static int table_blocks(const struct llm_kv_cache *cache) { return (cache->context_size + BLOCK - 1) / BLOCK; }

/* Releases the cache's blocks from index `first` on, the last first: the least recently used of them is then the
 * end of its prefix, which is evicted before the blocks it extends. */
static void release_from(struct llm_kv_pool *p, struct llm_kv_cache *cache, int first) {
  for (int i = table_blocks(cache) - 1; i >= first; i--)
    if (cache->blocks[i] >= 0) {
      release_block(p, cache->blocks[i]);
      cache->blocks[i] = -1;
    }
}

/* ---- The pool ---- */

static void *reserve_host(size_t bytes) {
  void *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return memory == MAP_FAILED ? NULL : memory;
}

void llm_kv_pool_free(struct llm_kv_pool *p) {
  if (!p) return;
  struct llm_kv_pool_layout *l = &p->layout;
  uint8_t *const arrays[] = { l->keys, l->values };
  for (int i = 0; i < 2; i++) {
    if (!arrays[i]) continue;
    if (l->backend) l->backend->free(l->backend, arrays[i]);
    else munmap(arrays[i], p->bytes);
  }
  free(p->refs), free(p->flags), free(p->hash), free(p->ids), free(p->free_list), free(p->lru_prev), free(p->lru_next);
  free(p->table);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

/* The pool's bookkeeping arrays for n_blocks blocks, the free stack full (block 0 on top). */
static bool init_bookkeeping(struct llm_kv_pool *p, int n_blocks) {
  const size_t n = (size_t)n_blocks;
  size_t table_size = 2;
  while (table_size < 2 * n) table_size *= 2;
  p->refs = calloc(n, sizeof *p->refs);
  p->flags = calloc(n, sizeof *p->flags);
  p->hash = calloc(n, sizeof *p->hash);
  p->ids = malloc(n * BLOCK * sizeof *p->ids);
  p->free_list = malloc(n * sizeof *p->free_list);
  p->lru_prev = malloc(n * sizeof *p->lru_prev);
  p->lru_next = malloc(n * sizeof *p->lru_next);
  p->table = malloc(table_size * sizeof *p->table);
  if (!p->refs || !p->flags || !p->hash || !p->ids || !p->free_list || !p->lru_prev || !p->lru_next || !p->table)
    return false;
  for (int i = 0; i < n_blocks; i++) p->free_list[i] = n_blocks - 1 - i;
  p->n_free = n_blocks;
  p->lru_head = p->lru_tail = -1;
  memset(p->table, 0xff, table_size * sizeof *p->table);
  p->table_mask = table_size - 1;
  return true;
}

bool llm_kv_pool_create(struct llm_model *model, enum llm_kv_type type, int64_t capacity_tokens, struct llm_error *err) {
  const struct llm_config *c = &model->config;
  if (!llm_kv_type_name(type)) return llm_fail_argument(err, "kvCacheType", "unknown KV cache type code %d", (int)type);
  if (type == LLM_KV_Q8_0 && c->head_dim % LLM_QK8_0 != 0)
    return llm_fail_argument(err, "kvCacheType",
                             "a q8_0 KV cache needs a head size that is a multiple of %d; this model's is %d",
                             LLM_QK8_0, c->head_dim);
  if (capacity_tokens < 1 || capacity_tokens > (int64_t)INT32_MAX / 2)
    return llm_fail_argument(err, "kvCacheTokens", "kvCacheTokens %lld is not in [1, %d]", (long long)capacity_tokens,
                             INT32_MAX / 2);
  if (model->kv_pool) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "the model already has a KV pool");
  const int64_t kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
  const size_t row_bytes = llm_kv_row_bytes(type, kv_dim);
  const int n_blocks = (int)((capacity_tokens + BLOCK - 1) / BLOCK);
  size_t bytes = 0, both = 0;
  const bool overflow = row_bytes == 0 ||
                        __builtin_mul_overflow((size_t)c->n_layers * (size_t)BLOCK, (size_t)n_blocks, &bytes) ||
                        __builtin_mul_overflow(bytes, row_bytes, &bytes) || __builtin_mul_overflow(bytes, 2, &both);
  if (overflow)
    return llm_fail_out_of_memory(err, UINT64_MAX, "a KV pool of %d blocks of %d positions overflows the address space",
                                  n_blocks, BLOCK);
  struct llm_kv_pool *p = calloc(1, sizeof *p);
  if (!p || !init_bookkeeping(p, n_blocks)) {
    if (p) {
      pthread_mutex_init(&p->lock, NULL);
      llm_kv_pool_free(p);
    }
    return llm_fail_out_of_memory(err, (uint64_t)n_blocks * (BLOCK * 4 + 32), "out of memory for a KV pool's block table");
  }
  pthread_mutex_init(&p->lock, NULL);
  p->bytes = bytes;
  p->layout = (struct llm_kv_pool_layout){ .type = type, .n_layers = c->n_layers, .kv_dim = kv_dim,
                                           .row_bytes = row_bytes, .n_blocks = n_blocks, .backend = model->backend };
  struct llm_backend *backend = model->backend;
  if (backend) {
    struct llm_error device_err = { 0 };
    if (!(p->layout.keys = backend->alloc(backend, bytes, &device_err)) ||
        !(p->layout.values = backend->alloc(backend, bytes, &device_err))) {
      llm_kv_pool_free(p);
      /* The backend's alloc fails when the device's memory runs short (its message says how short). */
      return llm_fail_out_of_memory(err, both, "allocating a %s KV pool of %lld positions (2 x %zu MiB) on %s: %s",
                                    llm_kv_type_name(type), (long long)n_blocks * BLOCK, bytes >> 20, backend->device,
                                    device_err.message);
    }
  } else {
    /* Reserved, not committed: pages are backed as blocks are first written. A pool larger than the machine's
     * memory could not be filled without the process being killed, so it fails here. */
    const uint64_t physical = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    if (both > physical || !(p->layout.keys = reserve_host(bytes)) || !(p->layout.values = reserve_host(bytes))) {
      llm_kv_pool_free(p);
      return llm_fail_out_of_memory(err, both,
                                    "a %s KV pool of %lld positions needs %zu bytes, more than this machine's %llu bytes "
                                    "of memory: pass a smaller kvCacheTokens or contextSize",
                                    llm_kv_type_name(type), (long long)n_blocks * BLOCK, both,
                                    (unsigned long long)physical);
    }
  }
  model->kv_pool = p;
  return true;
}

const struct llm_kv_pool_layout *llm_kv_pool_layout(const struct llm_kv_pool *pool) { return &pool->layout; }

struct llm_kv_pool_usage llm_kv_pool_usage(struct llm_kv_pool *p) {
  pthread_mutex_lock(&p->lock);
  const struct llm_kv_pool_usage usage = {
    .total_blocks = p->layout.n_blocks, .cached_blocks = p->n_cached, .free_blocks = p->n_free,
    .used_blocks = p->layout.n_blocks - p->n_cached - p->n_free,
  };
  pthread_mutex_unlock(&p->lock);
  return usage;
}

/* ---- Sequences ---- */

struct llm_kv_cache *llm_kv_cache_create(struct llm_model *model, int context_size, struct llm_error *err) {
  struct llm_kv_pool *p = model->kv_pool;
  if (!p) {
    llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "the model has no KV pool (llm_kv_pool_create)");
    return NULL;
  }
  const int64_t capacity = (int64_t)p->layout.n_blocks * BLOCK;
  if (context_size < 1 || context_size > capacity) {
    /* A sequence's blocks are distinct: a context larger than the pool could never be filled. */
    llm_fail_argument(err, "contextSize", "context size %d must be in [1, %lld] (the KV pool's positions, kvCacheTokens)",
                      context_size, (long long)capacity);
    return NULL;
  }
  struct llm_kv_cache *cache = calloc(1, sizeof *cache);
  if (cache) {
    cache->pool = p;
    cache->context_size = context_size;
    cache->blocks = malloc((size_t)table_blocks(cache) * sizeof *cache->blocks);
    cache->tokens = malloc((size_t)context_size * sizeof *cache->tokens);
  }
  if (!cache || !cache->blocks || !cache->tokens) {
    if (cache) free(cache->blocks), free(cache->tokens), free(cache);
    llm_fail_out_of_memory(err, (uint64_t)context_size * 5, "out of memory for the block table of a context of %d",
                           context_size);
    return NULL;
  }
  memset(cache->blocks, 0xff, (size_t)table_blocks(cache) * sizeof *cache->blocks);
  return cache;
}

void llm_kv_cache_free(struct llm_kv_cache *cache) {
  if (!cache) return;
  pthread_mutex_lock(&cache->pool->lock);
  release_from(cache->pool, cache, 0);
  pthread_mutex_unlock(&cache->pool->lock);
  free(cache->blocks);
  free(cache->tokens);
  free(cache);
}

void llm_kv_cache_truncate(struct llm_kv_cache *cache, int n_positions) {
  if (n_positions < 0) n_positions = 0;
  if (n_positions > cache->n_positions) n_positions = cache->n_positions;
  pthread_mutex_lock(&cache->pool->lock);
  release_from(cache->pool, cache, (n_positions + BLOCK - 1) / BLOCK);
  pthread_mutex_unlock(&cache->pool->lock);
  cache->n_positions = n_positions;
}

int llm_kv_cache_adopt_prefix(struct llm_kv_cache *cache, const int32_t *tokens, int n) {
  struct llm_kv_pool *p = cache->pool;
  const int limit = n - 1 < cache->context_size ? n - 1 : cache->context_size;
  int held = 0;
  while (held < limit && held < cache->n_positions && cache->tokens[held] == tokens[held]) held++;
  pthread_mutex_lock(&p->lock);
  int block = held / BLOCK, adopted = held;
  uint64_t h = CHAIN_SEED;
  for (int i = 0; i < block; i++) h = chain_hash(h, tokens + (int64_t)i * BLOCK);
  for (; (int64_t)(block + 1) * BLOCK <= limit; block++) {
    const int32_t *ids = tokens + (int64_t)block * BLOCK;
    h = chain_hash(h, ids);
    const int found = index_find(p, h, ids);
    if (found < 0) break;
    if (cache->blocks[block] != found) {
      retain_block(p, found);
      if (cache->blocks[block] >= 0) release_block(p, cache->blocks[block]);
      cache->blocks[block] = found;
    }
    memcpy(cache->tokens + (int64_t)block * BLOCK, ids, BLOCK * sizeof(int32_t));
    adopted = (block + 1) * BLOCK;
  }
  release_from(p, cache, (adopted + BLOCK - 1) / BLOCK);
  pthread_mutex_unlock(&p->lock);
  cache->n_positions = adopted;
  return adopted;
}

/* New blocks prepare(pos, n) takes: one for each block written that the cache lacks or shares. */
static int count_needed(const struct llm_kv_cache *cache, int pos, int n) {
  const int32_t *refs = cache->pool->refs;
  int needed = 0;
  for (int i = pos / BLOCK; i <= (pos + n - 1) / BLOCK; i++) needed += cache->blocks[i] < 0 || refs[cache->blocks[i]] > 1;
  return needed;
}

int llm_kv_cache_blocks_needed(const struct llm_kv_cache *cache, int pos, int n) {
  if (n < 1) return 0;
  if (pos < 0 || pos > cache->context_size - n) return -1;
  pthread_mutex_lock(&cache->pool->lock);
  const int needed = count_needed(cache, pos, n);
  pthread_mutex_unlock(&cache->pool->lock);
  return needed;
}

/* Copies the first `rows` rows of every layer's keys and values of block `from` into block `to`. */
static bool copy_rows(struct llm_kv_pool *p, int from, int to, int rows, struct llm_error *err) {
  const struct llm_kv_pool_layout *l = &p->layout;
  uint8_t *const bases[] = { l->keys, l->values };
  for (int kv = 0; kv < 2; kv++)
    for (int layer = 0; layer < l->n_layers; layer++) {
      uint8_t *dst = bases[kv] + ((int64_t)layer * l->n_blocks + to) * BLOCK * (int64_t)l->row_bytes;
      const uint8_t *src = bases[kv] + ((int64_t)layer * l->n_blocks + from) * BLOCK * (int64_t)l->row_bytes;
      const size_t bytes = (size_t)rows * l->row_bytes;
      if (l->backend) {
        if (!l->backend->copy(l->backend, dst, src, bytes, LLM_COPY_DEVICE_TO_DEVICE, err)) return false;
      } else {
        memcpy(dst, src, bytes);
      }
    }
  return true;
}

bool llm_kv_cache_prepare(struct llm_kv_cache *cache, int pos, const int32_t *tokens, int n, struct llm_error *err) {
  if (n < 1 || pos < 0 || pos > cache->n_positions || pos > cache->context_size - n)
    return llm_fail_argument(err, "pos", "positions %d..%d do not follow the %d the cache holds within its %d", pos,
                             pos + n - 1, cache->n_positions, cache->context_size);
  struct llm_kv_pool *p = cache->pool;
  const int first = pos / BLOCK, last = (pos + n - 1) / BLOCK;
  pthread_mutex_lock(&p->lock);
  const int needed = count_needed(cache, pos, n);
  int released = 0; /* blocks past the last written that dropping them gives back */
  for (int i = last + 1; i < table_blocks(cache); i++) released += cache->blocks[i] >= 0 && p->refs[cache->blocks[i]] == 1;
  if (needed > p->n_free + p->n_cached + released) {
    const int available = p->n_free + p->n_cached + released;
    pthread_mutex_unlock(&p->lock);
    return llm_fail_out_of_memory(err, (uint64_t)needed * BLOCK * 2 * p->layout.n_layers * p->layout.row_bytes,
                                  "the KV pool is full: positions %d..%d need %d blocks of %d positions, %d are left "
                                  "(of %d; raise kvCacheTokens)",
                                  pos, pos + n - 1, needed, BLOCK, available, p->layout.n_blocks);
  }
  release_from(p, cache, last + 1);
  bool ok = true;
  for (int i = first; i <= last && ok; i++) {
    const int b = cache->blocks[i];
    if (b >= 0 && p->refs[b] == 1) {
      forget_contents(p, b); /* written in place: what the index knew of it no longer holds */
      continue;
    }
    const int fresh = take_block(p);
    if (b >= 0) {
      /* Copy-on-write: the rows before pos are the sequence's; the others' owners keep the block. */
      if (i == first && pos % BLOCK) ok = copy_rows(p, b, fresh, pos % BLOCK, err);
      release_block(p, b);
    }
    cache->blocks[i] = fresh;
  }
  pthread_mutex_unlock(&p->lock);
  memcpy(cache->tokens + pos, tokens, (size_t)n * sizeof(int32_t));
  cache->n_positions = pos;
  return ok;
}

void llm_kv_cache_commit(struct llm_kv_cache *cache, int end) {
  struct llm_kv_pool *p = cache->pool;
  cache->n_positions = end;
  const int full = end / BLOCK;
  pthread_mutex_lock(&p->lock);
  int i = full;
  while (i > 0 && !(p->flags[cache->blocks[i - 1]] & BLOCK_HASHED)) i--;
  uint64_t h = i > 0 ? p->hash[cache->blocks[i - 1]] : CHAIN_SEED;
  for (; i < full; i++) {
    const int b = cache->blocks[i];
    const int32_t *ids = cache->tokens + (int64_t)i * BLOCK;
    h = chain_hash(h, ids);
    p->hash[b] = h;
    p->flags[b] |= BLOCK_HASHED;
    memcpy(p->ids + (int64_t)b * BLOCK, ids, BLOCK * sizeof(int32_t));
    if (index_find(p, h, ids) < 0) index_insert(p, b);
  }
  pthread_mutex_unlock(&p->lock);
}

bool llm_kv_cache_share(struct llm_kv_cache *dst, const struct llm_kv_cache *src, int n_positions,
                        struct llm_error *err) {
  if (dst->pool != src->pool || dst == src)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "a KV cache is shared into another cache of the same model");
  if (n_positions < 0 || n_positions > dst->context_size)
    return llm_fail_argument(err, "nPositions", "%d positions do not fit a context of %d", n_positions,
                             dst->context_size);
  if (n_positions > src->n_positions)
    return llm_fail_argument(err, "nPositions", "the source holds %d positions, not %d", src->n_positions, n_positions);
  struct llm_kv_pool *p = dst->pool;
  pthread_mutex_lock(&p->lock);
  release_from(p, dst, 0);
  for (int i = 0; i < (n_positions + BLOCK - 1) / BLOCK; i++) {
    retain_block(p, src->blocks[i]);
    dst->blocks[i] = src->blocks[i];
  }
  pthread_mutex_unlock(&p->lock);
  memcpy(dst->tokens, src->tokens, (size_t)n_positions * sizeof(int32_t));
  dst->n_positions = n_positions;
  return true;
}

/* ---- Saved state ---- */

size_t llm_kv_cache_state_bytes(const struct llm_kv_cache *cache, enum llm_kv_type type, int n_positions) {
  const struct llm_kv_pool_layout *l = &cache->pool->layout;
  size_t bytes;
  const size_t row = llm_kv_row_bytes(type, l->kv_dim);
  if (row == 0 || n_positions < 0 ||
      __builtin_mul_overflow((size_t)2 * (size_t)l->n_layers * (size_t)n_positions, row, &bytes))
    return SIZE_MAX;
  return bytes;
}

static bool check_state(const struct llm_kv_cache *cache, enum llm_kv_type type, int n_positions, int limit,
                        size_t bytes, struct llm_error *err) {
  if (!llm_kv_type_name(type)) return llm_fail_argument(err, "type", "unknown KV cache type code %d", (int)type);
  const size_t expected = llm_kv_cache_state_bytes(cache, type, n_positions);
  if (expected == SIZE_MAX)
    return llm_fail_argument(err, "type", "a %s state does not fit rows of %lld values", llm_kv_type_name(type),
                             (long long)cache->pool->layout.kv_dim);
  if (n_positions < 0 || n_positions > limit)
    return llm_fail_argument(err, "nPositions", "%d positions do not fit a context of %d (holding %d)", n_positions,
                             cache->context_size, cache->n_positions);
  if (bytes != expected)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "a %s state of %d positions is %zu bytes, not %zu",
                    llm_kv_type_name(type), n_positions, expected, bytes);
  return true;
}

/* The rows of one block of one layer, as a state of `type` holds them, to or from the pool (converting through
 * f32 when the types differ). `staging` holds a block of the pool's rows (device pools) and `row` a row of floats. */
struct state_io {
  struct llm_kv_cache *cache;
  enum llm_kv_type type;
  size_t state_row;
  uint8_t *staging;
  float *row;
};

static bool read_block(const struct state_io *io, const uint8_t *rows, int count, uint8_t *out, struct llm_error *err) {
  const struct llm_kv_pool_layout *l = &io->cache->pool->layout;
  if (l->backend) {
    if (!l->backend->copy(l->backend, io->staging, rows, (size_t)count * l->row_bytes, LLM_COPY_DEVICE_TO_HOST, err))
      return false;
    rows = io->staging;
  }
  for (int r = 0; r < count; r++) {
    const uint8_t *src = rows + (size_t)r * l->row_bytes;
    uint8_t *dst = out + (size_t)r * io->state_row;
    if (io->type == l->type) {
      memcpy(dst, src, l->row_bytes);
    } else {
      llm_kv_load_row(l->type, src, io->row, l->kv_dim);
      llm_kv_store_row(io->type, io->row, dst, l->kv_dim);
    }
  }
  return true;
}

static bool write_block(const struct state_io *io, uint8_t *rows, int count, const uint8_t *in, struct llm_error *err) {
  const struct llm_kv_pool_layout *l = &io->cache->pool->layout;
  uint8_t *dst = l->backend ? io->staging : rows;
  for (int r = 0; r < count; r++) {
    const uint8_t *src = in + (size_t)r * io->state_row;
    if (io->type == l->type) {
      memcpy(dst + (size_t)r * l->row_bytes, src, l->row_bytes);
    } else {
      llm_kv_load_row(io->type, src, io->row, l->kv_dim);
      llm_kv_store_row(l->type, io->row, dst + (size_t)r * l->row_bytes, l->kv_dim);
    }
  }
  return !l->backend ||
         l->backend->copy(l->backend, rows, io->staging, (size_t)count * l->row_bytes, LLM_COPY_HOST_TO_DEVICE, err);
}

/* Walks positions [0, n_positions) block by block, keys then values, layer by layer, in the state's order. */
static bool walk_state(struct state_io *io, int n_positions, uint8_t *state, bool reading, struct llm_error *err) {
  const struct llm_kv_pool_layout *l = &io->cache->pool->layout;
  io->staging = malloc(BLOCK * l->row_bytes);
  io->row = malloc((size_t)l->kv_dim * sizeof(float));
  bool ok = io->staging && io->row;
  if (!ok) llm_fail(err, LLM_ERR_SYSTEM, "out of memory converting a KV state");
  uint8_t *const bases[] = { l->keys, l->values };
  for (int kv = 0; kv < 2 && ok; kv++)
    for (int layer = 0; layer < l->n_layers && ok; layer++)
      for (int pos = 0; pos < n_positions && ok; pos += BLOCK) {
        const int count = n_positions - pos < BLOCK ? n_positions - pos : BLOCK;
        uint8_t *rows = llm_kv_row(l, bases[kv], io->cache, layer, pos);
        uint8_t *at = state + (((size_t)kv * l->n_layers + layer) * (size_t)n_positions + pos) * io->state_row;
        ok = reading ? read_block(io, rows, count, at, err) : write_block(io, rows, count, at, err);
      }
  free(io->staging);
  free(io->row);
  return ok;
}

bool llm_kv_cache_read_state(const struct llm_kv_cache *cache, enum llm_kv_type type, int n_positions, void *out,
                             size_t out_bytes, struct llm_error *err) {
  if (!check_state(cache, type, n_positions, cache->n_positions, out_bytes, err)) return false;
  struct state_io io = { (struct llm_kv_cache *)cache, type, llm_kv_row_bytes(type, cache->pool->layout.kv_dim), 0, 0 };
  return walk_state(&io, n_positions, out, true, err);
}

bool llm_kv_cache_write_state(struct llm_kv_cache *cache, enum llm_kv_type type, int n_positions,
                              const int32_t *tokens, const void *in, size_t in_bytes, struct llm_error *err) {
  if (!check_state(cache, type, n_positions, cache->context_size, in_bytes, err)) return false;
  llm_kv_cache_truncate(cache, 0);
  if (n_positions == 0) return true;
  if (!llm_kv_cache_prepare(cache, 0, tokens, n_positions, err)) return false;
  struct state_io io = { cache, type, llm_kv_row_bytes(type, cache->pool->layout.kv_dim), 0, 0 };
  if (!walk_state(&io, n_positions, (uint8_t *)in, false, err)) {
    llm_kv_cache_truncate(cache, 0);
    return false;
  }
  llm_kv_cache_commit(cache, n_positions);
  return true;
}
