#ifndef LLM_DOT_H
#define LLM_DOT_H

/* Dot-product kernels behind the matmul driver (matmul.c): one per weight type and kernel set. A kernel
 * multiplies a tile of weight rows with a tile of activation rows that the driver has already converted to the
 * kernel's activation format (f32 for float weights; q8_0 or q8_K for quantized ones, so the inner loops are
 * integer multiply-adds). */

#include <stddef.h>
#include <stdint.h>

#include "cpu_features.h"
#include "tensor.h"

enum llm_activation { LLM_ACTIVATION_F32, LLM_ACTIVATION_Q8_0, LLM_ACTIVATION_Q8_K };

/* Bytes of one activation row of `cols` values in a format (cols a multiple of its block size). */
size_t llm_activation_row_bytes(enum llm_activation format, int64_t cols);
/* Converts one row of n f32 activations to the format (f32: a copy). */
void llm_quantize_activation_row(enum llm_activation format, const float *x, void *y, int64_t n);

/* out[j * out_stride + i] = sum over `cols` values of weight row i times activation row j, for i < n_rows and
 * j < n_tokens. Weight rows are w_stride bytes apart, activation rows x_stride bytes apart. The driver calls
 * with n_rows <= row_tile, and n_tokens == token_tile or 1. */
typedef void (*llm_dot_tile_fn)(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                float *out, int64_t out_stride, int n_rows, int n_tokens);

struct llm_dot_kernel {
  enum llm_activation activation;
  int row_tile;   /* rows that share each activation load */
  int token_tile; /* tokens that share each weight load (prompt processing) */
  llm_dot_tile_fn tile;
};

/* The kernel for a weight type on a kernel set; NULL for an unknown type. */
const struct llm_dot_kernel *llm_dot_kernel(enum llm_type type, enum llm_kernel_set set);

/* The kernels of each file, listed by llm_dot_kernel (matmul.c). */
extern const struct llm_dot_kernel llm_dot_f32_scalar, llm_dot_f16_scalar, llm_dot_bf16_scalar;
extern const struct llm_dot_kernel llm_dot_q8_0_scalar, llm_dot_q4_0_scalar, llm_dot_q4_K_scalar, llm_dot_q6_K_scalar;
#if LLM_HAVE_AVX2_KERNELS
extern const struct llm_dot_kernel llm_dot_f32_avx2, llm_dot_f16_avx2, llm_dot_bf16_avx2;
extern const struct llm_dot_kernel llm_dot_q8_0_avx2, llm_dot_q4_0_avx2, llm_dot_q4_K_avx2, llm_dot_q6_K_avx2;
#endif

/* A scalar tile function from a one-row, one-token dot product `float row_dot(int64_t cols, const void *w,
 * const void *x)`: the reference kernels need no register tiling. */
#define LLM_DEFINE_SCALAR_TILE(name, row_dot)                                                                   \
  static void name(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride, float *out,  \
                   int64_t out_stride, int n_rows, int n_tokens) {                                              \
    for (int i = 0; i < n_rows; i++)                                                                            \
      for (int j = 0; j < n_tokens; j++)                                                                        \
        out[j * out_stride + i] = row_dot(cols, (const char *)w + i * w_stride, (const char *)x + j * x_stride); \
  }

#if LLM_HAVE_AVX2_KERNELS
/* An AVX2 tile function from an always-inline kernel `tile(cols, w, w_stride, x, x_stride, out, out_stride,
 * ROWS, TOKENS)` instantiated with compile-time tile sizes, so its accumulators stay in registers: the full
 * ROWS x TOKENS tile, ROWS x 1 for decode and leftover tokens, 1 x 1 for leftover rows. */
#define LLM_DEFINE_AVX2_TILE(name, tile, ROWS, TOKENS)                                                         \
  LLM_TARGET_AVX2 static void name(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                   float *out, int64_t out_stride, int n_rows, int n_tokens) {                  \
    if (n_rows == (ROWS) && n_tokens == (TOKENS)) {                                                             \
      tile(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS);                                      \
    } else if (n_rows == (ROWS) && n_tokens == 1) {                                                             \
      tile(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, 1);                                           \
    } else {                                                                                                    \
      for (int i = 0; i < n_rows; i++)                                                                          \
        for (int j = 0; j < n_tokens; j++)                                                                      \
          tile(cols, (const char *)w + i * w_stride, w_stride, (const char *)x + j * x_stride, x_stride,        \
               out + j * out_stride + i, out_stride, 1, 1);                                                     \
    }                                                                                                           \
  }
#endif

#endif
