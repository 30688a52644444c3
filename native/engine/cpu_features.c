#include "cpu_features.h"

#include <stdlib.h>
#include <string.h>

#if LLM_HAVE_NEON_KERNELS && defined(__APPLE__)
#include <sys/sysctl.h>
#elif LLM_HAVE_NEON_KERNELS
#include <sys/auxv.h>
#endif

#if LLM_HAVE_NEON_KERNELS
#if defined(__APPLE__)
/* Whether macOS reports an Arm feature (hw.optional.arm.FEAT_*). */
static bool apple_has(const char *feature) {
  int present = 0;
  size_t size = sizeof present;
  return sysctlbyname(feature, &present, &size, NULL, 0) == 0 && present;
}
#endif

/* Whether the CPU has the int8 dot-product instructions (sdot / udot). */
static bool cpu_has_dotprod(void) {
#if defined(__APPLE__)
  return apple_has("hw.optional.arm.FEAT_DotProd");
#else
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
}

/* Whether the CPU has the int8 matrix multiply (smmla). */
static bool cpu_has_i8mm(void) {
#if defined(__APPLE__)
  return apple_has("hw.optional.arm.FEAT_I8MM");
#else
  return (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
#endif
}
#endif

bool llm_kernel_set_supported(enum llm_kernel_set set) {
  switch (set) {
  case LLM_KERNELS_SCALAR: return true;
#if LLM_HAVE_AVX2_KERNELS
  case LLM_KERNELS_AVX2:
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#endif
#if LLM_HAVE_AVX512_KERNELS
  case LLM_KERNELS_AVX512:
    return llm_kernel_set_supported(LLM_KERNELS_AVX2) && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
#endif
#if LLM_HAVE_AVX2_VNNI_KERNELS
  case LLM_KERNELS_AVX2_VNNI:
    return llm_kernel_set_supported(LLM_KERNELS_AVX2) && __builtin_cpu_supports("avxvnni");
#endif
#if LLM_HAVE_AVX512_VNNI_KERNELS
  case LLM_KERNELS_AVX512_VNNI:
    return llm_kernel_set_supported(LLM_KERNELS_AVX512) && __builtin_cpu_supports("avx512vnni");
#endif
#if LLM_HAVE_NEON_KERNELS
  case LLM_KERNELS_NEON: return true;
  case LLM_KERNELS_NEON_DOTPROD: return cpu_has_dotprod();
  case LLM_KERNELS_NEON_I8MM: return cpu_has_dotprod() && cpu_has_i8mm();
#endif
  default: return false;
  }
}

/* The sets from best to worst: detection takes the first the CPU supports at or after the forced one (a set of the
 * other architecture is never supported, so each machine walks its own). */
static const enum llm_kernel_set preference[] = { LLM_KERNELS_AVX512_VNNI, LLM_KERNELS_AVX512, LLM_KERNELS_AVX2_VNNI,
                                                  LLM_KERNELS_AVX2, LLM_KERNELS_NEON_I8MM, LLM_KERNELS_NEON_DOTPROD,
                                                  LLM_KERNELS_NEON, LLM_KERNELS_SCALAR };
#define PREFERENCE_COUNT (sizeof preference / sizeof preference[0])

static enum llm_kernel_set detect(void) {
  /* LLAMA_NAPI_KERNELS=<set name> caps the set: lets tests cover the lower sets on a bigger machine. */
  size_t first = 0;
  const char *forced = getenv("LLAMA_NAPI_KERNELS");
  for (size_t i = 0; forced && i < PREFERENCE_COUNT; i++)
    if (strcmp(forced, llm_kernel_set_name(preference[i])) == 0) first = i;
  for (size_t i = first; i < PREFERENCE_COUNT; i++)
    if (llm_kernel_set_supported(preference[i])) return preference[i];
  return LLM_KERNELS_SCALAR;
}

enum llm_kernel_set llm_kernel_set(void) {
  /* Idempotent and race-free: every thread computes the same value. */
  static int cached = -1;
  int set = __atomic_load_n(&cached, __ATOMIC_RELAXED);
  if (set < 0) {
    set = detect();
    __atomic_store_n(&cached, set, __ATOMIC_RELAXED);
  }
  return (enum llm_kernel_set)set;
}

enum llm_kernel_set llm_kernel_set_base(enum llm_kernel_set set) {
  return set == LLM_KERNELS_AVX512_VNNI ? LLM_KERNELS_AVX512 : set == LLM_KERNELS_AVX2_VNNI ? LLM_KERNELS_AVX2 : set;
}

const char *llm_kernel_set_name(enum llm_kernel_set set) {
  switch (set) {
  case LLM_KERNELS_AVX2: return "avx2";
  case LLM_KERNELS_AVX512: return "avx512";
  case LLM_KERNELS_AVX2_VNNI: return "avx2-vnni";
  case LLM_KERNELS_AVX512_VNNI: return "avx512-vnni";
  case LLM_KERNELS_NEON: return "neon";
  case LLM_KERNELS_NEON_DOTPROD: return "neon-dotprod";
  case LLM_KERNELS_NEON_I8MM: return "neon-i8mm";
  default: return "scalar";
  }
}
