/* The quantized kernels of the NEON i8mm set: dot_neon_quant.h compiled for ARMv8.2-A + dotprod + i8mm
 * (CMakeLists.txt gives this file -march=armv8.2-a+dotprod+i8mm), so whole 4 x 4 tiles (prompts) multiply with smmla
 * and the rest with sdot. Only called where the CPU has both (cpu_features.c); the float kernels are the plain NEON
 * set's (dot_neon.c). */
#include "cpu_features.h"

#if LLM_HAVE_NEON_KERNELS

#if !defined(__ARM_FEATURE_DOTPROD) || !defined(__ARM_FEATURE_MATMUL_INT8)
#error "dot_neon_i8mm.c needs -march=armv8.2-a+dotprod+i8mm (CMakeLists.txt sets it on aarch64)"
#endif

#define LLM_NEON_DOTPROD 1
#define LLM_NEON_I8MM 1
#include "dot.h"
#include "simd_neon.h"
#include "dot_neon_quant.h"

#endif
