/* The NEON kernel sets (aarch64): the float dot products (f32, f16, bf16 weights against f32 activations), which
 * both NEON sets run, and the quantized ones of the plain NEON set (dot_neon_quant.h; the dotprod set's are
 * dot_neon_dotprod.c). */
#include "dot.h"

#if LLM_HAVE_NEON_KERNELS

#include "simd_neon.h"

/* 4 consecutive weights from element i, widened to f32. */
LLM_NEON_INLINE float32x4_t load4(const void *data, int64_t i, enum llm_type type) {
  switch (type) {
  case LLM_F16: return llm_neon_load4_f16((const uint16_t *)data + i);
  case LLM_BF16: return llm_neon_load4_bf16((const uint16_t *)data + i);
  default: return vld1q_f32((const float *)data + i);
  }
}

/* ROWS x TOKENS dot products sharing each weight and activation load. Each row and token is one chain of FMAs
 * over 4 columns at a time, folded as (s0 + s1) + (s2 + s3), then the leftover columns one by one, unfused: the
 * same steps whatever the tile, so a token gets the same bits in a batch or alone. 8 rows x 2 tokens: 16
 * accumulators + 8 weight vectors + 2 activation vectors of the 32 registers, and 8 independent chains for decode
 * to cover the FMA latency. */
#define FLOAT_ROWS 8
#define FLOAT_TOKENS 2

LLM_NEON_INLINE void tile_float(enum llm_type type, int64_t cols, const void *w, size_t w_stride, const void *x,
                                size_t x_stride, float *out, int64_t out_stride, const int ROWS, const int TOKENS) {
  float32x4_t acc[FLOAT_ROWS][FLOAT_TOKENS];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) acc[i][j] = vdupq_n_f32(0.0f);
  int64_t c = 0;
  for (; c + 4 <= cols; c += 4) {
    float32x4_t wv[FLOAT_ROWS];
    for (int i = 0; i < ROWS; i++) wv[i] = load4((const char *)w + i * w_stride, c, type);
    for (int j = 0; j < TOKENS; j++) {
      const float32x4_t xv = vld1q_f32((const float *)((const char *)x + j * x_stride) + c);
      for (int i = 0; i < ROWS; i++) acc[i][j] = vfmaq_f32(acc[i][j], wv[i], xv);
    }
  }
  for (int i = 0; i < ROWS; i++) {
    for (int j = 0; j < TOKENS; j++) {
      const void *wr = (const char *)w + i * w_stride;
      const float *xr = (const float *)((const char *)x + j * x_stride);
      float sum = vaddvq_f32(acc[i][j]);
      for (int64_t cc = c; cc < cols; cc++) sum += llm_tensor_get(wr, type, cc) * xr[cc];
      out[j * out_stride + i] = sum;
    }
  }
}

#define TILE_F32(...) tile_float(LLM_F32, __VA_ARGS__)
#define TILE_F16(...) tile_float(LLM_F16, __VA_ARGS__)
#define TILE_BF16(...) tile_float(LLM_BF16, __VA_ARGS__)
LLM_DEFINE_TARGET_TILE(, tile_f32_neon, TILE_F32, FLOAT_ROWS, FLOAT_TOKENS)
LLM_DEFINE_TARGET_TILE(, tile_f16_neon, TILE_F16, FLOAT_ROWS, FLOAT_TOKENS)
LLM_DEFINE_TARGET_TILE(, tile_bf16_neon, TILE_BF16, FLOAT_ROWS, FLOAT_TOKENS)
const struct llm_dot_kernel llm_dot_f32_neon = { LLM_ACTIVATION_F32, FLOAT_ROWS, FLOAT_TOKENS, tile_f32_neon };
const struct llm_dot_kernel llm_dot_f16_neon = { LLM_ACTIVATION_F32, FLOAT_ROWS, FLOAT_TOKENS, tile_f16_neon };
const struct llm_dot_kernel llm_dot_bf16_neon = { LLM_ACTIVATION_F32, FLOAT_ROWS, FLOAT_TOKENS, tile_bf16_neon };

#include "dot_neon_quant.h"

#endif
