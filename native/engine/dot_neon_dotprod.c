/* The quantized kernels of the NEON dotprod set: dot_neon_quant.h compiled for ARMv8.2-A + dotprod (CMakeLists.txt
 * gives this file -march=armv8.2-a+dotprod), so its int8 dot products are sdot instructions. Only called where the
 * CPU has them (cpu_features.c); the float kernels are the plain NEON set's (dot_neon.c). */
#include "cpu_features.h"

#if LLM_HAVE_NEON_KERNELS

#if !defined(__ARM_FEATURE_DOTPROD)
#error "dot_neon_dotprod.c needs -march=armv8.2-a+dotprod (CMakeLists.txt sets it on aarch64)"
#endif

#define LLM_NEON_DOTPROD 1
#include "dot.h"
#include "simd_neon.h"
#include "dot_neon_quant.h"

#endif
