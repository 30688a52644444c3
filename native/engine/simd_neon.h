#ifndef LLM_SIMD_NEON_H
#define LLM_SIMD_NEON_H

/* Small NEON helpers shared by the aarch64 kernels (dot_neon*.c, attention.c, ...). Plain C11 with <arm_neon.h>
 * intrinsics, so GCC and clang (macOS) compile the same code. A file that defines LLM_NEON_DOTPROD to 1 before
 * including this is compiled for the dotprod extension as a whole, and its int8 dot products use sdot; one that also
 * defines LLM_NEON_I8MM to 1 is compiled for i8mm too (dot_neon_quant.h then multiplies whole tiles with smmla). */

#include "cpu_features.h"

#if LLM_HAVE_NEON_KERNELS
#include <arm_neon.h>

#ifndef LLM_NEON_DOTPROD
#define LLM_NEON_DOTPROD 0
#endif
#ifndef LLM_NEON_I8MM
#define LLM_NEON_I8MM 0
#endif

#define LLM_NEON_INLINE static inline __attribute__((always_inline))

/* acc + the 16 products a[k] * b[k], summed in groups of 4 into the 4 int32 lanes (exact: |a b| <= 2^14). Without
 * sdot: the products widened to int16, then added pairwise into the lanes (the lane each product lands in differs,
 * the lanes' total does not). */
LLM_NEON_INLINE int32x4_t llm_neon_dot_i8(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if LLM_NEON_DOTPROD
  return vdotq_s32(acc, a, b);
#else
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
  return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}

/* An IEEE half as f32: the value llm_f16_to_f32 gives, in one conversion instead of a call. */
LLM_NEON_INLINE float llm_neon_half_to_float(uint16_t h) {
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* 4 consecutive IEEE halves widened to f32 (a base ARMv8 conversion: exact, no FP16 arithmetic involved). */
LLM_NEON_INLINE float32x4_t llm_neon_load4_f16(const uint16_t *h) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))); }
/* 4 consecutive bfloat16 widened to f32: each the top half of its f32. */
LLM_NEON_INLINE float32x4_t llm_neon_load4_bf16(const uint16_t *h) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(h), 16)); }
/* 8 consecutive signed bytes widened to f32, in two vectors. */
LLM_NEON_INLINE void llm_neon_load8_i8(const int8_t *q, float32x4_t out[2]) {
  const int16x8_t wide = vmovl_s8(vld1_s8(q));
  out[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(wide)));
  out[1] = vcvtq_f32_s32(vmovl_high_s16(wide));
}

#endif

#endif
