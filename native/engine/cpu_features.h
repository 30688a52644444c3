#ifndef LLM_CPU_FEATURES_H
#define LLM_CPU_FEATURES_H

#include <stdbool.h>

/* Which kernel family runs: AVX2 (with FMA and F16C) where the CPU has it, portable scalar C elsewhere.
 * The SIMD kernels are compiled with function-level target attributes, so one binary runs on any x86-64. */
enum llm_kernel_set { LLM_KERNELS_SCALAR = 0, LLM_KERNELS_AVX2 = 1 };

enum llm_kernel_set llm_kernel_set(void);
const char *llm_kernel_set_name(enum llm_kernel_set set);

#if defined(__x86_64__)
#define LLM_HAVE_AVX2_KERNELS 1
#define LLM_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define LLM_HAVE_AVX2_KERNELS 0
#endif

#endif
