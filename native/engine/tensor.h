#ifndef LLM_TENSOR_H
#define LLM_TENSOR_H

#include <stddef.h>
#include <stdint.h>

/* Weight element types. The numeric codes are part of the JS contract (NATIVE_TYPE_CODES in
 * lib/native/binding.ts): never reorder. */
enum llm_type { LLM_F32 = 0, LLM_F16 = 1, LLM_BF16 = 2 };

/* A row-major [rows, cols] matrix (or a [cols] vector with rows = 1) viewed in place: `data` points into a
 * read-only file mapping, nothing is copied. */
struct llm_tensor {
  const void *data;
  enum llm_type type;
  int64_t rows;
  int64_t cols;
};

/* Bytes per element, or 0 for a code that is not an llm_type. */
size_t llm_type_size(int type);
const char *llm_type_name(int type);

/* Element conversions shared by the scalar kernels. */
float llm_f16_to_f32(uint16_t h);
static inline float llm_bf16_to_f32(uint16_t b) {
  union { uint32_t u; float f; } v = { .u = (uint32_t)b << 16 };
  return v.f;
}

/* Element i of a tensor's data, converted to f32 (scalar paths and tests). */
static inline float llm_tensor_get(const void *data, enum llm_type type, int64_t i) {
  switch (type) {
  case LLM_F16: return llm_f16_to_f32(((const uint16_t *)data)[i]);
  case LLM_BF16: return llm_bf16_to_f32(((const uint16_t *)data)[i]);
  default: return ((const float *)data)[i];
  }
}

#endif
