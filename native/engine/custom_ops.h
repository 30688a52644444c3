/* The operations a forward pass calls through, and custom op libraries (native/include/llama_napi_ops.h) that
 * replace some of them: loaded with dlopen, their ABI version checked, their functions looked up by name. */
#ifndef LLM_CUSTOM_OPS_H
#define LLM_CUSTOM_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "llama_napi_ops.h"
#include "model.h"

/* What forward.c calls for the replaceable operations, with the layouts of llama_napi_ops.h (rmsnorm's weight as
 * the model stores it): each entry is the built-in kernel or a library's function. `self` is the table itself. */
struct llm_ops {
  /* out = rmsnorm(x) * weight, row by row; with a residual, x += residual first (the previous block's add, which the
   * built-in fuses into the norm's pass over x; out may alias residual). */
  void (*rmsnorm)(const struct llm_ops *self, struct llm_threadpool *pool, float *x, const float *residual, float *out,
                  const struct llm_tensor *weight, int n_rows, int dim, float eps);
  void (*rope)(const struct llm_ops *self, float *q, float *k, const int32_t *positions, int n_rows,
               const struct llm_config *config);
  /* out = silu(gate) * up over n_rows rows of `hidden` values. */
  void (*swiglu)(const struct llm_ops *self, struct llm_threadpool *pool, float *out, const float *gate, const float *up,
                 int n_rows, int64_t hidden);
};

/* The engine's own kernels (ops.h). */
extern const struct llm_ops llm_builtin_ops;

enum llm_custom_op { LLM_CUSTOM_ROPE, LLM_CUSTOM_RMSNORM, LLM_CUSTOM_SWIGLU, LLM_CUSTOM_OP_COUNT };

/* The op's name as users enable it ("rope", "rmsnorm", "swiglu"). */
const char *llm_custom_op_name(enum llm_custom_op op);

/* The CUDA launchers of a library's enabled ops; NULL for an op left built in. */
struct llm_custom_launchers {
  llama_napi_rope_cuda_fn *rope;
  llama_napi_rmsnorm_cuda_fn *rmsnorm;
  llama_napi_swiglu_cuda_fn *swiglu;
};

struct llm_custom_ops;

/* Loads the library at `path` (an absolute path: a bare name would be searched for in the system's library
 * directories) for a model of `dim` values per row and enables the named ops. Each needs the library's CPU
 * function, and with `cuda` also its CUDA launcher. Fails with LLM_ERR_CUSTOM_OP (err->symbol: the symbol at fault,
 * NULL when the file itself is) for a file that is missing or not a loadable library, a library without
 * llama_napi_ops_abi_version or built for another ABI version, or without an enabled op's function;
 * LLM_ERR_INVALID_ARGUMENT (option "enableCustomOps") for an unknown or repeated op name or none at all;
 * LLM_ERR_DEVICE when `cuda` and an enabled op has no CUDA launcher. */
struct llm_custom_ops *llm_custom_ops_open(const char *path, const char *const *names, int n_names, int dim, bool cuda,
                                           struct llm_error *err);
void llm_custom_ops_close(struct llm_custom_ops *ops);

/* Makes the model's passes call the library's enabled ops; the model owns it from here (llm_model_close closes
 * it). */
void llm_model_use_custom_ops(struct llm_model *model, struct llm_custom_ops *ops);

bool llm_custom_op_enabled(const struct llm_custom_ops *ops, enum llm_custom_op op);
const struct llm_custom_launchers *llm_custom_ops_launchers(const struct llm_custom_ops *ops);

#endif
