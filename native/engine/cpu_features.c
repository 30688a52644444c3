#include "cpu_features.h"

#include <stdlib.h>
#include <string.h>

static enum llm_kernel_set detect(void) {
  /* LLAMA_NAPI_KERNELS=scalar forces the portable kernels: lets tests cover them on an AVX2 machine. */
  const char *forced = getenv("LLAMA_NAPI_KERNELS");
  if (forced && strcmp(forced, "scalar") == 0) return LLM_KERNELS_SCALAR;
#if LLM_HAVE_AVX2_KERNELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return LLM_KERNELS_AVX2;
#endif
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

const char *llm_kernel_set_name(enum llm_kernel_set set) { return set == LLM_KERNELS_AVX2 ? "avx2" : "scalar"; }
