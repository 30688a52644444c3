// The weight formats on the device, one section per format of native/engine (tensor.h, quant_*.c): the bytes are
// the file's own blocks, uploaded unchanged; block sizes and field offsets come from blocks.h's structs. Each format gives
//   value(row, i)           element i of a row as f32, exactly as the engine's dequantizer computes it;
//   Unit / load / dot       the matrix-vector step of one lane: `load` decodes kUnitValues consecutive weights of
//                           a row (unit u covers values [u * kUnitValues, (u + 1) * kUnitValues)), `dot` multiplies
//                           them with the same values of one activation row in the format's Activation layout.
// Quantized weights meet quantized activations as on the CPU (q8_0 for q8_0/q4_0, q8_K for q4_K/q6_K), so the
// inner products are the same integers (dp4a) and only the order of the float sums differs.
// The quantized formats also give `unpack_*`: a block (or part of one) as signed int8 values in order, read with
// plain loads from wherever it was staged, for the tensor-core products of matmul_mma.cu.
#pragma once

#include <cstddef>
#include <type_traits>

#include "common.cuh"

extern "C" {
#include "blocks.h"
#include "tensor.h"
}

// Values [4i, 4i + 4) of a 16-byte run starting at a 2-byte aligned address, as 4 ints.
__device__ __forceinline__ void load16_align2(const uint8_t *p, int (&v)[4]) {
  const uint16_t *h = reinterpret_cast<const uint16_t *>(p);
#pragma unroll
  for (int i = 0; i < 4; i++) v[i] = (int)((uint32_t)__ldg(h + 2 * i) | (uint32_t)__ldg(h + 2 * i + 1) << 16);
}

__device__ __forceinline__ void load16_align16(const void *p, int (&v)[4]) {
  const int4 q = __ldg(reinterpret_cast<const int4 *>(p));
  v[0] = q.x;
  v[1] = q.y;
  v[2] = q.z;
  v[3] = q.w;
}

// The same from memory of any kind (a block staged in shared memory), with plain loads.
__device__ __forceinline__ void read16_align2(const uint8_t *p, int (&v)[4]) {
  const uint16_t *h = reinterpret_cast<const uint16_t *>(p);
#pragma unroll
  for (int i = 0; i < 4; i++) v[i] = (int)((uint32_t)h[2 * i] | (uint32_t)h[2 * i + 1] << 16);
}

// ---- f32, f16, bf16: VEC values per unit (16-byte loads when VEC * element size is 16, else element loads) ----

template <typename Elem> __device__ __forceinline__ float elem_to_float(const Elem *p, int64_t i);
template <> __device__ __forceinline__ float elem_to_float<float>(const float *p, int64_t i) { return __ldg(p + i); }
template <> __device__ __forceinline__ float elem_to_float<__half>(const __half *p, int64_t i) {
  return __half2float(__ldg(p + i));
}
template <> __device__ __forceinline__ float elem_to_float<__nv_bfloat16>(const __nv_bfloat16 *p, int64_t i) {
  return bf16_bits_to_float(__ldg(reinterpret_cast<const uint16_t *>(p) + i));
}

template <typename Elem, int VEC> struct FloatFormat {
  static constexpr int kUnitValues = VEC;
  using Activation = float;
  struct Unit {
    float v[VEC];
  };

  static __device__ float value(const uint8_t *row, int64_t i) { return elem_to_float(reinterpret_cast<const Elem *>(row), i); }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    Unit w;
    if constexpr (VEC * sizeof(Elem) == 16) {
      int q[4];
      load16_align16(row + u * 16, q);
#pragma unroll
      for (int i = 0; i < 4; i++) {
        if constexpr (sizeof(Elem) == 4) {
          w.v[i] = __int_as_float(q[i]);
        } else if constexpr (std::is_same<Elem, __half>::value) {
          const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&q[i]));
          w.v[2 * i] = f.x;
          w.v[2 * i + 1] = f.y;
        } else {
          w.v[2 * i] = __uint_as_float((uint32_t)q[i] << 16);
          w.v[2 * i + 1] = __uint_as_float((uint32_t)q[i] & 0xffff0000u);
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < VEC; i++) w.v[i] = value(row, u * VEC + i);
    }
    return w;
  }

  static __device__ float dot(const Unit &w, const float *x, int64_t u) {
    float sum = 0.0f;
    if constexpr (VEC % 4 == 0) {
#pragma unroll
      for (int i = 0; i < VEC / 4; i++) {
        const float4 xv = __ldg(reinterpret_cast<const float4 *>(x + u * VEC) + i);
        sum = fmaf(w.v[4 * i], xv.x, sum);
        sum = fmaf(w.v[4 * i + 1], xv.y, sum);
        sum = fmaf(w.v[4 * i + 2], xv.z, sum);
        sum = fmaf(w.v[4 * i + 3], xv.w, sum);
      }
    } else {
#pragma unroll
      for (int i = 0; i < VEC; i++) sum = fmaf(w.v[i], __ldg(x + u * VEC + i), sum);
    }
    return sum;
  }
};

// ---- q8_0 (quant_q8_0.c): blocks of 34 bytes, value i = d * qs[i] ----

struct FormatQ8_0 {
  static constexpr int kUnitValues = 32;
  static constexpr int kBlockBytes = sizeof(llm_block_q8_0);
  static constexpr int kQs = offsetof(llm_block_q8_0, qs);
  using Activation = act_q8_0;
  struct Unit {
    int q[8];
    float d;
  };

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 32) * kBlockBytes;
    const float d = half_bits_to_float(__ldg(reinterpret_cast<const uint16_t *>(block)));
    return d * (float)(int8_t)__ldg(block + kQs + i % 32);
  }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    const uint8_t *block = row + u * kBlockBytes;
    Unit w;
    w.d = half_bits_to_float(__ldg(reinterpret_cast<const uint16_t *>(block)));
    int lo[4], hi[4];
    load16_align2(block + kQs, lo);
    load16_align2(block + kQs + 16, hi);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      w.q[i] = lo[i];
      w.q[4 + i] = hi[i];
    }
    return w;
  }

  static __device__ float dot(const Unit &w, const act_q8_0 *x, int64_t u) {
    int a[4], b[4];
    load16_align16(x[u].qs, a);
    load16_align16(x[u].qs + 16, b);
    int sumi = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) sumi = __dp4a(w.q[4 + i], b[i], __dp4a(w.q[i], a[i], sumi));
    return (float)sumi * (w.d * __ldg(&x[u].d));
  }

  // The block's 32 values (already signed bytes) and its scale.
  static __device__ void unpack_signed(const uint8_t *block, int (&q)[8], float &d) {
    d = half_bits_to_float(*reinterpret_cast<const uint16_t *>(block));
    int lo[4], hi[4];
    read16_align2(block + kQs, lo);
    read16_align2(block + kQs + 16, hi);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      q[i] = lo[i];
      q[4 + i] = hi[i];
    }
  }
};

// ---- q4_0 (quant_q4_0.c): blocks of 18 bytes, byte j holds q_j (low nibble) and q_(j+16); value = d * (q - 8) ----

struct FormatQ4_0 {
  static constexpr int kUnitValues = 32;
  static constexpr int kBlockBytes = sizeof(llm_block_q4_0);
  static constexpr int kQs = offsetof(llm_block_q4_0, qs);
  using Activation = act_q8_0;
  struct Unit {
    int q[4];
    float d;
  };

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 32) * kBlockBytes;
    const float d = half_bits_to_float(__ldg(reinterpret_cast<const uint16_t *>(block)));
    const int j = (int)(i % 32);
    const uint8_t byte = __ldg(block + kQs + j % 16);
    return d * (float)((j < 16 ? byte & 0x0f : byte >> 4) - 8);
  }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    const uint8_t *block = row + u * kBlockBytes;
    Unit w;
    w.d = half_bits_to_float(__ldg(reinterpret_cast<const uint16_t *>(block)));
    load16_align2(block + kQs, w.q);
    return w;
  }

  // sum (q - 8) x = sum q x - 8 sum x: the same integer the CPU forms value by value.
  static __device__ float dot(const Unit &w, const act_q8_0 *x, int64_t u) {
    int a[4], b[4];
    load16_align16(x[u].qs, a);
    load16_align16(x[u].qs + 16, b);
    int sumi = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      sumi = __dp4a(w.q[i] & 0x0f0f0f0f, a[i], sumi);
      sumi = __dp4a((w.q[i] >> 4) & 0x0f0f0f0f, b[i], sumi);
    }
    sumi -= 8 * __ldg(&x[u].sum);
    return (float)sumi * (w.d * __ldg(&x[u].d));
  }

  // The block's 32 values q - 8 as signed bytes (the offset applied per byte, so products need no sum term).
  static __device__ void unpack_signed(const uint8_t *block, int (&q)[8], float &d) {
    d = half_bits_to_float(*reinterpret_cast<const uint16_t *>(block));
    int packed[4];
    read16_align2(block + kQs, packed);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      q[i] = (int)__vsub4((uint32_t)packed[i] & 0x0f0f0f0fu, 0x08080808u);
      q[4 + i] = (int)__vsub4(((uint32_t)packed[i] >> 4) & 0x0f0f0f0fu, 0x08080808u);
    }
  }
};

// ---- q4_K (quant_q4_K.c): 144-byte super-blocks of 256 values, 8 sub-blocks of 32 with 6-bit scale and min ----
// A unit is a quarter k of a block: qs bytes 32k..32k+31, whose low nibbles are sub-block 2k and high nibbles
// sub-block 2k+1. Rows are whole blocks, so every block is 16-byte aligned in a 16-byte aligned tensor.

struct FormatQ4_K {
  static constexpr int kUnitValues = 64;
  static constexpr int kBlockBytes = sizeof(llm_block_q4_K);
  static constexpr int kQs = offsetof(llm_block_q4_K, qs);  // after d, dmin and the 12 scale bytes: a 16-byte header
  using Activation = act_q8_K;
  struct Unit {
    int q[8];
    float d, dmin;
    int scale[2], min[2];
  };

  // Scale (s < 8) or min (8 + s) of sub-block s: unpack_scales_mins of quant_q4_K.c, one byte of its four words.
  static __device__ int scale_or_min(uint32_t in0, uint32_t in1, uint32_t in2, int which) {
    const int s = which & 7;
    const bool is_min = which >= 8;
    uint32_t word;
    if (s < 4) word = (is_min ? in1 : in0) & 0x3f3f3f3fu;
    else if (!is_min) word = (in2 & 0x0f0f0f0fu) | ((in0 >> 6) & 0x03030303u) << 4;
    else word = ((in2 >> 4) & 0x0f0f0f0fu) | ((in1 >> 6) & 0x03030303u) << 4;
    return (int)((word >> (8 * (s & 3))) & 0xff);
  }

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 256) * kBlockBytes;
    int header[4];
    load16_align16(block, header);
    const int j = (int)(i % 256), s = j / 32;
    const float d = half_bits_to_float((uint16_t)header[0]), dmin = half_bits_to_float((uint16_t)(header[0] >> 16));
    const uint8_t byte = __ldg(block + kQs + 32 * (j / 64) + j % 32);
    const int q = (j % 64) < 32 ? byte & 0x0f : byte >> 4;
    const float sc = (float)scale_or_min(header[1], header[2], header[3], s);
    const float m = (float)scale_or_min(header[1], header[2], header[3], 8 + s);
    // d * sc * q - dmin * m, rounded step by step as the CPU (compiled without contraction) does.
    return __fsub_rn(__fmul_rn(__fmul_rn(d, sc), (float)q), __fmul_rn(dmin, m));
  }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    const uint8_t *block = row + (u / 4) * kBlockBytes;
    const int k = (int)(u % 4);
    int header[4], lo[4], hi[4];
    load16_align16(block, header);
    load16_align16(block + kQs + 32 * k, lo);
    load16_align16(block + kQs + 16 + 32 * k, hi);
    Unit w;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      w.q[i] = lo[i];
      w.q[4 + i] = hi[i];
    }
    w.d = half_bits_to_float((uint16_t)header[0]);
    w.dmin = half_bits_to_float((uint16_t)((uint32_t)header[0] >> 16));
#pragma unroll
    for (int h = 0; h < 2; h++) {
      w.scale[h] = scale_or_min(header[1], header[2], header[3], 2 * k + h);
      w.min[h] = scale_or_min(header[1], header[2], header[3], 8 + 2 * k + h);
    }
    return w;
  }

  static __device__ float dot(const Unit &w, const act_q8_K *x, int64_t u) {
    const act_q8_K &a = x[u / 4];
    const int k = (int)(u % 4);
    int sub[2] = { 0, 0 };
#pragma unroll
    for (int c = 0; c < 2; c++) {  // 16-byte chunks of each sub-block's 32 activations
      int lo_x[4], hi_x[4];
      load16_align16(a.qs + 64 * k + 16 * c, lo_x);
      load16_align16(a.qs + 64 * k + 32 + 16 * c, hi_x);
#pragma unroll
      for (int i = 0; i < 4; i++) {
        sub[0] = __dp4a(w.q[4 * c + i] & 0x0f0f0f0f, lo_x[i], sub[0]);
        sub[1] = __dp4a((w.q[4 * c + i] >> 4) & 0x0f0f0f0f, hi_x[i], sub[1]);
      }
    }
    const int16_t *bsums = a.bsums + 4 * k;
    const int sumi = w.scale[0] * sub[0] + w.scale[1] * sub[1];
    const int sum_mins = w.min[0] * (__ldg(bsums) + __ldg(bsums + 1)) + w.min[1] * (__ldg(bsums + 2) + __ldg(bsums + 3));
    return __ldg(&a.d) * (w.d * (float)sumi - w.dmin * (float)sum_mins);
  }

  // Quarter k of a 16-byte aligned block: sub-blocks 2k and 2k + 1 as 64 bytes 0..15 (the 4-bit q, unsigned;
  // the scales and mins apply per sub-block outside the integer products).
  static __device__ void unpack_quarter(const uint8_t *block, int k, int (&q)[16]) {
    const int4 *qs = reinterpret_cast<const int4 *>(block + kQs + 32 * k);
#pragma unroll
    for (int c = 0; c < 2; c++) {
      const int4 v = qs[c];
      const int words[4] = { v.x, v.y, v.z, v.w };
#pragma unroll
      for (int i = 0; i < 4; i++) {
        q[4 * c + i] = words[i] & 0x0f0f0f0f;
        q[8 + 4 * c + i] = (words[i] >> 4) & 0x0f0f0f0f;
      }
    }
  }
};

// ---- q6_K (quant_q6_K.c): 210-byte super-blocks, 16 groups of 16 values, value = d * scale_g * (q - 32) ----
// A unit is a quarter k of a block: half h = k / 2 and the 16 positions l0 = 16 (k % 2) .. l0 + 15 of that half,
// which hold one 16-value group at each of l, l + 32, l + 64, l + 96 (groups 8h + k%2 + {0, 2, 4, 6}).

struct FormatQ6_K {
  static constexpr int kUnitValues = 64;
  static constexpr int kBlockBytes = sizeof(llm_block_q6_K);
  static constexpr int kQl = offsetof(llm_block_q6_K, ql), kQh = offsetof(llm_block_q6_K, qh);
  static constexpr int kScales = offsetof(llm_block_q6_K, scales), kD = offsetof(llm_block_q6_K, d);
  using Activation = act_q8_K;
  struct Unit {
    int v[4][4];  // [group of the four][4 bytes]: 6-bit values 0..63
    int scale[4];
    float d;
  };

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 256) * kBlockBytes;
    const int j = (int)(i % 256), half = j / 128, l = j % 32, quarter = (j % 128) / 32;
    const uint8_t low = __ldg(block + kQl + 64 * half + l + 32 * (quarter & 1));
    const int low4 = quarter < 2 ? low & 0x0f : low >> 4;
    const int q = low4 | ((__ldg(block + kQh + 32 * half + l) >> (2 * quarter)) & 3) << 4;
    const float d = half_bits_to_float(__ldg(reinterpret_cast<const uint16_t *>(block + kD)));
    return d * (float)(int8_t)__ldg(block + kScales + j / 16) * (float)(q - 32);
  }

  // The 6-bit values of quarter k's four groups (v[g][4 bytes], 0..63) from its low-bit bytes a (ql[64 half + l0
  // ..]) and b (ql[64 half + 32 + l0 ..]) and its high-bit bytes h (qh[32 half + l0 ..]).
  static __device__ void combine(const int (&a)[4], const int (&b)[4], const int (&h)[4], int (&v)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
      v[0][i] = (a[i] & 0x0f0f0f0f) | ((h[i] << 4) & 0x30303030);
      v[1][i] = (b[i] & 0x0f0f0f0f) | ((h[i] << 2) & 0x30303030);
      v[2][i] = ((a[i] >> 4) & 0x0f0f0f0f) | (h[i] & 0x30303030);
      v[3][i] = ((b[i] >> 4) & 0x0f0f0f0f) | ((h[i] >> 2) & 0x30303030);
    }
  }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    const uint8_t *block = row + (u / 4) * kBlockBytes;
    const int k = (int)(u % 4), half = k / 2, l0 = 16 * (k % 2);
    int a[4], b[4], h[4];
    load16_align2(block + kQl + 64 * half + l0, a);
    load16_align2(block + kQl + 64 * half + 32 + l0, b);
    load16_align2(block + kQh + 32 * half + l0, h);
    Unit w;
    combine(a, b, h, w.v);
#pragma unroll
    for (int g = 0; g < 4; g++) w.scale[g] = (int8_t)__ldg(block + kScales + 8 * half + k % 2 + 2 * g);
    w.d = half_bits_to_float(__ldg(reinterpret_cast<const uint16_t *>(block + kD)));
    return w;
  }

  // sum (q - 32) x over a group = sum q x - 32 * (the group's bsum).
  static __device__ float dot(const Unit &w, const act_q8_K *x, int64_t u) {
    const act_q8_K &a = x[u / 4];
    const int k = (int)(u % 4), half = k / 2, l0 = 16 * (k % 2);
    int sumi = 0;
#pragma unroll
    for (int g = 0; g < 4; g++) {
      int xs[4];
      load16_align16(a.qs + 128 * half + 32 * g + l0, xs);
      int group = 0;
#pragma unroll
      for (int i = 0; i < 4; i++) group = __dp4a(w.v[g][i], xs[i], group);
      group -= 32 * __ldg(a.bsums + 8 * half + k % 2 + 2 * g);
      sumi += w.scale[g] * group;
    }
    return w.d * __ldg(&a.d) * (float)sumi;
  }

  // Quarter k of a 2-byte aligned block as values q - 32 in signed bytes: v[g] holds positions l0..l0 + 15 of
  // group 8 half + k % 2 + 2g (values 128 half + 32 g + l0 ..), whose scale is applied outside the products.
  static __device__ void unpack_quarter(const uint8_t *block, int k, int (&v)[4][4]) {
    const int half = k / 2, l0 = 16 * (k % 2);
    int a[4], b[4], h[4];
    read16_align2(block + kQl + 64 * half + l0, a);
    read16_align2(block + kQl + 64 * half + 32 + l0, b);
    read16_align2(block + kQh + 32 * half + l0, h);
    combine(a, b, h, v);
#pragma unroll
    for (int g = 0; g < 4; g++)
#pragma unroll
      for (int i = 0; i < 4; i++) v[g][i] = (int)__vsub4((uint32_t)v[g][i], 0x20202020u);
  }
};

// Element i of a row of any weight type: the dequantizers of the engine, for embeddings and norm weights.
__device__ __forceinline__ float format_value(int type, const uint8_t *row, int64_t i) {
  switch (type) {
  case LLM_F32: return FloatFormat<float, 1>::value(row, i);
  case LLM_F16: return FloatFormat<__half, 1>::value(row, i);
  case LLM_BF16: return FloatFormat<__nv_bfloat16, 1>::value(row, i);
  case LLM_Q8_0: return FormatQ8_0::value(row, i);
  case LLM_Q4_0: return FormatQ4_0::value(row, i);
  case LLM_Q4_K: return FormatQ4_K::value(row, i);
  default: return FormatQ6_K::value(row, i);
  }
}
