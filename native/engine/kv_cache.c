#include "kv_cache.h"

#include <stdlib.h>
#include <string.h>

size_t llm_kv_cache_bytes(const struct llm_model *model, int context_size) {
  const size_t per_position = 2 * (size_t)model->config.n_layers * (size_t)model->config.n_kv_heads *
                              (size_t)model->config.head_dim * sizeof(float);
  size_t bytes;
  return context_size < 0 || __builtin_mul_overflow(per_position, (size_t)context_size, &bytes) ? SIZE_MAX : bytes;
}

struct llm_kv_cache *llm_kv_cache_create(const struct llm_model *model, int context_size, struct llm_error *err) {
  if (context_size < 1) {
    llm_fail_argument(err, "contextSize", "context size %d must be at least 1", context_size);
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
  const size_t total = llm_kv_cache_bytes(model, context_size);
  const bool overflow = total == SIZE_MAX;
  const size_t bytes = total / 2; /* the keys, and as much for the values */
  struct llm_backend *backend = model->backend;
  if (backend) {
    cache->backend = backend;
    struct llm_error device_err;
    if (overflow || !(cache->keys = backend->alloc(backend, bytes, &device_err)) ||
        !(cache->values = backend->alloc(backend, bytes, &device_err))) {
      /* The backend's alloc fails when the device's memory runs short (its message says how short), or, hardly
       * ever, when selecting the model's own GPU fails. */
      llm_fail_out_of_memory(err, total, "allocating a KV cache of %d positions (2 x %zu MiB) on %s: %s", context_size,
                             bytes >> 20, backend->device, overflow ? "too large" : device_err.message);
      llm_kv_cache_free(cache);
      return NULL;
    }
    return cache;
  }
  if (!overflow) {
    cache->keys = malloc(bytes);
    cache->values = malloc(bytes);
  }
  if (!cache->keys || !cache->values) {
    llm_fail_out_of_memory(err, total, "out of memory allocating a KV cache of %d positions (2 x %zu MiB)",
                           context_size, bytes >> 20);
    llm_kv_cache_free(cache);
    return NULL;
  }
  return cache;
}

void llm_kv_cache_free(struct llm_kv_cache *cache) {
  if (!cache) return;
  if (cache->backend) {
    if (cache->keys) cache->backend->free(cache->backend, cache->keys);
    if (cache->values) cache->backend->free(cache->backend, cache->values);
  } else {
    free(cache->keys);
    free(cache->values);
  }
  free(cache);
}

bool llm_kv_cache_fits(const struct llm_kv_cache *cache, const struct llm_model *model) {
  return cache->n_layers == model->config.n_layers &&
         cache->kv_dim == (int64_t)model->config.n_kv_heads * model->config.head_dim;
}

static bool check_positions(const struct llm_kv_cache *cache, int n_positions, struct llm_error *err) {
  if (n_positions < 0 || n_positions > cache->context_size)
    return llm_fail_argument(err, "nPositions", "%d positions do not fit a context of %d", n_positions,
                             cache->context_size);
  return true;
}

/* Positions [0, n) of one layer are contiguous: layer l starts at l * context_size * kv_dim. */
static size_t layer_bytes(const struct llm_kv_cache *cache, int n_positions) {
  return (size_t)n_positions * (size_t)cache->kv_dim * sizeof(float);
}

static float *layer_start(float *base, const struct llm_kv_cache *cache, int layer) {
  return base + (int64_t)layer * cache->context_size * cache->kv_dim;
}

/* memcpy, or the backend's copy when the cache lives in device memory (`direction` says which side is which). */
static bool move_bytes(const struct llm_kv_cache *cache, void *dst, const void *src, size_t n,
                       enum llm_copy_direction direction, struct llm_error *err) {
  if (cache->backend) return cache->backend->copy(cache->backend, dst, src, n, direction, err);
  memcpy(dst, src, n);
  return true;
}

bool llm_kv_cache_copy(struct llm_kv_cache *dst, const struct llm_kv_cache *src, int n_positions,
                       struct llm_error *err) {
  if (dst->n_layers != src->n_layers || dst->kv_dim != src->kv_dim || dst->backend != src->backend)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "the two KV caches belong to different models");
  if (!check_positions(src, n_positions, err) || !check_positions(dst, n_positions, err)) return false;
  const size_t n = layer_bytes(src, n_positions);
  for (int l = 0; l < src->n_layers; l++) {
    if (!move_bytes(src, layer_start(dst->keys, dst, l), layer_start(src->keys, src, l), n, LLM_COPY_DEVICE_TO_DEVICE, err) ||
        !move_bytes(src, layer_start(dst->values, dst, l), layer_start(src->values, src, l), n, LLM_COPY_DEVICE_TO_DEVICE, err))
      return false;
  }
  return true;
}

size_t llm_kv_cache_state_bytes(const struct llm_kv_cache *cache, int n_positions) {
  return 2 * (size_t)cache->n_layers * layer_bytes(cache, n_positions);
}

bool llm_kv_cache_read_state(const struct llm_kv_cache *cache, int n_positions, void *out, size_t out_bytes,
                             struct llm_error *err) {
  if (!check_positions(cache, n_positions, err)) return false;
  if (out_bytes != llm_kv_cache_state_bytes(cache, n_positions))
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "a state of %d positions is %zu bytes, not %zu", n_positions,
                    llm_kv_cache_state_bytes(cache, n_positions), out_bytes);
  char *p = out;
  const size_t n = layer_bytes(cache, n_positions);
  for (int l = 0; l < cache->n_layers; l++, p += n)
    if (!move_bytes(cache, p, layer_start(cache->keys, cache, l), n, LLM_COPY_DEVICE_TO_HOST, err)) return false;
  for (int l = 0; l < cache->n_layers; l++, p += n)
    if (!move_bytes(cache, p, layer_start(cache->values, cache, l), n, LLM_COPY_DEVICE_TO_HOST, err)) return false;
  return true;
}

bool llm_kv_cache_write_state(struct llm_kv_cache *cache, int n_positions, const void *in, size_t in_bytes,
                              struct llm_error *err) {
  if (!check_positions(cache, n_positions, err)) return false;
  if (in_bytes != llm_kv_cache_state_bytes(cache, n_positions))
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "a state of %d positions is %zu bytes, not %zu", n_positions,
                    llm_kv_cache_state_bytes(cache, n_positions), in_bytes);
  const char *p = in;
  const size_t n = layer_bytes(cache, n_positions);
  for (int l = 0; l < cache->n_layers; l++, p += n)
    if (!move_bytes(cache, layer_start(cache->keys, cache, l), p, n, LLM_COPY_HOST_TO_DEVICE, err)) return false;
  for (int l = 0; l < cache->n_layers; l++, p += n)
    if (!move_bytes(cache, layer_start(cache->values, cache, l), p, n, LLM_COPY_HOST_TO_DEVICE, err)) return false;
  return true;
}
