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

/* The panel formats (prompt processing on AVX-512) hold the same quantized values as q8_0 / q8_K, laid out for
 * broadcasts: a row is the cols values as unsigned bytes (value + 128, so they can be maddubs' unsigned operand),
 * then the f32 scale of each block (q8_0: per 32 values; q8_K: per 256), then for q8_K the int16 sum of each
 * 32 values (the q4_K scales and mins). Rows are padded to 64 bytes. */
enum llm_activation {
  LLM_ACTIVATION_F32,
  LLM_ACTIVATION_Q8_0,
  LLM_ACTIVATION_Q8_K,
  LLM_ACTIVATION_Q8_0_PANEL,
  LLM_ACTIVATION_Q8_K_PANEL,
  LLM_ACTIVATION_Q8_0_PANEL_SIGNED, /* as LLM_ACTIVATION_Q8_0_PANEL with the values as signed bytes, unbiased */
  /* f32 in groups of 4 tokens (the last group holds what is left, k <= 4): per 4 columns, the k tokens' 4 values
   * side by side, then each token's leftover columns (cols % 4). A group of one token is a plain f32 row. Rows
   * are cols floats apart, so token t of a group starting at token g sits at x + g * row bytes. */
  LLM_ACTIVATION_F32_INTERLEAVED,
  /* As LLM_ACTIVATION_Q8_0_PANEL_SIGNED, then the int32 sum of each block's values (before the padding): the
   * q4_0 decode kernel's per-block work on the activations, done once per token instead of once per 4 rows. */
  LLM_ACTIVATION_Q8_0_SUMS,
};
#define LLM_ACTIVATION_COUNT 8

/* Bytes of one activation row of `cols` values in a format (cols a multiple of its block size). */
size_t llm_activation_row_bytes(enum llm_activation format, int64_t cols);
/* Converts one row of n f32 activations to the format (f32: a copy). */
void llm_quantize_activation_row(enum llm_activation format, const float *x, void *y, int64_t n);

/* out[j * out_stride + i] = sum over `cols` values of weight row i times activation row j, for i < n_rows and
 * j < n_tokens. Weight rows are w_stride bytes apart, activation rows x_stride bytes apart. The driver calls
 * with n_rows <= row_tile and n_tokens <= token_tile. */
typedef void (*llm_dot_tile_fn)(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                float *out, int64_t out_stride, int n_rows, int n_tokens);

/* Packs rows [0, n_rows) (n_rows <= panel_rows) of a weight matrix into a panel: the rows' values interleaved
 * so that one vector holds the same columns of every row, with their scales, zero-padded to panel_rows rows. */
typedef void (*llm_pack_fn)(int64_t cols, const void *w, size_t w_stride, int n_rows, void *panel);
/* out[j * out_stride + i] = row i of the panel times activation row j (panel format), i < n_rows, j < n_tokens. */
typedef void (*llm_panel_gemm_fn)(int64_t cols, const void *panel, const void *x, size_t x_stride, float *out,
                                  int64_t out_stride, int n_rows, int n_tokens);

struct llm_dot_kernel {
  enum llm_activation activation;
  int row_tile;   /* rows that share each activation load */
  int token_tile; /* tokens that share each weight load (prompt processing, small batches) */
  llm_dot_tile_fn tile;
  /* Optional packed-panel path, taken for n_tokens >= panel_min_tokens: each thread packs panel_rows weight
   * rows at a time into its scratch (panel_bytes(cols) bytes, never the whole matrix) and multiplies the panel
   * with every token. The weights' unpacking is then paid once per panel instead of once per token tile. */
  enum llm_activation panel_activation;
  int panel_rows;
  int panel_min_tokens;
  size_t (*panel_bytes)(int64_t cols);
  llm_pack_fn pack;
  llm_panel_gemm_fn gemm;
};

/* The products over weights repacked at load (repack.h): gemm multiplies one group of LLM_REPACK_ROWS rows (n_rows
 * of them real) with n_tokens activation rows of the given format, as llm_panel_gemm_fn does a panel. */
struct llm_repacked_kernel {
  enum llm_activation activation;
  llm_panel_gemm_fn gemm;
};

/* The repacked kernel of a weight type on a kernel set (repack.c); NULL where there is none (the scalar set, types
 * without a repacked layout): the product then reads the mapped rows. */
const struct llm_repacked_kernel *llm_repacked_kernel(enum llm_type type, enum llm_kernel_set set);

/* The kernel for a weight type on a kernel set; NULL for an unknown type. */
const struct llm_dot_kernel *llm_dot_kernel(enum llm_type type, enum llm_kernel_set set);

/* The kernels of each set, listed by llm_dot_kernel (matmul.c): the float ones (the NEON sets share theirs) and each
 * quantized type's. */
#define LLM_DECLARE_FLOAT_KERNELS(set) extern const struct llm_dot_kernel llm_dot_f32_##set, llm_dot_f16_##set, llm_dot_bf16_##set;
#define LLM_DECLARE_QUANT_KERNELS(set)                                                                               \
  extern const struct llm_dot_kernel llm_dot_q8_0_##set, llm_dot_q4_0_##set, llm_dot_q4_1_##set, llm_dot_q5_0_##set,  \
      llm_dot_q5_1_##set, llm_dot_q2_K_##set, llm_dot_q3_K_##set, llm_dot_q4_K_##set, llm_dot_q5_K_##set,              \
      llm_dot_q6_K_##set, llm_dot_iq4_nl_##set, llm_dot_iq4_xs_##set;
LLM_DECLARE_FLOAT_KERNELS(scalar)
LLM_DECLARE_QUANT_KERNELS(scalar)
#if LLM_HAVE_AVX512_KERNELS
LLM_DECLARE_FLOAT_KERNELS(avx512)
LLM_DECLARE_QUANT_KERNELS(avx512)
#endif
#if LLM_HAVE_AVX2_KERNELS
LLM_DECLARE_FLOAT_KERNELS(avx2)
LLM_DECLARE_QUANT_KERNELS(avx2)
#endif
#if LLM_HAVE_NEON_KERNELS
/* The NEON float kernels serve every NEON set (dot_neon.c); the quantized ones exist per set (dot_neon_quant.h). */
LLM_DECLARE_FLOAT_KERNELS(neon)
LLM_DECLARE_QUANT_KERNELS(neon)
LLM_DECLARE_QUANT_KERNELS(neon_dotprod)
LLM_DECLARE_QUANT_KERNELS(neon_i8mm)
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

/* A SIMD tile function from an always-inline kernel `tile(cols, w, w_stride, x, x_stride, out, out_stride,
 * ROWS, TOKENS)` instantiated with compile-time tile sizes, so its accumulators stay in registers: the full
 * ROWS x TOKENS tile, ROWS x 1 for decode and leftover tokens, 1 x 1 for leftover rows. `target` is the function
 * attribute the kernel set is compiled with (empty where its whole file is). */
#define LLM_DEFINE_TARGET_TILE(target, name, tile, ROWS, TOKENS)                                                \
  target static void name(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,        \
                          float *out, int64_t out_stride, int n_rows, int n_tokens) {                           \
    if (n_rows == (ROWS) && n_tokens == (TOKENS)) {                                                             \
      tile(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS);                                      \
    } else if (n_rows == (ROWS)) {                                                                              \
      for (int j = 0; j < n_tokens; j++)                                                                        \
        tile(cols, w, w_stride, (const char *)x + j * x_stride, x_stride, out + j * out_stride, out_stride, ROWS, 1); \
    } else {                                                                                                    \
      for (int i = 0; i < n_rows; i++)                                                                          \
        for (int j = 0; j < n_tokens; j++)                                                                      \
          tile(cols, (const char *)w + i * w_stride, w_stride, (const char *)x + j * x_stride, x_stride,        \
               out + j * out_stride + i, out_stride, 1, 1);                                                     \
    }                                                                                                           \
  }

#if LLM_HAVE_AVX2_KERNELS
#define LLM_DEFINE_AVX2_TILE(name, tile, ROWS, TOKENS) LLM_DEFINE_TARGET_TILE(LLM_TARGET_AVX2, name, tile, ROWS, TOKENS)
#endif

#endif
