#ifndef LLM_TENSOR_H
#define LLM_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Weight element types, numbered as ggml numbers them in GGUF files (ggml_type), so a file's type code is the
 * engine's: the addon and lib/native pass codes through unchanged. The quantized types store blocks in ggml's
 * layouts (blocks.h), so a row of `cols` values is cols / block_size blocks. Codes between these are types the
 * engine does not compute with: llm_type_block_size() is 0 for them. */
enum llm_type {
  LLM_F32 = 0,
  LLM_F16 = 1,
  LLM_Q4_0 = 2,
  LLM_Q4_1 = 3,
  LLM_Q5_0 = 6,
  LLM_Q5_1 = 7,
  LLM_Q8_0 = 8,
  LLM_Q2_K = 10,
  LLM_Q3_K = 11,
  LLM_Q4_K = 12,
  LLM_Q5_K = 13,
  LLM_Q6_K = 14,
  LLM_IQ4_NL = 20,
  LLM_IQ4_XS = 23,
  LLM_BF16 = 30,
};
#define LLM_TYPE_COUNT 31 /* one past the largest code above */

/* A row-major [rows, cols] matrix (or a [cols] vector with rows = 1) viewed in place: `data` points into a
 * read-only file mapping, nothing is copied. `repacked`, when not NULL, holds the same rows again in the layout of
 * repack.h, made at load for the CPU's SIMD kernels (owned by the model). */
struct llm_tensor {
  const void *data;
  enum llm_type type;
  int64_t rows;
  int64_t cols;
  const void *repacked;
};

/* Values per block (1 for f32/f16/bf16) and bytes per block; 0 for a code that is not an llm_type. */
int llm_type_block_size(int type);
size_t llm_type_block_bytes(int type);
const char *llm_type_name(int type);
static inline bool llm_type_is_quantized(int type) { return llm_type_block_size(type) > 1; }
/* Writes "code name" of every type, comma-separated, into buf (truncated to size, always terminated). */
void llm_format_type_list(char *buf, size_t size);

/* Bytes of one row of `cols` values, or 0 when the type is unknown or cols is not a multiple of its block size. */
size_t llm_row_bytes(int type, int64_t cols);

/* Converts n values (a multiple of the block size) between f32 and a type: f16/bf16 round to nearest even,
 * the quantized types use the reference quantizers of quant_*.c. */
void llm_quantize_row(enum llm_type type, const float *x, void *y, int64_t n);
void llm_dequantize_row(enum llm_type type, const void *x, float *y, int64_t n);

/* Element conversions shared by the scalar kernels. */
float llm_f16_to_f32(uint16_t h);
uint16_t llm_f32_to_f16(float f); /* round to nearest even; overflow to infinity, NaN stays NaN */
uint16_t llm_f32_to_bf16(float f);
static inline float llm_bf16_to_f32(uint16_t b) {
  union { uint32_t u; float f; } v = { .u = (uint32_t)b << 16 };
  return v.f;
}

/* Element i of an f32/f16/bf16 tensor's data, converted to f32 (scalar paths and tests). */
static inline float llm_tensor_get(const void *data, enum llm_type type, int64_t i) {
  switch (type) {
  case LLM_F16: return llm_f16_to_f32(((const uint16_t *)data)[i]);
  case LLM_BF16: return llm_bf16_to_f32(((const uint16_t *)data)[i]);
  default: return ((const float *)data)[i];
  }
}

#endif
