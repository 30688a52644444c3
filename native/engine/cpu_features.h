#ifndef LLM_CPU_FEATURES_H
#define LLM_CPU_FEATURES_H

#include <stdbool.h>

/* Which kernel family runs: AVX-512 (F, BW, VL, DQ on top of AVX2) where the CPU has it, else AVX2 (with FMA
 * and F16C), else portable scalar C; each x86 SIMD set has a VNNI twin (AVX-512 VNNI: vpdpbusd on zmm; AVX-VNNI:
 * its VEX form, on AVX2-only CPUs such as Alder Lake) whose int8 products use vpdpbusd. The SIMD kernels are
 * compiled with function-level target attributes, so one binary runs on any x86-64. Every set from AVX2 up may use
 * the AVX2 kernels; a VNNI set runs its base set's kernels (llm_kernel_set_base) wherever it has none of its own. */
enum llm_kernel_set {
  LLM_KERNELS_SCALAR = 0,
  LLM_KERNELS_AVX2 = 1,
  LLM_KERNELS_AVX512 = 2,
  LLM_KERNELS_AVX2_VNNI = 3,
  LLM_KERNELS_AVX512_VNNI = 4,
};
#define LLM_KERNEL_SET_COUNT 5

/* The set in use: the best the CPU supports (avx512-vnni, avx512, avx2-vnni, avx2, scalar in that order of
 * preference), or the one LLAMA_NAPI_KERNELS=scalar|avx2|avx2-vnni|avx512|avx512-vnni forces (falling down that
 * order to one the CPU supports). */
enum llm_kernel_set llm_kernel_set(void);
/* The set without VNNI whose kernels a set runs for the products that have no VNNI kernel: avx2-vnni -> avx2,
 * avx512-vnni -> avx512, any other set itself. */
enum llm_kernel_set llm_kernel_set_base(enum llm_kernel_set set);
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
/* The VNNI sets: defined to 1 by CMakeLists.txt where the assembler knows vpdpbusd (repack.c writes it as assembly). */
#if !defined(LLM_HAVE_AVX512_VNNI_KERNELS) || !LLM_HAVE_AVX512_KERNELS
#undef LLM_HAVE_AVX512_VNNI_KERNELS
#define LLM_HAVE_AVX512_VNNI_KERNELS 0
#endif
#if !defined(LLM_HAVE_AVX2_VNNI_KERNELS) || !LLM_HAVE_AVX2_KERNELS
#undef LLM_HAVE_AVX2_VNNI_KERNELS
#define LLM_HAVE_AVX2_VNNI_KERNELS 0
#endif

#endif
