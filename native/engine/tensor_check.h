#ifndef LLM_TENSOR_CHECK_H
#define LLM_TENSOR_CHECK_H

#include <stdint.h>

#include "model.h"

/* Index of the first NaN or infinity among n f32 values, or -1 when all are finite. Vectorised: a pass over a
 * vocabulary-sized row costs about as much as reading it. */
int64_t llm_first_non_finite_f32(const float *x, int64_t n);

/* Where llm_check_tensors found the first non-finite stored value. */
struct llm_tensor_fault {
  int tensor;    /* index into the spec's tensors; -1 when every value is finite */
  int64_t index; /* the element (f32/f16/bf16) or block (quantized types) holding it */
  bool in_scale; /* true: a block's f16 scale (or min) is not finite; false: a value is */
};

/* Scans every tensor of `spec` (all of them, used by the engine or not), the spec `model` was opened with, for
 * NaN and infinity as stored: each f32/f16/bf16 value, and each f16 scale and min of the quantized blocks (their
 * integer quants are always finite). The mapped weights are split into chunks scanned by the model's threads
 * (between forward passes); `fault` gets the first bad value in the order of the spec's tensors. False with err
 * filled only when memory for the chunk list runs out. */
bool llm_check_tensors(struct llm_model *model, const struct llm_model_spec *spec, struct llm_tensor_fault *fault,
                       struct llm_error *err);

#endif
