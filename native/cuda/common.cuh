// Shared by the CUDA kernels: error checks, warp reductions, element conversions, and the activation formats.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#define LLM_CUDA_WARP 32

// The largest head size the engine accepts (ops.h): one rope/attention block covers a head.
#define LLM_CUDA_MAX_HEAD_DIM 1024

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ __forceinline__ float half_bits_to_float(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) { return __uint_as_float((uint32_t)bits << 16); }

// Activations multiplied with q8_0 and q4_0 weights: the engine's q8_0 row quantization (quant_q8_0.c, bit for
// bit) in a layout for 16-byte loads. d is the half-rounded scale the CPU stores, widened; sum is the sum of qs
// (q4_0 subtracts its offset 8 through it instead of from each value).
struct act_q8_0 {
  int8_t qs[32];
  float d;
  int32_t sum;
  int32_t pad[2];
};
static_assert(sizeof(act_q8_0) == 48, "act_q8_0 is 3 16-byte loads");

// Activations multiplied with q4_K and q6_K weights: the engine's q8_K quantization (quant_q8_K.c) with the
// sums of each 16 values.
struct act_q8_K {
  int8_t qs[256];
  float d;
  int16_t bsums[16];
  int32_t pad[3];
};
static_assert(sizeof(act_q8_K) == 304, "act_q8_K is 19 16-byte loads");

// The q8_0 quantization of one block of 32 values held by the 32 lanes of a warp, lane i holding value i: d =
// amax / 127 (the caller stores it as a half), q = roundf(x / d), bit for bit llm_quantize_row_q8_0_ref. Returns the
// lane's q; d in *d (the same in every lane).
__device__ __forceinline__ int quantize_lane_q8_0(float v, float *d) {
  const float amax = warp_max(fabsf(v));
  *d = amax / 127.0f;
  const float id = *d != 0.0f ? 1.0f / *d : 0.0f;
  return (int)roundf(__fmul_rn(v, id));
}

// One q8_0 block of activations from the 32 lanes of a warp (quantize_lane_q8_0). Shared by the quantizer and the
// fused RMSNorm.
__device__ __forceinline__ void quantize_warp_q8_0(float v, act_q8_0 &out) {
  const int lane = threadIdx.x % LLM_CUDA_WARP;
  float d;
  const int q = quantize_lane_q8_0(v, &d);
  out.qs[lane] = (int8_t)q;
  const int sum = warp_sum_int(q);
  if (lane == 0) {
    out.d = __half2float(__float2half_rn(d));
    out.sum = sum;
  }
}

// A row of `cols` activations in each format, in bytes (cols a multiple of the format's block where it has one).
inline size_t act_row_bytes_q8_0(int64_t cols) { return (size_t)(cols / 32) * sizeof(act_q8_0); }
inline size_t act_row_bytes_q8_K(int64_t cols) { return (size_t)(cols / 256) * sizeof(act_q8_K); }
