#ifndef LLM_MODEL_H
#define LLM_MODEL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"
#include "threadpool.h"

enum llm_error_kind {
  LLM_OK = 0,
  LLM_ERR_FORMAT,           /* a file or tensor is malformed: offsets, shapes, missing/duplicate tensors */
  LLM_ERR_UNSUPPORTED,      /* well-formed but not something we run: an unknown weight type code */
  LLM_ERR_INVALID_ARGUMENT, /* the caller passed something out of range */
  LLM_ERR_SYSTEM,           /* out of memory, thread creation failed */
  LLM_ERR_DEVICE,           /* the accelerator is missing, out of memory or failed */
  LLM_ERR_OUT_OF_MEMORY,    /* a KV cache does not fit in host or device memory */
  LLM_ERR_NUMERICAL,        /* the logits came out NaN or infinite: the weights hold such values or overflow */
  LLM_ERR_CONTEXT_OVERFLOW, /* positions past the end of a KV cache */
  LLM_ERR_CUSTOM_OP,        /* a custom op library cannot be loaded or lacks a symbol (custom_ops.h) */
};

/* A failure: its kind, a message for people, and the numbers a caller acts on (so that nobody parses them back out
 * of the message). A field is 0 (option: NULL) unless the failure sets it. */
struct llm_error {
  enum llm_error_kind kind;
  char message[512];
  const char *option;   /* the argument at fault (a static string), for LLM_ERR_INVALID_ARGUMENT */
  int64_t tokens;       /* LLM_ERR_CONTEXT_OVERFLOW: the positions needed */
  int64_t context_size; /* LLM_ERR_CONTEXT_OVERFLOW: the positions the cache holds */
  uint64_t bytes;       /* LLM_ERR_OUT_OF_MEMORY: the bytes the allocation needed */
  const char *symbol;   /* LLM_ERR_CUSTOM_OP, LLM_ERR_DEVICE: the library symbol at fault (a static string) */
};

/* Fills err with a printf-style message and clears its fields; returns false so callers can `return llm_fail(...)`. */
bool llm_fail(struct llm_error *err, enum llm_error_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* LLM_ERR_INVALID_ARGUMENT naming the argument at fault. */
bool llm_fail_argument(struct llm_error *err, const char *option, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* LLM_ERR_CONTEXT_OVERFLOW: `tokens` positions needed where the cache holds `context_size`. */
bool llm_fail_overflow(struct llm_error *err, int64_t tokens, int64_t context_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* LLM_ERR_OUT_OF_MEMORY: an allocation of `bytes` failed. */
bool llm_fail_out_of_memory(struct llm_error *err, uint64_t bytes, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A failure of `kind` about a custom op library's `symbol` (NULL: the library file itself). */
bool llm_fail_symbol(struct llm_error *err, enum llm_error_kind kind, const char *symbol, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

struct llm_config {
  int dim;
  int hidden_dim;
  int n_layers;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  int vocab_size;
  float norm_eps;
  bool rope_interleaved;
  const float *rope_freqs; /* head_dim / 2 inverse frequencies; llm_model_open copies them */
};

/* Where one tensor lives, as the format parser found it. */
struct llm_tensor_spec {
  const char *name; /* canonical GGUF-style name, e.g. "blk.3.attn_q.weight" */
  int file;         /* index into llm_model_spec.files */
  uint64_t offset;  /* absolute byte offset in that file */
  int type;         /* enum llm_type code, validated */
  int n_dims;
  int64_t shape[4]; /* outermost first: [rows, cols] */
};

struct llm_model_spec {
  const char *const *files;
  int n_files;
  const struct llm_tensor_spec *tensors;
  int n_tensors;
  struct llm_config config;
  int n_threads;
};

struct llm_layer {
  struct llm_tensor attn_norm, attn_q, attn_k, attn_v, attn_output;
  struct llm_tensor ffn_norm, ffn_gate, ffn_up, ffn_down;
};

struct llm_mapping {
  void *base;
  size_t size;
};

/* Activations for one batch of tokens, grown on demand; guarded by forward_lock like the pool. */
struct llm_scratch {
  int capacity_tokens;
  float *x, *xb, *q, *k, *v, *attn_out, *hb, *hb2;
  int32_t *positions; /* each row's position in its sequence */
  int64_t scores_stride; /* floats per thread in `scores` (>= largest context seen) */
  float *scores;
  int64_t logits_capacity; /* floats in `logits`: the logits of several sequences computed in one product */
  float *logits;
};

struct llm_batch_sequence;
struct llm_kv_pool;
struct llm_ops;
struct llm_custom_ops;

/* Directions of llm_backend.copy. */
enum llm_copy_direction { LLM_COPY_DEVICE_TO_DEVICE, LLM_COPY_DEVICE_TO_HOST, LLM_COPY_HOST_TO_DEVICE };

/* An accelerator holding its own copy of the weights (native/cuda/). When a model has one, llm_forward_batch runs
 * there (after validating its arguments, under forward_lock) and KV caches keep their keys and values in its
 * memory. The hooks fill err on failure. */
struct llm_backend {
  const char *name;   /* "cuda" */
  const char *device; /* the device as people know it, e.g. "NVIDIA H100 80GB HBM3" */
  int pass_tokens;    /* the most tokens one of its passes holds (see llm_model_pass_tokens) */
  bool (*forward_batch)(struct llm_backend *backend, const struct llm_batch_sequence *sequences, int n_sequences,
                        struct llm_error *err);
  void *(*alloc)(struct llm_backend *backend, size_t bytes, struct llm_error *err);
  void (*free)(struct llm_backend *backend, void *memory);
  bool (*copy)(struct llm_backend *backend, void *dst, const void *src, size_t bytes, enum llm_copy_direction direction,
               struct llm_error *err);
  void (*destroy)(struct llm_backend *backend);
};

struct llm_model {
  struct llm_config config; /* rope_freqs points at owned memory */
  struct llm_tensor token_embd, output_norm, output; /* output aliases token_embd when tied */
  struct llm_layer *layers;
  struct llm_mapping *mappings;
  int n_mappings;
  struct llm_threadpool *pool;
  pthread_mutex_t forward_lock; /* one forward pass at a time: the pool and scratch are shared */
  struct llm_scratch scratch;
  struct llm_backend *backend; /* NULL: the CPU; owned (destroyed by llm_model_close) */
  struct llm_kv_pool *kv_pool; /* the KV blocks of every sequence (kv_cache.h); owned, NULL until created */
  void *repacked;              /* the repacked copies of the weights (llm_model_repack), NULL if none */
  size_t repacked_bytes;
  const struct llm_ops *ops;   /* the replaceable operations a CPU pass calls (custom_ops.h) */
  struct llm_custom_ops *custom_ops; /* the library they come from; NULL: all built in; owned */
};

/* Maps the files read-only and validates every tensor against the config. Returns NULL and fills err
 * (message naming the file and tensor) on failure. */
struct llm_model *llm_model_open(const struct llm_model_spec *spec, struct llm_error *err);
void llm_model_close(struct llm_model *model);

/* For a model that runs on the CPU: copies the matrices whose type has a repacked layout (repack.h) and a kernel on
 * the kernel set in use into that layout (model->repacked, model->repacked_bytes), unless LLAMA_NAPI_REPACK=0.
 * The mapped rows stay as they are for the other sets. Fails (LLM_ERR_OUT_OF_MEMORY) only when the copy cannot be
 * allocated. */
bool llm_model_repack(struct llm_model *model, struct llm_error *err);

#endif
