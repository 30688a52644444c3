// Rows of the paged KV pool (cuda_kv) in each of its types, for the kernels that store into it (the rope store,
// the decode attention) and read from it (the decode attention, the prompt tiles): where a position's head lies,
// its values widened to f32 four (or one) at a time, and a head stored from f32.
#pragma once

#include <type_traits>

#include "kernels.cuh"

extern "C" {
#include "quant.h"
}

// Byte offset of the row of position pos (a sequence's, in pool block `block`) in layer `layer`.
__device__ __forceinline__ size_t kv_row_offset(const cuda_kv &kv, int32_t block, int layer, int pos) {
  return (((size_t)layer * kv.n_blocks + block) * LLM_KV_BLOCK_TOKENS + pos % LLM_KV_BLOCK_TOKENS) * kv.row_bytes;
}

// A head's bytes in each type: load4 widens values 4j .. 4j + 3 (16-byte aligned for f32, 8 for f16: head_dim a
// multiple of 4), load1 value i, store writes head_dim values from shared memory with the block's threads (for
// q8_0, whole warps: blockDim.x a multiple of 32).
template <int Type> struct KvFormat;

template <> struct KvFormat<LLM_KV_F32> {
  __device__ static float4 load4(const uint8_t *head, int j) { return reinterpret_cast<const float4 *>(head)[j]; }
  __device__ static float load1(const uint8_t *head, int i) { return reinterpret_cast<const float *>(head)[i]; }
  __device__ static void store(uint8_t *head, const float *values, int head_dim) {
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) reinterpret_cast<float *>(head)[i] = values[i];
  }
};

template <> struct KvFormat<LLM_KV_F16> {
  __device__ static float4 load4(const uint8_t *head, int j) {
    const uint2 bits = reinterpret_cast<const uint2 *>(head)[j]; // two half2 in one 8-byte load
    const float2 a = __half22float2(*reinterpret_cast<const __half2 *>(&bits.x));
    const float2 b = __half22float2(*reinterpret_cast<const __half2 *>(&bits.y));
    return make_float4(a.x, a.y, b.x, b.y);
  }
  __device__ static float load1(const uint8_t *head, int i) { return half_bits_to_float(reinterpret_cast<const uint16_t *>(head)[i]); }
  __device__ static void store(uint8_t *head, const float *values, int head_dim) {
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x)
      reinterpret_cast<uint16_t *>(head)[i] = __half_as_ushort(__float2half_rn(values[i]));
  }
};

// struct llm_block_q8_0: the scale d (IEEE half) then 32 int8, 34 bytes (2-byte aligned); value = d * q, as
// llm_dequantize_row_q8_0 computes it.
constexpr int kQ8BlockBytes = 34;
static_assert(sizeof(llm_block_q8_0) == kQ8BlockBytes, "the pool's q8_0 blocks are quant.h's");

template <> struct KvFormat<LLM_KV_Q8_0> {
  __device__ static float4 load4(const uint8_t *head, int j) {
    const uint8_t *block = head + (j / 8) * kQ8BlockBytes;
    const float d = half_bits_to_float(*reinterpret_cast<const uint16_t *>(block));
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(block + 2 + (j % 8) * 4);
    const uint16_t lo = qs[0], hi = qs[1];
    return make_float4(d * (float)(int8_t)(lo & 0xff), d * (float)(int8_t)(lo >> 8), d * (float)(int8_t)(hi & 0xff),
                       d * (float)(int8_t)(hi >> 8));
  }
  __device__ static float load1(const uint8_t *head, int i) {
    const uint8_t *block = head + (i / 32) * kQ8BlockBytes;
    return half_bits_to_float(*reinterpret_cast<const uint16_t *>(block)) * (float)(int8_t)block[2 + i % 32];
  }
  // Warp w quantizes blocks w, w + warps, ... (quantize_lane_q8_0: llm_quantize_row_q8_0_ref's bits).
  __device__ static void store(uint8_t *head, const float *values, int head_dim) {
    const int lane = threadIdx.x % LLM_CUDA_WARP, warps = blockDim.x / LLM_CUDA_WARP;
    for (int b = threadIdx.x / LLM_CUDA_WARP; b < head_dim / 32; b += warps) {
      float d;
      const int q = quantize_lane_q8_0(values[b * 32 + lane], &d);
      uint8_t *block = head + b * kQ8BlockBytes;
      block[2 + lane] = (uint8_t)(int8_t)q;
      if (lane == 0) *reinterpret_cast<uint16_t *>(block) = __half_as_ushort(__float2half_rn(d));
    }
  }
};

// Runs f<Type>() for the pool's type (cuda_kv_supported has checked it).
template <typename F> cudaError_t with_kv_type(int type, F &&f) {
  switch (type) {
  case LLM_KV_F32: return f(std::integral_constant<int, LLM_KV_F32>());
  case LLM_KV_F16: return f(std::integral_constant<int, LLM_KV_F16>());
  case LLM_KV_Q8_0: return f(std::integral_constant<int, LLM_KV_Q8_0>());
  default: return cudaErrorInvalidValue;
  }
}
