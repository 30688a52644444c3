#ifndef LLM_CPU_FEATURES_H
#define LLM_CPU_FEATURES_H

#include <stdbool.h>

/* Which kernel family runs: AVX-512 (F, BW, VL, DQ on top of AVX2) where the CPU has it, else AVX2 (with FMA
 * and F16C), else portable scalar C. The SIMD kernels are compiled with function-level target attributes, so one
 * binary runs on any x86-64. The sets are ordered: a higher set may use any lower set's kernels.
 * On aarch64 the NEON sets take the place of the x86 ones (which no aarch64 CPU supports, and the reverse): plain
 * NEON (every aarch64 CPU), NEON with the int8 dot-product instructions (sdot, ARMv8.2 dotprod) where present, and
 * with the int8 matrix multiply (smmla, i8mm) on top where both are. */
enum llm_kernel_set {
  LLM_KERNELS_SCALAR = 0,
  LLM_KERNELS_AVX2 = 1,
  LLM_KERNELS_AVX512 = 2,
  LLM_KERNELS_NEON = 3,
  LLM_KERNELS_NEON_DOTPROD = 4,
  LLM_KERNELS_NEON_I8MM = 5,
};
#define LLM_KERNEL_SET_COUNT 6

/* The set in use: the best the CPU supports, or the one LLAMA_NAPI_KERNELS=scalar|avx2|avx512|neon|neon_dotprod|
 * neon_i8mm forces (clamped to what the CPU supports). */
enum llm_kernel_set llm_kernel_set(void);
/* Whether this CPU (and build) can run a set, whatever LLAMA_NAPI_KERNELS says: the tests compare each. */
bool llm_kernel_set_supported(enum llm_kernel_set set);
const char *llm_kernel_set_name(enum llm_kernel_set set);

#if defined(__x86_64__)
#define LLM_HAVE_AVX2_KERNELS 1
#define LLM_HAVE_AVX512_KERNELS 1
#define LLM_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LLM_TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#else
#define LLM_HAVE_AVX2_KERNELS 0
#define LLM_HAVE_AVX512_KERNELS 0
#endif

/* The NEON kernels (dot_neon*.c): plain NEON is part of every aarch64 CPU; the dotprod and i8mm sets' files are
 * compiled for those extensions as a whole (dot_neon_dotprod.c, dot_neon_i8mm.c) and only called where the CPU has
 * them. */
#if defined(__aarch64__)
#define LLM_HAVE_NEON_KERNELS 1
#else
#define LLM_HAVE_NEON_KERNELS 0
#endif

#endif
