#ifndef LLM_CPU_FEATURES_H
#define LLM_CPU_FEATURES_H

#include <stdbool.h>

/* Which kernel family runs: AVX-512 (F, BW, VL, DQ on top of AVX2) where the CPU has it, else AVX2 (with FMA
 * and F16C), else portable scalar C; each x86 SIMD set has a VNNI twin (AVX-512 VNNI: vpdpbusd on zmm; AVX-VNNI:
 * its VEX form, on AVX2-only CPUs such as Alder Lake) whose int8 products use vpdpbusd. The SIMD kernels are
 * compiled with function-level target attributes, so one binary runs on any x86-64. Every set from AVX2 up may use
 * the AVX2 kernels; a VNNI set runs its base set's kernels (llm_kernel_set_base) wherever it has none of its own.
 * On aarch64 the NEON sets take the place of the x86 ones (which no aarch64 CPU supports, and the reverse): plain
 * NEON (every aarch64 CPU), NEON with the int8 dot-product instructions (sdot, ARMv8.2 dotprod) where present, and
 * with the int8 matrix multiply (smmla, i8mm) on top where both are. */
enum llm_kernel_set {
  LLM_KERNELS_SCALAR = 0,
  LLM_KERNELS_AVX2 = 1,
  LLM_KERNELS_AVX512 = 2,
  LLM_KERNELS_AVX2_VNNI = 3,
  LLM_KERNELS_AVX512_VNNI = 4,
  LLM_KERNELS_NEON = 5,
  LLM_KERNELS_NEON_DOTPROD = 6,
  LLM_KERNELS_NEON_I8MM = 7,
};
#define LLM_KERNEL_SET_COUNT 8

/* The set in use: the best the CPU supports (x86: avx512-vnni, avx512, avx2-vnni, avx2, scalar in that order of
 * preference; aarch64: neon-i8mm, neon-dotprod, neon, scalar), or the one LLAMA_NAPI_KERNELS=<set name> forces
 * (falling down that order to one the CPU supports). */
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

/* The NEON kernels (dot_neon*.c): plain NEON is part of every aarch64 CPU; the dotprod and i8mm sets' files are
 * compiled for those extensions as a whole (dot_neon_dotprod.c, dot_neon_i8mm.c) and only called where the CPU has
 * them. */
#if defined(__aarch64__)
#define LLM_HAVE_NEON_KERNELS 1
#else
#define LLM_HAVE_NEON_KERNELS 0
#endif

#endif
