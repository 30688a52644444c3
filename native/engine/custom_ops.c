#define _GNU_SOURCE
#include "custom_ops.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ops.h"

/* ---- The built-in kernels behind the table ---- */

static void builtin_rmsnorm(const struct llm_ops *self, struct llm_threadpool *pool, float *x, const float *residual,
                            float *out, const struct llm_tensor *weight, int n_rows, int dim, float eps) {
  if (residual) llm_add_rmsnorm(pool, x, residual, out, weight, n_rows, dim, eps);
  else llm_rmsnorm(out, x, weight, n_rows, dim, eps);
}

static void builtin_rope(const struct llm_ops *self, float *q, float *k, const int32_t *positions, int n_rows,
                         const struct llm_config *c) {
  const int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
  for (int r = 0; r < n_rows; r++) {
    llm_rope(q + r * q_dim, c->n_heads, c->head_dim, positions[r], c->rope_freqs, c->rope_interleaved);
    llm_rope(k + r * kv_dim, c->n_kv_heads, c->head_dim, positions[r], c->rope_freqs, c->rope_interleaved);
  }
}

static void builtin_swiglu(const struct llm_ops *self, struct llm_threadpool *pool, float *out, const float *gate,
                           const float *up, int n_rows, int64_t hidden) {
  llm_swiglu_rows(pool, out, gate, up, n_rows, hidden);
}

const struct llm_ops llm_builtin_ops = { builtin_rmsnorm, builtin_rope, builtin_swiglu };

/* ---- Libraries ---- */

/* Each op's name and the symbols of its CPU function and CUDA launcher (llama_napi_ops.h). */
static const struct {
  const char *name, *cpu_symbol, *cuda_symbol;
} OPS[LLM_CUSTOM_OP_COUNT] = {
  [LLM_CUSTOM_ROPE] = { "rope", "llama_napi_rope", "llama_napi_rope_cuda" },
  [LLM_CUSTOM_RMSNORM] = { "rmsnorm", "llama_napi_rmsnorm", "llama_napi_rmsnorm_cuda" },
  [LLM_CUSTOM_SWIGLU] = { "swiglu", "llama_napi_swiglu", "llama_napi_swiglu_cuda" },
};
static const char ABI_SYMBOL[] = "llama_napi_ops_abi_version";

struct llm_custom_ops {
  struct llm_ops table; /* first: the forward pass's pointer to the table is one to this object */
  void *library;
  bool enabled[LLM_CUSTOM_OP_COUNT];
  llama_napi_rope_fn *rope;
  llama_napi_rmsnorm_fn *rmsnorm;
  llama_napi_swiglu_fn *swiglu;
  struct llm_custom_launchers launchers;
  /* rmsnorm's weight as float32 (the library's contract) when the model stores it otherwise: dim values, written
   * under the model's forward lock. */
  float *weight_f32;
};

static const struct llm_custom_ops *library_of(const struct llm_ops *table) {
  return (const struct llm_custom_ops *)table;
}

static void library_rmsnorm(const struct llm_ops *self, struct llm_threadpool *pool, float *x, const float *residual,
                            float *out, const struct llm_tensor *weight, int n_rows, int dim, float eps) {
  (void)pool;
  const struct llm_custom_ops *ops = library_of(self);
  if (residual)
    for (int64_t i = 0; i < (int64_t)n_rows * dim; i++) x[i] += residual[i];
  const float *weight_f32 = (const float *)weight->data;
  if (weight->type != LLM_F32) {
    for (int i = 0; i < dim; i++) ops->weight_f32[i] = llm_tensor_get(weight->data, weight->type, i);
    weight_f32 = ops->weight_f32;
  }
  ops->rmsnorm(out, x, weight_f32, n_rows, dim, eps);
}

static void library_rope(const struct llm_ops *self, float *q, float *k, const int32_t *positions, int n_rows,
                         const struct llm_config *c) {
  library_of(self)->rope(q, k, positions, n_rows, c->n_heads, c->n_kv_heads, c->head_dim, c->rope_freqs,
                         c->rope_interleaved);
}

static void library_swiglu(const struct llm_ops *self, struct llm_threadpool *pool, float *out, const float *gate,
                           const float *up, int n_rows, int64_t hidden) {
  (void)pool;
  library_of(self)->swiglu(out, gate, up, (int64_t)n_rows * hidden);
}

const char *llm_custom_op_name(enum llm_custom_op op) { return OPS[op].name; }

static bool enable(struct llm_custom_ops *ops, const char *path, const char *name, bool cuda, struct llm_error *err) {
  int op = 0;
  while (op < LLM_CUSTOM_OP_COUNT && strcmp(OPS[op].name, name) != 0) op++;
  if (op == LLM_CUSTOM_OP_COUNT) {
    char known[64] = "";
    for (int i = 0; i < LLM_CUSTOM_OP_COUNT; i++)
      snprintf(known + strlen(known), sizeof known - strlen(known), i ? ", %s" : "%s", OPS[i].name);
    return llm_fail_argument(err, "enableCustomOps", "unknown custom op \"%s\" (known: %s)", name, known);
  }
  if (ops->enabled[op])
    return llm_fail_argument(err, "enableCustomOps", "custom op \"%s\" is enabled twice", name);
  void *cpu = dlsym(ops->library, OPS[op].cpu_symbol);
  if (!cpu)
    return llm_fail_symbol(err, LLM_ERR_CUSTOM_OP, OPS[op].cpu_symbol,
                           "custom op library %s does not export %s, which op \"%s\" needs", path, OPS[op].cpu_symbol, name);
  void *launcher = cuda ? dlsym(ops->library, OPS[op].cuda_symbol) : NULL;
  if (cuda && !launcher)
    return llm_fail_symbol(err, LLM_ERR_DEVICE, OPS[op].cuda_symbol,
                           "custom op \"%s\" is enabled for a model on the GPU, but %s does not export the CUDA launcher "
                           "%s; build one into the library or load the model with device \"cpu\"",
                           name, path, OPS[op].cuda_symbol);
  ops->enabled[op] = true;
  switch ((enum llm_custom_op)op) {
  case LLM_CUSTOM_ROPE:
    ops->rope = (llama_napi_rope_fn *)cpu;
    ops->launchers.rope = (llama_napi_rope_cuda_fn *)launcher;
    ops->table.rope = library_rope;
    break;
  case LLM_CUSTOM_RMSNORM:
    ops->rmsnorm = (llama_napi_rmsnorm_fn *)cpu;
    ops->launchers.rmsnorm = (llama_napi_rmsnorm_cuda_fn *)launcher;
    ops->table.rmsnorm = library_rmsnorm;
    break;
  default:
    ops->swiglu = (llama_napi_swiglu_fn *)cpu;
    ops->launchers.swiglu = (llama_napi_swiglu_cuda_fn *)launcher;
    ops->table.swiglu = library_swiglu;
    break;
  }
  return true;
}

/* Opens the file as a library whose ABI version is this engine's. */
static bool open_library(struct llm_custom_ops *ops, const char *path, struct llm_error *err) {
  if (!strchr(path, '/'))
    return llm_fail_argument(err, "customOps",
                             "custom op library \"%s\" must be given as a path: dlopen would search the system's "
                             "library directories for a bare file name", path);
  struct stat st;
  if (stat(path, &st) != 0)
    return llm_fail_symbol(err, LLM_ERR_CUSTOM_OP, NULL, "custom op library %s cannot be read: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode))
    return llm_fail_symbol(err, LLM_ERR_CUSTOM_OP, NULL, "custom op library %s is not a regular file", path);
  dlerror();
  ops->library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!ops->library) {
    const char *why = dlerror();
    return llm_fail_symbol(err, LLM_ERR_CUSTOM_OP, NULL, "custom op library %s is not a loadable shared library: %s", path,
                           why ? why : "dlopen failed");
  }
  llama_napi_ops_abi_version_fn *abi_version = (llama_napi_ops_abi_version_fn *)dlsym(ops->library, ABI_SYMBOL);
  if (!abi_version)
    return llm_fail_symbol(err, LLM_ERR_CUSTOM_OP, ABI_SYMBOL,
                           "custom op library %s does not export %s: was it built against llama_napi_ops.h?", path,
                           ABI_SYMBOL);
  const uint32_t version = abi_version();
  if (version != LLAMA_NAPI_OPS_ABI_VERSION)
    return llm_fail_symbol(err, LLM_ERR_CUSTOM_OP, ABI_SYMBOL,
                           "custom op library %s was built for ops ABI version %u, but this engine has version %d: "
                           "rebuild it against this package's llama_napi_ops.h",
                           path, version, LLAMA_NAPI_OPS_ABI_VERSION);
  return true;
}

struct llm_custom_ops *llm_custom_ops_open(const char *path, const char *const *names, int n_names, int dim, bool cuda,
                                           struct llm_error *err) {
  if (n_names < 1) {
    llm_fail_argument(err, "enableCustomOps", "a custom op library (%s) is given, but no op is enabled", path);
    return NULL;
  }
  struct llm_custom_ops *ops = calloc(1, sizeof *ops);
  if (!ops || !(ops->weight_f32 = malloc((size_t)dim * sizeof(float)))) {
    free(ops);
    llm_fail(err, LLM_ERR_SYSTEM, "out of memory");
    return NULL;
  }
  ops->table = llm_builtin_ops;
  bool ok = open_library(ops, path, err);
  for (int i = 0; ok && i < n_names; i++) ok = enable(ops, path, names[i], cuda, err);
  if (!ok) {
    llm_custom_ops_close(ops);
    return NULL;
  }
  return ops;
}

void llm_custom_ops_close(struct llm_custom_ops *ops) {
  if (!ops) return;
  if (ops->library) dlclose(ops->library);
  free(ops->weight_f32);
  free(ops);
}

void llm_model_use_custom_ops(struct llm_model *m, struct llm_custom_ops *ops) {
  llm_custom_ops_close(m->custom_ops);
  m->custom_ops = ops;
  m->ops = ops ? &ops->table : &llm_builtin_ops;
}

bool llm_custom_op_enabled(const struct llm_custom_ops *ops, enum llm_custom_op op) { return ops && ops->enabled[op]; }

const struct llm_custom_launchers *llm_custom_ops_launchers(const struct llm_custom_ops *ops) { return &ops->launchers; }
