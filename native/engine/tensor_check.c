#include "tensor_check.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include "blocks.h"

/* Unaligned views: safetensors and llama2.c files do not align their tensors. */
typedef uint32_t u32_any __attribute__((aligned(1), may_alias));
typedef uint16_t u16_any __attribute__((aligned(1), may_alias));

/* Values per vectorised step: long enough for the OR-reduction to vectorise, short enough to stop soon after a
 * bad value. */
#define SCAN_STEP 1024

/* A value is NaN or infinite when all its exponent bits are set: these masks select them. */
#define F32_EXPONENT 0x7f800000u
#define F16_EXPONENT 0x7c00u
#define BF16_EXPONENT 0x7f80u

/* The index of the first of n values whose exponent bits (`exponent`) are all set, or -1: an OR-reduction that
 * vectorises, a step at a time, then the step that holds one searched again. One body for 32- and 16-bit values. */
#define DEFINE_FIRST_NON_FINITE(name, bits)                                           \
  static int64_t name(const bits *x, int64_t n, bits exponent) {                       \
    for (int64_t start = 0; start < n; start += SCAN_STEP) {                           \
      const int64_t end = n - start < SCAN_STEP ? n : start + SCAN_STEP;               \
      uint32_t any = 0;                                                                \
      for (int64_t i = start; i < end; i++) any |= (x[i] & exponent) == exponent;      \
      if (!any) continue;                                                              \
      for (int64_t i = start; i < end; i++)                                            \
        if ((x[i] & exponent) == exponent) return i;                                   \
    }                                                                                  \
    return -1;                                                                         \
  }
DEFINE_FIRST_NON_FINITE(first_non_finite_u32, u32_any)
DEFINE_FIRST_NON_FINITE(first_non_finite_u16, u16_any)

int64_t llm_first_non_finite_f32(const float *x, int64_t n) {
  return first_non_finite_u32((const u32_any *)x, n, F32_EXPONENT);
}

/* Byte offsets of the f16 scales inside one block of a quantized type (blocks.h). */
static int block_scale_offsets(enum llm_type type, int offsets[2]) {
  switch (type) {
  case LLM_Q8_0: offsets[0] = offsetof(struct llm_block_q8_0, d); return 1;
  case LLM_Q4_0: offsets[0] = offsetof(struct llm_block_q4_0, d); return 1;
  case LLM_Q5_0: offsets[0] = offsetof(struct llm_block_q5_0, d); return 1;
  case LLM_Q4_1:
    offsets[0] = offsetof(struct llm_block_q4_1, d);
    offsets[1] = offsetof(struct llm_block_q4_1, m);
    return 2;
  case LLM_Q5_1:
    offsets[0] = offsetof(struct llm_block_q5_1, d);
    offsets[1] = offsetof(struct llm_block_q5_1, m);
    return 2;
  case LLM_Q2_K:
    offsets[0] = offsetof(struct llm_block_q2_K, d);
    offsets[1] = offsetof(struct llm_block_q2_K, dmin);
    return 2;
  case LLM_Q3_K: offsets[0] = offsetof(struct llm_block_q3_K, d); return 1;
  case LLM_Q4_K:
    offsets[0] = offsetof(struct llm_block_q4_K, d);
    offsets[1] = offsetof(struct llm_block_q4_K, dmin);
    return 2;
  case LLM_Q5_K:
    offsets[0] = offsetof(struct llm_block_q5_K, d);
    offsets[1] = offsetof(struct llm_block_q5_K, dmin);
    return 2;
  case LLM_IQ4_NL: offsets[0] = offsetof(struct llm_block_iq4_nl, d); return 1;
  case LLM_IQ4_XS: offsets[0] = offsetof(struct llm_block_iq4_xs, d); return 1;
  case LLM_Q6_K: offsets[0] = offsetof(struct llm_block_q6_K, d); return 1;
  default: return 0;
  }
}

/* One piece of one tensor: `count` elements (or blocks) from `first`. */
struct chunk {
  int tensor;
  const uint8_t *data; /* the tensor's first byte */
  enum llm_type type;
  int64_t first, count;
};

struct scan {
  const struct chunk *chunks;
  int64_t *found;             /* per chunk: the index of its first bad element or block, or -1 */
  bool *in_scale;             /* per chunk */
  _Atomic size_t first_bad;   /* the lowest chunk known to hold a bad value: later chunks need no scan */
};

static int64_t scan_chunk(const struct chunk *c, bool *in_scale) {
  *in_scale = false;
  switch (c->type) {
  case LLM_F32: {
    const int64_t i = first_non_finite_u32((const u32_any *)c->data + c->first, c->count, F32_EXPONENT);
    return i < 0 ? -1 : c->first + i;
  }
  case LLM_F16:
  case LLM_BF16: {
    const int64_t i = first_non_finite_u16((const u16_any *)c->data + c->first, c->count,
                                           c->type == LLM_F16 ? F16_EXPONENT : BF16_EXPONENT);
    return i < 0 ? -1 : c->first + i;
  }
  default: {
    int offsets[2];
    const int n_scales = block_scale_offsets(c->type, offsets);
    const size_t block_bytes = llm_type_block_bytes(c->type);
    for (int64_t b = c->first; b < c->first + c->count; b++) {
      const uint8_t *block = c->data + (size_t)b * block_bytes;
      for (int s = 0; s < n_scales; s++) {
        if ((*(const u16_any *)(block + offsets[s]) & F16_EXPONENT) == F16_EXPONENT) {
          *in_scale = true;
          return b;
        }
      }
    }
    return -1;
  }
  }
}

static void scan_task(void *ctx, size_t begin, size_t end, int worker) {
  struct scan *s = ctx;
  for (size_t i = begin; i < end; i++) {
    if (i > atomic_load(&s->first_bad)) return; /* an earlier chunk already holds the answer */
    s->found[i] = scan_chunk(&s->chunks[i], &s->in_scale[i]);
    if (s->found[i] < 0) continue;
    size_t seen = atomic_load(&s->first_bad);
    while (i < seen && !atomic_compare_exchange_weak(&s->first_bad, &seen, i)) {
    }
    return;
  }
}

/* Bytes per chunk: big enough that handing one out costs nothing, small enough to spread one large tensor over
 * every thread. */
#define CHUNK_BYTES ((size_t)1 << 20)

/* Elements (f32/f16/bf16) or blocks (quantized types) of a tensor. */
static int64_t tensor_units(const struct llm_tensor_spec *t) {
  int64_t units = t->shape[t->n_dims - 1] / llm_type_block_size(t->type);
  for (int d = 0; d < t->n_dims - 1; d++) units *= t->shape[d];
  return units;
}

static int64_t units_per_chunk(const struct llm_tensor_spec *t) { return (int64_t)(CHUNK_BYTES / llm_type_block_bytes(t->type)); }

bool llm_check_tensors(struct llm_model *model, const struct llm_model_spec *spec,
                       struct llm_tensor_fault *fault, struct llm_error *err) {
  fault->tensor = -1;
  fault->index = -1;
  fault->in_scale = false;
  /* llm_model_open validated every tensor of the spec (type, shape, extent in its file). */
  size_t n_chunks = 0;
  for (int t = 0; t < spec->n_tensors; t++) {
    const int64_t units = tensor_units(&spec->tensors[t]), per_chunk = units_per_chunk(&spec->tensors[t]);
    n_chunks += (size_t)((units + per_chunk - 1) / per_chunk);
  }
  struct chunk *chunks = malloc((n_chunks ? n_chunks : 1) * sizeof *chunks);
  int64_t *found = malloc((n_chunks ? n_chunks : 1) * sizeof *found);
  bool *in_scale = malloc(n_chunks ? n_chunks : 1);
  if (!chunks || !found || !in_scale) {
    free(chunks);
    free(found);
    free(in_scale);
    return llm_fail(err, LLM_ERR_SYSTEM, "out of memory for the list of %zu tensor chunks", n_chunks);
  }
  size_t c = 0;
  for (int t = 0; t < spec->n_tensors; t++) {
    const struct llm_tensor_spec *ts = &spec->tensors[t];
    const int64_t units = tensor_units(ts), per_chunk = units_per_chunk(ts);
    const uint8_t *data = (const uint8_t *)model->mappings[ts->file].base + ts->offset;
    for (int64_t first = 0; first < units; first += per_chunk, c++) {
      chunks[c] = (struct chunk){ t, data, (enum llm_type)ts->type, first,
                                  units - first < per_chunk ? units - first : per_chunk };
      found[c] = -1;
    }
  }
  struct scan scan = { chunks, found, in_scale, n_chunks };
  pthread_mutex_lock(&model->forward_lock);
  llm_parallel_for(model->pool, n_chunks, scan_task, &scan);
  pthread_mutex_unlock(&model->forward_lock);
  const size_t bad = atomic_load(&scan.first_bad);
  if (bad < n_chunks) {
    fault->tensor = chunks[bad].tensor;
    fault->index = found[bad];
    fault->in_scale = in_scale[bad];
  }
  free(chunks);
  free(found);
  free(in_scale);
  return true;
}
