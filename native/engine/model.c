#define _GNU_SOURCE
#include "model.h"
#include "custom_ops.h"
#include "ops.h"
#include "kv_cache.h"
#include "dot.h"
#include "repack.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Generous bounds that keep every size product of the config far from integer overflow. */
#define MAX_DIMENSION (1 << 24)
#define MAX_LAYERS 4096
#define MAX_THREADS 1024


static bool validate_config(const struct llm_model_spec *spec, struct llm_error *err) {
  const struct llm_config *c = &spec->config;
  const struct {
    const char *name;
    int value, max;
  } fields[] = {
    { "dim", c->dim, MAX_DIMENSION },         { "hiddenDim", c->hidden_dim, MAX_DIMENSION },
    { "layers", c->n_layers, MAX_LAYERS },    { "heads", c->n_heads, MAX_DIMENSION },
    { "kvHeads", c->n_kv_heads, MAX_DIMENSION }, { "headDim", c->head_dim, MAX_DIMENSION },
    { "vocabSize", c->vocab_size, MAX_DIMENSION }, { "threads", spec->n_threads, MAX_THREADS },
  };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (fields[i].value < 1 || fields[i].value > fields[i].max)
      return llm_fail_argument(err, fields[i].name, "config.%s = %d is out of range [1, %d]", fields[i].name,
                               fields[i].value, fields[i].max);
  if ((int64_t)c->n_heads * c->head_dim > MAX_DIMENSION)
    return llm_fail_argument(err, "headDim", "config heads * headDim = %lld is too large",
                             (long long)c->n_heads * c->head_dim);
  if (c->n_heads % c->n_kv_heads != 0)
    return llm_fail_argument(err, "kvHeads", "config.heads = %d is not a multiple of config.kvHeads = %d",
                             c->n_heads, c->n_kv_heads);
  if (c->head_dim % 2 != 0 || c->head_dim > LLM_MAX_HEAD_DIM)
    return llm_fail_argument(err, "headDim", "config.headDim = %d must be even and at most %d", c->head_dim,
                             LLM_MAX_HEAD_DIM);
  if (!(c->norm_eps >= 0.0f) || !isfinite(c->norm_eps))
    return llm_fail_argument(err, "normEps", "config.normEps = %g must be a finite number >= 0", c->norm_eps);
  if (!c->rope_freqs) return llm_fail_argument(err, "ropeFreqs", "config.ropeFreqs is missing");
  if (spec->n_files < 1) return llm_fail_argument(err, "files", "no weight files given");
  return true;
}

static bool map_files(struct llm_model *m, const struct llm_model_spec *spec, struct llm_error *err) {
  m->mappings = calloc((size_t)spec->n_files, sizeof *m->mappings);
  if (!m->mappings) return llm_fail(err, LLM_ERR_SYSTEM, "out of memory");
  for (int i = 0; i < spec->n_files; i++) {
    const char *path = spec->files[i];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return llm_fail(err, LLM_ERR_FORMAT, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
      int e = errno;
      close(fd);
      return llm_fail(err, LLM_ERR_FORMAT, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      close(fd);
      return llm_fail(err, LLM_ERR_FORMAT, "%s is not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    void *base = NULL;
    if (size > 0) {
      base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (base == MAP_FAILED) {
        int e = errno;
        close(fd);
        return llm_fail(err, LLM_ERR_FORMAT, "cannot map %s: %s", path, strerror(e));
      }
    }
    close(fd); /* the mapping keeps the file referenced */
    m->mappings[i] = (struct llm_mapping){ base, size };
    m->n_mappings = i + 1;
  }
  return true;
}

/* What a canonical name must look like: which model field it fills and its exact shape. */
struct slot {
  struct llm_tensor *dest;
  int slot_index; /* for duplicate/missing bookkeeping */
  int n_dims;
  int64_t rows, cols; /* 1-D tensors: [cols] */
  const char *shape_meaning;
};

enum layer_tensor {
  ATTN_NORM, ATTN_Q, ATTN_K, ATTN_V, ATTN_OUTPUT, FFN_NORM, FFN_GATE, FFN_UP, FFN_DOWN, TENSORS_PER_LAYER
};
static const char *const LAYER_TENSOR_NAMES[TENSORS_PER_LAYER] = {
  "attn_norm.weight", "attn_q.weight",    "attn_k.weight",  "attn_v.weight",   "attn_output.weight",
  "ffn_norm.weight",  "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight",
};
enum global_tensor { TOKEN_EMBD, OUTPUT_NORM, OUTPUT, GLOBAL_TENSORS };
static const char *const GLOBAL_TENSOR_NAMES[GLOBAL_TENSORS] = { "token_embd.weight", "output_norm.weight",
                                                                 "output.weight" };

static struct slot layer_slot(struct llm_model *m, int layer, enum layer_tensor which) {
  const struct llm_config *c = &m->config;
  int64_t dim = c->dim, q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
  struct llm_layer *l = &m->layers[layer];
  int index = GLOBAL_TENSORS + layer * TENSORS_PER_LAYER + which;
  switch (which) {
  case ATTN_NORM: return (struct slot){ &l->attn_norm, index, 1, 1, dim, "[dim]" };
  case ATTN_Q: return (struct slot){ &l->attn_q, index, 2, q_dim, dim, "[heads*headDim, dim]" };
  case ATTN_K: return (struct slot){ &l->attn_k, index, 2, kv_dim, dim, "[kvHeads*headDim, dim]" };
  case ATTN_V: return (struct slot){ &l->attn_v, index, 2, kv_dim, dim, "[kvHeads*headDim, dim]" };
  case ATTN_OUTPUT: return (struct slot){ &l->attn_output, index, 2, dim, q_dim, "[dim, heads*headDim]" };
  case FFN_NORM: return (struct slot){ &l->ffn_norm, index, 1, 1, dim, "[dim]" };
  case FFN_GATE: return (struct slot){ &l->ffn_gate, index, 2, c->hidden_dim, dim, "[hiddenDim, dim]" };
  case FFN_UP: return (struct slot){ &l->ffn_up, index, 2, c->hidden_dim, dim, "[hiddenDim, dim]" };
  default: return (struct slot){ &l->ffn_down, index, 2, dim, c->hidden_dim, "[dim, hiddenDim]" };
  }
}

static struct slot global_slot(struct llm_model *m, enum global_tensor which) {
  const struct llm_config *c = &m->config;
  switch (which) {
  case TOKEN_EMBD: return (struct slot){ &m->token_embd, which, 2, c->vocab_size, c->dim, "[vocabSize, dim]" };
  case OUTPUT_NORM: return (struct slot){ &m->output_norm, which, 1, 1, c->dim, "[dim]" };
  default: return (struct slot){ &m->output, which, 2, c->vocab_size, c->dim, "[vocabSize, dim]" };
  }
}

/* Finds the slot for a canonical name; false for names the engine does not use. A block index beyond the
 * configured layers is a format error (reported through *out_of_range). */
static bool find_slot(struct llm_model *m, const char *name, struct slot *out, long *out_of_range) {
  *out_of_range = -1;
  for (int g = 0; g < GLOBAL_TENSORS; g++) {
    if (strcmp(name, GLOBAL_TENSOR_NAMES[g]) == 0) {
      *out = global_slot(m, (enum global_tensor)g);
      return true;
    }
  }
  if (strncmp(name, "blk.", 4) != 0 || name[4] < '0' || name[4] > '9') return false;
  char *rest;
  errno = 0;
  long layer = strtol(name + 4, &rest, 10);
  if (errno != 0 || *rest != '.') return false;
  for (int t = 0; t < TENSORS_PER_LAYER; t++) {
    if (strcmp(rest + 1, LAYER_TENSOR_NAMES[t]) != 0) continue;
    if (layer >= m->config.n_layers) {
      *out_of_range = layer;
      return false;
    }
    *out = layer_slot(m, (int)layer, (enum layer_tensor)t);
    return true;
  }
  return false;
}

static void format_shape(char *buf, size_t size, const int64_t *shape, int n_dims) {
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < n_dims && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
}

static bool bind_tensors(struct llm_model *m, const struct llm_model_spec *spec, struct llm_error *err) {
  int n_slots = GLOBAL_TENSORS + m->config.n_layers * TENSORS_PER_LAYER;
  bool *present = calloc((size_t)n_slots, sizeof *present);
  if (!present) return llm_fail(err, LLM_ERR_SYSTEM, "out of memory");
  bool ok = true;
  for (int i = 0; i < spec->n_tensors && ok; i++) {
    const struct llm_tensor_spec *t = &spec->tensors[i];
    const char *name = t->name ? t->name : "(unnamed)";
    if (t->file < 0 || t->file >= spec->n_files) {
      ok = llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "tensor %s refers to file %d, but %d file(s) were given", name,
                t->file, spec->n_files);
      break;
    }
    const char *path = spec->files[t->file];
    int block_size = llm_type_block_size(t->type);
    if (block_size == 0) {
      char known[256];
      llm_format_type_list(known, sizeof known);
      ok = llm_fail(err, LLM_ERR_UNSUPPORTED, "tensor %s in %s has unsupported type code %d (known: %s)", name, path,
                    t->type, known);
      break;
    }
    char shape[128];
    format_shape(shape, sizeof shape, t->shape, t->n_dims > 4 ? 4 : t->n_dims);
    if (t->n_dims < 1 || t->n_dims > 4) {
      ok = llm_fail(err, LLM_ERR_FORMAT, "tensor %s in %s has %d dimensions", name, path, t->n_dims);
      break;
    }
    /* Rows are stored whole blocks at a time: the innermost dimension must fill its blocks exactly. */
    const int64_t cols = t->shape[t->n_dims - 1];
    if (cols < 0 || cols % block_size != 0) {
      ok = llm_fail(err, LLM_ERR_FORMAT, "tensor %s in %s has shape %s: %lld values per row is not a multiple of the %s "
                "block size %d", name, path, shape, (long long)cols, llm_type_name(t->type), block_size);
      break;
    }
    /* Byte size, refusing anything that would overflow 64 bits. */
    uint64_t bytes = llm_row_bytes(t->type, cols);
    for (int d = 0; d < t->n_dims - 1 && ok; d++) {
      if (t->shape[d] < 0 || (t->shape[d] > 0 && bytes > UINT64_MAX / (uint64_t)t->shape[d]))
        ok = llm_fail(err, LLM_ERR_FORMAT, "tensor %s in %s has an invalid shape %s", name, path, shape);
      else bytes *= (uint64_t)t->shape[d];
    }
    if (!ok) break;
    const struct llm_mapping *map = &m->mappings[t->file];
    if (t->offset > map->size || bytes > map->size - t->offset) {
      ok = llm_fail(err, LLM_ERR_FORMAT,
                "tensor %s in %s runs past the end of the file (offset %llu + %llu bytes > file size %llu)", name,
                path, (unsigned long long)t->offset, (unsigned long long)bytes, (unsigned long long)map->size);
      break;
    }

    struct slot slot;
    long out_of_range;
    if (!find_slot(m, name, &slot, &out_of_range)) {
      if (out_of_range >= 0)
        ok = llm_fail(err, LLM_ERR_FORMAT, "tensor %s in %s belongs to layer %ld, but the model has %d layers", name,
                  path, out_of_range, m->config.n_layers);
      continue; /* a tensor the engine does not use */
    }
    if (present[slot.slot_index]) {
      ok = llm_fail(err, LLM_ERR_FORMAT, "tensor %s appears more than once (again in %s)", name, path);
      break;
    }
    bool shape_ok = slot.n_dims == 1 ? t->n_dims == 1 && t->shape[0] == slot.cols
                                     : t->n_dims == 2 && t->shape[0] == slot.rows && t->shape[1] == slot.cols;
    if (!shape_ok) {
      char expected[128];
      int64_t dims[2] = { slot.rows, slot.cols };
      format_shape(expected, sizeof expected, slot.n_dims == 1 ? dims + 1 : dims, slot.n_dims);
      ok = llm_fail(err, LLM_ERR_FORMAT, "tensor %s in %s has shape %s, expected %s %s", name, path, shape, expected,
                slot.shape_meaning);
      break;
    }
    if (slot.n_dims == 1 && llm_type_is_quantized(t->type)) {
      ok = llm_fail(err, LLM_ERR_UNSUPPORTED, "tensor %s in %s is %s; norm weights must be f32, f16 or bf16", name, path,
                llm_type_name(t->type));
      break;
    }
    present[slot.slot_index] = true;
    *slot.dest = (struct llm_tensor){ (const char *)map->base + t->offset, (enum llm_type)t->type, slot.rows,
                                      slot.cols };
  }

  for (int s = 0; s < n_slots && ok; s++) {
    if (present[s] || s == OUTPUT) continue;
    if (s < GLOBAL_TENSORS) {
      ok = llm_fail(err, LLM_ERR_FORMAT, "required tensor %s is missing from the model files (first: %s)",
                GLOBAL_TENSOR_NAMES[s], spec->files[0]);
    } else {
      int layer = (s - GLOBAL_TENSORS) / TENSORS_PER_LAYER;
      ok = llm_fail(err, LLM_ERR_FORMAT, "required tensor blk.%d.%s is missing from the model files (first: %s)", layer,
                LAYER_TENSOR_NAMES[(s - GLOBAL_TENSORS) % TENSORS_PER_LAYER], spec->files[0]);
    }
  }
  if (ok && !present[OUTPUT]) m->output = m->token_embd; /* tied embeddings */
  free(present);
  return ok;
}

struct llm_model *llm_model_open(const struct llm_model_spec *spec, struct llm_error *err) {
  err->kind = LLM_OK;
  err->message[0] = '\0';
  if (!validate_config(spec, err)) return NULL;
  struct llm_model *m = calloc(1, sizeof *m);
  if (!m) {
    llm_fail(err, LLM_ERR_SYSTEM, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&m->forward_lock, NULL);
  m->ops = &llm_builtin_ops;
  m->config = spec->config;
  m->config.rope_freqs = NULL; /* owned copy below */
  size_t n_freqs = (size_t)spec->config.head_dim / 2;
  float *freqs = malloc(n_freqs * sizeof *freqs);
  m->layers = calloc((size_t)spec->config.n_layers, sizeof *m->layers);
  if (!freqs || !m->layers) {
    free(freqs);
    llm_fail(err, LLM_ERR_SYSTEM, "out of memory");
    llm_model_close(m);
    return NULL;
  }
  memcpy(freqs, spec->config.rope_freqs, n_freqs * sizeof *freqs);
  m->config.rope_freqs = freqs;
  if (!map_files(m, spec, err) || !bind_tensors(m, spec, err)) {
    llm_model_close(m);
    return NULL;
  }
  m->pool = llm_threadpool_create(spec->n_threads);
  if (!m->pool) {
    llm_fail(err, LLM_ERR_SYSTEM, "cannot start %d threads", spec->n_threads);
    llm_model_close(m);
    return NULL;
  }
  return m;
}

#define LAYER_MATRICES 7

/* The matrices that products read: each layer's LAYER_MATRICES and the output (which may alias token_embd's rows;
 * the embedding lookup keeps reading the mapped ones). */
static int product_weights(struct llm_model *m, struct llm_tensor **out) {
  int n = 0;
  for (int l = 0; l < m->config.n_layers; l++) {
    struct llm_layer *layer = &m->layers[l];
    struct llm_tensor *matrices[LAYER_MATRICES] = { &layer->attn_q, &layer->attn_k, &layer->attn_v, &layer->attn_output,
                                                    &layer->ffn_gate, &layer->ffn_up, &layer->ffn_down };
    for (int i = 0; i < LAYER_MATRICES; i++) out[n++] = matrices[i];
  }
  out[n++] = &m->output;
  return n;
}

struct repack_job {
  struct llm_tensor *w;
  char *dest;
};

static void repack_task(void *ctx, size_t begin, size_t end, int worker) {
  (void)worker;
  const struct repack_job *job = ctx;
  const struct llm_tensor *w = job->w;
  const size_t w_stride = llm_row_bytes(w->type, w->cols), group_bytes = llm_repack_group_bytes(w->type, w->cols);
  for (size_t g = begin; g < end; g++) {
    const int64_t first = (int64_t)g * LLM_REPACK_ROWS;
    const int n_rows = w->rows - first < LLM_REPACK_ROWS ? (int)(w->rows - first) : LLM_REPACK_ROWS;
    llm_repack_group(w->type, w->cols, (const char *)w->data + first * (int64_t)w_stride, w_stride, n_rows,
                     job->dest + g * group_bytes);
  }
}

/* The whole pages of a repacked matrix's mapped rows leave this process's resident memory (the copy replaces them):
 * a read-only private file mapping reads them back from the file if anything touches them again (the scalar set, the
 * tensor check). A tied output keeps them: the embedding lookup reads its rows. */
static void release_mapped_pages(const void *data, size_t bytes) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), begin = ((uintptr_t)data + page - 1) / page * page;
  const uintptr_t end = ((uintptr_t)data + bytes) / page * page;
  if (end > begin) madvise((void *)begin, end - begin, MADV_DONTNEED);
}

bool llm_model_repack(struct llm_model *m, struct llm_error *err) {
  const char *setting = getenv("LLAMA_NAPI_REPACK");
  if (setting && strcmp(setting, "0") == 0) return true;
  struct llm_tensor **weights = malloc(((size_t)m->config.n_layers * LAYER_MATRICES + 1) * sizeof *weights);
  if (!weights) return llm_fail_out_of_memory(err, 0, "out of memory listing the weights to repack");
  const int n = product_weights(m, weights);
  size_t total = 0;
  for (int i = 0; i < n; i++)
    if (llm_repacked_kernel(weights[i]->type, llm_kernel_set()))
      total += llm_repacked_bytes(weights[i]->type, weights[i]->rows, weights[i]->cols);
  if (total == 0) {
    free(weights);
    return true;
  }
  char *dest = NULL;
  if (posix_memalign((void **)&dest, 64, total) != 0) {
    free(weights);
    return llm_fail_out_of_memory(err, total, "cannot allocate %zu bytes for the repacked weights (LLAMA_NAPI_REPACK=0 "
                                              "multiplies the mapped ones)", total);
  }
  m->repacked = dest;
  m->repacked_bytes = total;
  for (int i = 0; i < n; i++) {
    struct llm_tensor *w = weights[i];
    if (!llm_repacked_kernel(w->type, llm_kernel_set())) continue;
    struct repack_job job = { w, dest };
    const size_t groups = (size_t)((w->rows + LLM_REPACK_ROWS - 1) / LLM_REPACK_ROWS);
    llm_parallel_for_work(m->pool, groups, w->rows * w->cols, repack_task, &job);
    if (w->data != m->token_embd.data) release_mapped_pages(w->data, llm_row_bytes(w->type, w->cols) * (size_t)w->rows);
    w->repacked = dest;
    dest += llm_repacked_bytes(w->type, w->rows, w->cols);
  }
  free(weights);
  return true;
}

void llm_model_close(struct llm_model *m) {
  if (!m) return;
  llm_kv_pool_free(m->kv_pool); /* before the backend whose memory it may hold */
  if (m->backend) m->backend->destroy(m->backend);
  llm_custom_ops_close(m->custom_ops); /* after the backend, which may hold its launchers */
  llm_threadpool_free(m->pool);
  for (int i = 0; i < m->n_mappings; i++)
    if (m->mappings[i].base) munmap(m->mappings[i].base, m->mappings[i].size);
  free(m->mappings);
  free(m->repacked);
  free(m->layers);
  free((void *)m->config.rope_freqs);
  struct llm_scratch *s = &m->scratch;
  float *buffers[] = { s->x, s->xb, s->q, s->k, s->v, s->attn_out, s->hb, s->hb2, s->scores, s->logits };
  for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
  free(s->positions);
  pthread_mutex_destroy(&m->forward_lock);
  free(m);
}
