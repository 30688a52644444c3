// The weight formats on the device, one section per format of native/engine (tensor.h, quant_*.c): the bytes are
// the file's own blocks, uploaded unchanged; block sizes and field offsets come from blocks.h's structs. Each format gives
//   value(row, i)           element i of a row as f32, exactly as the engine's dequantizer computes it;
//   Unit / load / dot       the matrix-vector step of one lane: `load` decodes kUnitValues consecutive weights of
//                           a row (unit u covers values [u * kUnitValues, (u + 1) * kUnitValues)), `dot` multiplies
//                           them with the same values of one activation row in the format's Activation layout.
// Quantized weights meet quantized activations as on the CPU (q8_0 for the formats of 32-value blocks, q8_K for
// those of 256-value super-blocks), so the inner products are the same integers (dp4a) and only the order of the
// float sums differs.
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

__device__ __forceinline__ void load16_align4(const uint8_t *p, int (&v)[4]) {
  const int *w = reinterpret_cast<const int *>(p);
#pragma unroll
  for (int i = 0; i < 4; i++) v[i] = __ldg(w + i);
}

__device__ __forceinline__ void load16_align8(const uint8_t *p, int (&v)[4]) {
  const int2 lo = __ldg(reinterpret_cast<const int2 *>(p)), hi = __ldg(reinterpret_cast<const int2 *>(p) + 1);
  v[0] = lo.x;
  v[1] = lo.y;
  v[2] = hi.x;
  v[3] = hi.y;
}

__device__ __forceinline__ uint16_t ldg_u16(const uint8_t *p) { return __ldg(reinterpret_cast<const uint16_t *>(p)); }
__device__ __forceinline__ uint16_t read_u16(const uint8_t *p) { return *reinterpret_cast<const uint16_t *>(p); }

// Bits 0..3 of n as 16 or 0 in bytes 0..3: the fifth bits of four 5-bit values, or'ed onto their low nibbles.
__device__ __forceinline__ int fifth_bits4(uint32_t n) { return (int)(((n & 0xfu) * 0x00204081u & 0x01010101u) << 4); }

// The iq4_nl levels (blocks.h) as four words of four signed bytes: levels 4w .. 4w + 3 in word w.
constexpr int8_t kIq4Levels[16] = LLM_IQ4NL_VALUES;
constexpr uint32_t iq4_level_word(int w) {
  return (uint32_t)(uint8_t)kIq4Levels[4 * w] | (uint32_t)(uint8_t)kIq4Levels[4 * w + 1] << 8 |
         (uint32_t)(uint8_t)kIq4Levels[4 * w + 2] << 16 | (uint32_t)(uint8_t)kIq4Levels[4 * w + 3] << 24;
}
constexpr uint32_t kIq4Word0 = iq4_level_word(0), kIq4Word1 = iq4_level_word(1), kIq4Word2 = iq4_level_word(2),
                   kIq4Word3 = iq4_level_word(3);

// Four iq4 indices (0..15, one per byte) to their levels as signed bytes: byte permutes pick each index's level
// among levels 0..7 and among 8..15 (the index's low 3 bits), then between the two by its bit 3.
__device__ __forceinline__ int iq4_levels4(uint32_t indices) {
  const uint32_t spread = indices | indices >> 4; // index n's nibble at bits 4n (n < 2) and 4n + 8 (n >= 2)
  const uint32_t nibbles = (spread & 0xffu) | (spread >> 8 & 0xff00u); // index n at bits 4n
  const uint32_t low = __byte_perm(kIq4Word0, kIq4Word1, nibbles & 0x7777u);
  const uint32_t high = __byte_perm(kIq4Word2, kIq4Word3, nibbles & 0x7777u);
  return (int)__byte_perm(low, high, 0x3210u | (nibbles >> 1 & 0x4444u));
}
__device__ __forceinline__ int iq4_level(int index) { return (int)(int8_t)iq4_levels4((uint32_t)index); }

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
  static constexpr bool kHasMin = false;
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

// ---- iq4_nl (quant_iq4_nl.c): q8_0's products on levels looked up from 4-bit indices packed as q4_0's ----

struct FormatIQ4_NL : FormatQ8_0 {
  static constexpr int kBlockBytes = sizeof(llm_block_iq4_nl);
  static constexpr int kQs = offsetof(llm_block_iq4_nl, qs);

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 32) * kBlockBytes;
    const int j = (int)(i % 32);
    const uint8_t byte = __ldg(block + kQs + j % 16);
    return half_bits_to_float(ldg_u16(block)) * (float)iq4_level(j < 16 ? byte & 0x0f : byte >> 4);
  }

  // The 32 levels of a block from its 16 index bytes: low nibbles are values 0..15, high nibbles 16..31.
  static __device__ void levels(const int (&packed)[4], int (&q)[8]) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
      q[i] = iq4_levels4((uint32_t)packed[i] & 0x0f0f0f0fu);
      q[4 + i] = iq4_levels4((uint32_t)packed[i] >> 4 & 0x0f0f0f0fu);
    }
  }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    const uint8_t *block = row + u * kBlockBytes;
    Unit w;
    w.d = half_bits_to_float(ldg_u16(block));
    int packed[4];
    load16_align2(block + kQs, packed);
    levels(packed, w.q);
    return w;
  }

  static __device__ void unpack_signed(const uint8_t *block, int (&q)[8], float &d) {
    d = half_bits_to_float(read_u16(block));
    int packed[4];
    read16_align2(block + kQs, packed);
    levels(packed, q);
  }
};

// ---- q4_0, q4_1, q5_0, q5_1 (quant_b32.h): blocks of 32 values, byte j of qs holding q_j's low 4 bits (low
// nibble) and q_(j+16)'s (high nibble), the 5-bit formats' fifth bits at bit j of qh; value = d * (q - kOffset)
// (q4_0: 8, q5_0: 16) or d * q + m (q4_1, q5_1) ----

template <typename Block, bool kFive, bool kMin> struct FormatB32 {
  static constexpr int kUnitValues = 32;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kQs = offsetof(Block, qs);
  static constexpr int kOffset = kMin ? 0 : kFive ? 16 : 8;
  static constexpr bool kHasMin = kMin;
  using Activation = act_q8_0;
  struct Unit {
    int q[4];
    uint32_t qh;
    float d, m;
  };

  // qh as one word (2-byte aligned in the 5-bit blocks), by __ldg or (staged blocks) plain loads.
  template <bool kGlobal> static __device__ uint32_t high_bits(const uint8_t *block) {
    if constexpr (!kFive) {
      return 0;
    } else {
      const uint8_t *qh = block + offsetof(Block, qh);
      return kGlobal ? (uint32_t)ldg_u16(qh) | (uint32_t)ldg_u16(qh + 2) << 16 : (uint32_t)read_u16(qh) | (uint32_t)read_u16(qh + 2) << 16;
    }
  }
  template <bool kGlobal> static __device__ float min_of(const uint8_t *block) {
    if constexpr (!kMin) return 0.0f;
    else return half_bits_to_float(kGlobal ? ldg_u16(block + offsetof(Block, m)) : read_u16(block + offsetof(Block, m)));
  }

  // Values 4i .. 4i + 3 (low) and 16 + 4i .. (high) of a block as unsigned bytes, from word i of qs.
  static __device__ void values4(int packed, uint32_t qh, int i, int &low, int &high) {
    low = packed & 0x0f0f0f0f;
    high = (packed >> 4) & 0x0f0f0f0f;
    if constexpr (kFive) {
      low |= fifth_bits4(qh >> (4 * i));
      high |= fifth_bits4(qh >> (16 + 4 * i));
    }
  }

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 32) * kBlockBytes;
    const float d = half_bits_to_float(ldg_u16(block));
    const int j = (int)(i % 32);
    const uint8_t byte = __ldg(block + kQs + j % 16);
    int q = j < 16 ? byte & 0x0f : byte >> 4;
    if constexpr (kFive) q |= (int)((high_bits<true>(block) >> j) & 1) << 4;
    // q * d + m rounded step by step, as the CPU (compiled without contraction) does.
    if constexpr (kMin) return __fadd_rn(__fmul_rn((float)q, d), min_of<true>(block));
    else return d * (float)(q - kOffset);
  }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    const uint8_t *block = row + u * kBlockBytes;
    Unit w;
    w.d = half_bits_to_float(ldg_u16(block));
    w.m = min_of<true>(block);
    w.qh = high_bits<true>(block);
    load16_align2(block + kQs, w.q);
    return w;
  }

  // Offsets: sum (q - kOffset) x = sum q x - kOffset sum x, the integer the CPU forms value by value. Mins: d x_d
  // sum q x + m x_d sum x, quant_b32.h's two terms.
  static __device__ float dot(const Unit &w, const act_q8_0 *x, int64_t u) {
    int a[4], b[4];
    load16_align16(x[u].qs, a);
    load16_align16(x[u].qs + 16, b);
    int sumi = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      int low, high;
      values4(w.q[i], w.qh, i, low, high);
      sumi = __dp4a(high, b[i], __dp4a(low, a[i], sumi));
    }
    const float xd = __ldg(&x[u].d);
    if constexpr (kMin) return (float)sumi * (w.d * xd) + (float)__ldg(&x[u].sum) * (w.m * xd);
    sumi -= kOffset * __ldg(&x[u].sum);
    return (float)sumi * (w.d * xd);
  }

  // The block's 32 values as signed bytes: q - kOffset (the offset applied per byte, so products need no sum
  // term), or the unsigned q of the min formats (0..31, whose m then meets the activations' sums).
  static __device__ void unpack_signed(const uint8_t *block, int (&q)[8], float &d) {
    d = half_bits_to_float(read_u16(block));
    const uint32_t qh = high_bits<false>(block);
    int packed[4];
    read16_align2(block + kQs, packed);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      values4(packed[i], qh, i, q[i], q[4 + i]);
      if constexpr (kOffset != 0) {
        q[i] = (int)__vsub4((uint32_t)q[i], 0x01010101u * kOffset);
        q[4 + i] = (int)__vsub4((uint32_t)q[4 + i], 0x01010101u * kOffset);
      }
    }
  }
};

using FormatQ4_0 = FormatB32<llm_block_q4_0, false, false>;
using FormatQ4_1 = FormatB32<llm_block_q4_1, false, true>;
using FormatQ5_0 = FormatB32<llm_block_q5_0, true, false>;
using FormatQ5_1 = FormatB32<llm_block_q5_1, true, true>;

// ---- q4_K, q5_K (quant_k4.h): super-blocks of 256 values, 8 sub-blocks of 32 with 6-bit scale and min ----
// A unit is a quarter k of a block: qs bytes 32k..32k+31, whose low nibbles are sub-block 2k and high nibbles
// sub-block 2k+1; q5_K adds bit 2k (2k + 1) of qh[l] as the fifth bit of value l of sub-block 2k (2k + 1). Rows
// are whole blocks of 16-byte multiples, so every block is 16-byte aligned in a 16-byte aligned tensor.

template <bool kFive> struct FormatK4 {
  using Block = typename std::conditional<kFive, llm_block_q5_K, llm_block_q4_K>::type;
  static constexpr int kUnitValues = 64;
  static constexpr int kBlockBytes = sizeof(Block);
  static constexpr int kQs = offsetof(Block, qs);  // after d, dmin and the 12 scale bytes (a 16-byte header), and qh
  static constexpr int kQh = offsetof(llm_block_q5_K, qh);
  static constexpr bool kMins = true;
  static_assert(kBlockBytes % 16 == 0 && offsetof(Block, scales) == 4 && kQh == 16, "16-byte header, blocks of 16-byte multiples");
  using Activation = act_q8_K;
  struct Unit {
    int q[8];
    int h[kFive ? 8 : 1]; // qh words shifted right by 2k: bit 0 (1) of each byte is the fifth bit of sub-block 2k (2k + 1)
    float d, dmin;
    int scale[2], min[2];
  };

  // Scale (s < 8) or min (8 + s) of sub-block s: unpack_scales_mins of quant_k4.h, one byte of its four words.
  static __device__ int scale_or_min(uint32_t in0, uint32_t in1, uint32_t in2, int which) {
    const int s = which & 7;
    const bool is_min = which >= 8;
    uint32_t word;
    if (s < 4) word = (is_min ? in1 : in0) & 0x3f3f3f3fu;
    else if (!is_min) word = (in2 & 0x0f0f0f0fu) | ((in0 >> 6) & 0x03030303u) << 4;
    else word = ((in2 >> 4) & 0x0f0f0f0fu) | ((in1 >> 6) & 0x03030303u) << 4;
    return (int)((word >> (8 * (s & 3))) & 0xff);
  }

  // Sub-blocks 2k (low) and 2k + 1 (high) of 4 bytes of qs as unsigned bytes, h their qh word shifted by 2k.
  static __device__ void values4(int packed, int h, int &low, int &high) {
    low = packed & 0x0f0f0f0f;
    high = (packed >> 4) & 0x0f0f0f0f;
    if constexpr (kFive) {
      low |= (h << 4) & 0x10101010;
      high |= (h << 3) & 0x10101010;
    }
  }

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 256) * kBlockBytes;
    int header[4];
    load16_align16(block, header);
    const int j = (int)(i % 256), s = j / 32;
    const float d = half_bits_to_float((uint16_t)header[0]), dmin = half_bits_to_float((uint16_t)(header[0] >> 16));
    const uint8_t byte = __ldg(block + kQs + 32 * (j / 64) + j % 32);
    int q = (j % 64) < 32 ? byte & 0x0f : byte >> 4;
    if constexpr (kFive) q |= ((__ldg(block + kQh + j % 32) >> s) & 1) << 4;
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
    if constexpr (kFive) {
      int h_lo[4], h_hi[4];
      load16_align16(block + kQh, h_lo);
      load16_align16(block + kQh + 16, h_hi);
#pragma unroll
      for (int i = 0; i < 4; i++) {
        w.h[i] = (int)((uint32_t)h_lo[i] >> (2 * k));
        w.h[4 + i] = (int)((uint32_t)h_hi[i] >> (2 * k));
      }
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
        int low, high;
        values4(w.q[4 * c + i], kFive ? w.h[4 * c + i] : 0, low, high);
        sub[0] = __dp4a(low, lo_x[i], sub[0]);
        sub[1] = __dp4a(high, hi_x[i], sub[1]);
      }
    }
    const int16_t *bsums = a.bsums + 4 * k;
    const int sumi = w.scale[0] * sub[0] + w.scale[1] * sub[1];
    const int sum_mins = w.min[0] * (__ldg(bsums) + __ldg(bsums + 1)) + w.min[1] * (__ldg(bsums + 2) + __ldg(bsums + 3));
    return __ldg(&a.d) * (w.d * (float)sumi - w.dmin * (float)sum_mins);
  }

  // Quarter k of a 16-byte aligned staged block: sub-blocks 2k and 2k + 1 as 64 bytes of the unsigned q (the
  // scales and mins apply per sub-block outside the integer products).
  static __device__ void unpack_quarter(const uint8_t *block, int k, int (&q)[16]) {
    const int4 *qs = reinterpret_cast<const int4 *>(block + kQs + 32 * k);
#pragma unroll
    for (int c = 0; c < 2; c++) {
      const int4 v = qs[c];
      int4 h = make_int4(0, 0, 0, 0);
      if constexpr (kFive) h = reinterpret_cast<const int4 *>(block + kQh)[c];
      const int words[4] = { v.x, v.y, v.z, v.w }, high_bits[4] = { h.x, h.y, h.z, h.w };
#pragma unroll
      for (int i = 0; i < 4; i++)
        values4(words[i], (int)((uint32_t)high_bits[i] >> (2 * k)), q[4 * c + i], q[8 + 4 * c + i]);
    }
  }

  // The staged block's d and dmin, and sub-blocks 2k and 2k + 1's scales and mins.
  static __device__ void quarter_scales(const uint8_t *block, int k, float &d, float &dmin, int (&scale)[2], int (&min)[2]) {
    const int4 header = *reinterpret_cast<const int4 *>(block);
    d = half_bits_to_float((uint16_t)header.x);
    dmin = half_bits_to_float((uint16_t)((uint32_t)header.x >> 16));
#pragma unroll
    for (int h = 0; h < 2; h++) {
      scale[h] = scale_or_min(header.y, header.z, header.w, 2 * k + h);
      min[h] = scale_or_min(header.y, header.z, header.w, 8 + 2 * k + h);
    }
  }
};

using FormatQ4_K = FormatK4<false>;
using FormatQ5_K = FormatK4<true>;

// ---- iq4_xs (quant_iq4_xs.c): 136-byte super-blocks of 256 values, 8 sub-blocks of 32, value = d * (scale_s -
// 32) * level(q) with iq4_nl's indices (16 bytes per sub-block, packed as iq4_nl's) ----
// A unit is a quarter k of a block: sub-blocks 2k and 2k + 1 (qs bytes 32k..32k+31). Blocks are 8-byte aligned.

struct FormatIQ4_XS {
  static constexpr int kUnitValues = 64;
  static constexpr int kBlockBytes = sizeof(llm_block_iq4_xs);
  static constexpr int kQs = offsetof(llm_block_iq4_xs, qs);
  static constexpr int kScalesH = offsetof(llm_block_iq4_xs, scales_h), kScalesL = offsetof(llm_block_iq4_xs, scales_l);
  static constexpr bool kMins = false;
  static_assert(kBlockBytes % 8 == 0 && kQs % 8 == 0, "8-byte aligned index bytes");
  using Activation = act_q8_K;
  struct Unit {
    int v[16]; // levels of sub-block 2k (words 0..7) and 2k + 1 (8..15), in value order
    int scale[2];
    float d;
  };

  // scale_s - 32 of sub-block s from scales_h and the byte of scales_l holding its low 4 bits.
  static __device__ int scale_of(uint32_t scales_h, uint32_t scales_l_byte, int s) {
    return (int)(((scales_l_byte >> (4 * (s % 2))) & 0x0f) | ((scales_h >> (2 * s)) & 3) << 4) - 32;
  }

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 256) * kBlockBytes;
    const int j = (int)(i % 256), s = j / 32, l = j % 32;
    const uint8_t byte = __ldg(block + kQs + 16 * s + l % 16);
    const int sc = scale_of(ldg_u16(block + kScalesH), __ldg(block + kScalesL + s / 2), s);
    // (d * sc) * level, as the CPU rounds it.
    return __fmul_rn(__fmul_rn(half_bits_to_float(ldg_u16(block)), (float)sc), (float)iq4_level(l < 16 ? byte & 0x0f : byte >> 4));
  }

  // The levels of two sub-blocks from their 32 index bytes (words 0..3: sub-block 2k, 4..7: 2k + 1).
  static __device__ void levels(const int (&packed)[8], int (&v)[16]) {
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
      for (int i = 0; i < 4; i++) {
        v[8 * h + i] = iq4_levels4((uint32_t)packed[4 * h + i] & 0x0f0f0f0fu);
        v[8 * h + 4 + i] = iq4_levels4((uint32_t)packed[4 * h + i] >> 4 & 0x0f0f0f0fu);
      }
  }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    const uint8_t *block = row + (u / 4) * kBlockBytes;
    const int k = (int)(u % 4);
    int packed[8], lo[4], hi[4];
    load16_align8(block + kQs + 32 * k, lo);
    load16_align8(block + kQs + 32 * k + 16, hi);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      packed[i] = lo[i];
      packed[4 + i] = hi[i];
    }
    Unit w;
    levels(packed, w.v);
    const uint32_t scales_h = ldg_u16(block + kScalesH), scales_l = __ldg(block + kScalesL + k);
    w.scale[0] = scale_of(scales_h, scales_l, 2 * k);
    w.scale[1] = scale_of(scales_h, scales_l, 2 * k + 1);
    w.d = half_bits_to_float(ldg_u16(block));
    return w;
  }

  static __device__ float dot(const Unit &w, const act_q8_K *x, int64_t u) {
    const act_q8_K &a = x[u / 4];
    const int k = (int)(u % 4);
    int sumi = 0;
#pragma unroll
    for (int h = 0; h < 2; h++) {
      int lo_x[4], hi_x[4];
      load16_align16(a.qs + 64 * k + 32 * h, lo_x);
      load16_align16(a.qs + 64 * k + 32 * h + 16, hi_x);
      int sub = 0;
#pragma unroll
      for (int i = 0; i < 4; i++) sub = __dp4a(w.v[8 * h + 4 + i], hi_x[i], __dp4a(w.v[8 * h + i], lo_x[i], sub));
      sumi += w.scale[h] * sub;
    }
    return w.d * __ldg(&a.d) * (float)sumi;
  }

  // Quarter k of an 8-byte aligned staged block as 64 signed bytes (the levels; scales apply outside).
  static __device__ void unpack_quarter(const uint8_t *block, int k, int (&q)[16]) {
    const int2 *qs = reinterpret_cast<const int2 *>(block + kQs + 32 * k);
    int packed[8];
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int2 pair = qs[i];
      packed[2 * i] = pair.x;
      packed[2 * i + 1] = pair.y;
    }
    levels(packed, q);
  }

  static __device__ void quarter_scales(const uint8_t *block, int k, float &d, float &dmin, int (&scale)[2], int (&min)[2]) {
    d = half_bits_to_float(read_u16(block));
    dmin = 0.0f;
    const uint32_t scales_h = read_u16(block + kScalesH), scales_l = block[kScalesL + k];
#pragma unroll
    for (int h = 0; h < 2; h++) {
      scale[h] = scale_of(scales_h, scales_l, 2 * k + h);
      min[h] = 0;
    }
  }
};

// ---- q6_K, q3_K, q2_K (quant_k16.h): super-blocks of 256 values in 16 groups of 16 with an integer scale each ----
// A unit is a quarter k of a block: half h = k / 2 and the 16 positions l0 = 16 (k % 2) .. l0 + 15 of that half,
// which hold one 16-value group at each of l, l + 32, l + 64, l + 96 (groups 8h + k%2 + {0, 2, 4, 6}). K16Units
// is their shared unit and product: v[g] the values of group 8h + k%2 + 2g at those positions as bytes (q - kOffset
// for q6_K and q3_K, whose values are d * scale * (q - kOffset); q2_K's unsigned q, whose values are d * scale * q
// - dmin * min).

template <int kOffset, bool kMinsOfGroups> struct K16Units {
  static constexpr int kUnitValues = 64;
  static constexpr bool kMins = kMinsOfGroups;
  using Activation = act_q8_K;
  struct Unit {
    int v[4][4]; // [group of the four][4 bytes]: unsigned q
    int scale[4], min[4];
    float d, dmin;
  };

  // sum (q - kOffset) x over a group = sum q x - kOffset * (the group's bsum); the mins meet the bsums.
  static __device__ float dot(const Unit &w, const act_q8_K *x, int64_t u) {
    const act_q8_K &a = x[u / 4];
    const int k = (int)(u % 4), half = k / 2, l0 = 16 * (k % 2);
    int sumi = 0, sum_mins = 0;
#pragma unroll
    for (int g = 0; g < 4; g++) {
      int xs[4];
      load16_align16(a.qs + 128 * half + 32 * g + l0, xs);
      int group = 0;
#pragma unroll
      for (int i = 0; i < 4; i++) group = __dp4a(w.v[g][i], xs[i], group);
      const int bsum = __ldg(a.bsums + 8 * half + k % 2 + 2 * g);
      if constexpr (kMins) sum_mins += w.min[g] * bsum;
      else group -= kOffset * bsum;
      sumi += w.scale[g] * group;
    }
    if constexpr (kMins) return __ldg(&a.d) * (w.d * (float)sumi - w.dmin * (float)sum_mins);
    else return w.d * __ldg(&a.d) * (float)sumi;
  }

  // The unit's values as signed bytes for the tensor cores: q - kOffset (q2_K's q as they are).
  static __device__ void to_signed(int (&v)[4][4]) {
#pragma unroll
    for (int g = 0; g < 4; g++)
#pragma unroll
      for (int i = 0; i < 4; i++) v[g][i] = (int)__vsub4((uint32_t)v[g][i], 0x01010101u * kOffset);
  }
};

// q6_K: 210-byte blocks; the low 4 bits of q in ql, the top 2 in qh, int8 scales, value = d * scale_g * (q - 32).
struct FormatQ6_K : K16Units<32, false> {
  static constexpr int kBlockBytes = sizeof(llm_block_q6_K);
  static constexpr int kQl = offsetof(llm_block_q6_K, ql), kQh = offsetof(llm_block_q6_K, qh);
  static constexpr int kScales = offsetof(llm_block_q6_K, scales), kD = offsetof(llm_block_q6_K, d);

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 256) * kBlockBytes;
    const int j = (int)(i % 256), half = j / 128, l = j % 32, quarter = (j % 128) / 32;
    const uint8_t low = __ldg(block + kQl + 64 * half + l + 32 * (quarter & 1));
    const int low4 = quarter < 2 ? low & 0x0f : low >> 4;
    const int q = low4 | ((__ldg(block + kQh + 32 * half + l) >> (2 * quarter)) & 3) << 4;
    const float d = half_bits_to_float(ldg_u16(block + kD));
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
    w.d = half_bits_to_float(ldg_u16(block + kD));
    return w;
  }

  // Quarter k of a 2-byte aligned staged block as values q - 32 in signed bytes: v[g] holds positions l0..l0 + 15
  // of group 8 half + k % 2 + 2g (values 128 half + 32 g + l0 ..), whose scale is applied outside the products.
  static __device__ void unpack_quarter(const uint8_t *block, int k, int (&v)[4][4]) {
    const int half = k / 2, l0 = 16 * (k % 2);
    int a[4], b[4], h[4];
    read16_align2(block + kQl + 64 * half + l0, a);
    read16_align2(block + kQl + 64 * half + 32 + l0, b);
    read16_align2(block + kQh + 32 * half + l0, h);
    combine(a, b, h, v);
    to_signed(v);
  }

  // The staged block's d and group g's scale.
  static __device__ void group_scale(const uint8_t *block, int g, float &d, float &, int &scale, int &) {
    d = half_bits_to_float(read_u16(block + kD));
    scale = (int8_t)block[kScales + g];
  }
};

// q3_K: 110-byte blocks; value v = 128h + 32j + l keeps its low 2 bits at bits 2j of qs[32h + l] and its third at
// bit 4h + j of hmask[l]; 6-bit scales stored + 32 in 12 bytes; value = d * (stored - 32) * (q - 4).
struct FormatQ3_K : K16Units<4, false> {
  static constexpr int kBlockBytes = sizeof(llm_block_q3_K);
  static constexpr int kHmask = offsetof(llm_block_q3_K, hmask), kQs = offsetof(llm_block_q3_K, qs);
  static constexpr int kScales = offsetof(llm_block_q3_K, scales), kD = offsetof(llm_block_q3_K, d);

  // Group g's scale - 32 from byte g % 8 of the scales (its low 4 bits) and byte 8 + g % 4 (its top 2): as
  // unpack_q3_K_scales of quant_k16.h.
  static __device__ int scale_of(uint32_t low_byte, uint32_t high_byte, int g) {
    return (int)(((low_byte >> (4 * (g / 8))) & 0x0f) | ((high_byte >> (2 * (g / 4))) & 3) << 4) - 32;
  }

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 256) * kBlockBytes;
    const int j = (int)(i % 256), half = j / 128, l = j % 32, quarter = (j % 128) / 32, g = j / 16;
    const int q = ((__ldg(block + kQs + 32 * half + l) >> (2 * quarter)) & 3) | ((__ldg(block + kHmask + l) >> (j / 32)) & 1) << 2;
    const int sc = scale_of(__ldg(block + kScales + g % 8), __ldg(block + kScales + 8 + g % 4), g);
    return half_bits_to_float(ldg_u16(block + kD)) * (float)sc * (float)(q - 4);
  }

  // The 3-bit values of quarter k's four groups from its qs bytes a (qs[32 half + l0 ..]) and hmask bytes m
  // (hmask[l0 ..]).
  static __device__ void combine(const int (&a)[4], const int (&m)[4], int half, int (&v)[4][4]) {
#pragma unroll
    for (int g = 0; g < 4; g++)
#pragma unroll
      for (int i = 0; i < 4; i++)
        v[g][i] = ((a[i] >> (2 * g)) & 0x03030303) | (((uint32_t)m[i] >> (4 * half + g)) & 0x01010101u) << 2;
  }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    const uint8_t *block = row + (u / 4) * kBlockBytes;
    const int k = (int)(u % 4), half = k / 2, l0 = 16 * (k % 2);
    int a[4], m[4];
    load16_align2(block + kQs + 32 * half + l0, a);
    load16_align2(block + kHmask + l0, m);
    Unit w;
    combine(a, m, half, w.v);
#pragma unroll
    for (int g = 0; g < 4; g++) {
      const int group = 8 * half + k % 2 + 2 * g;
      w.scale[g] = scale_of(__ldg(block + kScales + group % 8), __ldg(block + kScales + 8 + group % 4), group);
    }
    w.d = half_bits_to_float(ldg_u16(block + kD));
    return w;
  }

  static __device__ void unpack_quarter(const uint8_t *block, int k, int (&v)[4][4]) {
    const int half = k / 2, l0 = 16 * (k % 2);
    int a[4], m[4];
    read16_align2(block + kQs + 32 * half + l0, a);
    read16_align2(block + kHmask + l0, m);
    combine(a, m, half, v);
    to_signed(v);
  }

  static __device__ void group_scale(const uint8_t *block, int g, float &d, float &, int &scale, int &) {
    d = half_bits_to_float(read_u16(block + kD));
    scale = scale_of(block[kScales + g % 8], block[kScales + 8 + g % 4], g);
  }
};

// q2_K: 84-byte blocks; q3_K's qs without hmask; byte g of scales holds group g's scale (low nibble) and min (high
// nibble); value = d * scale_g * q - dmin * min_g.
struct FormatQ2_K : K16Units<0, true> {
  static constexpr int kBlockBytes = sizeof(llm_block_q2_K);
  static constexpr int kQs = offsetof(llm_block_q2_K, qs), kScales = offsetof(llm_block_q2_K, scales);
  static constexpr int kD = offsetof(llm_block_q2_K, d), kDmin = offsetof(llm_block_q2_K, dmin);
  static_assert(kBlockBytes % 4 == 0 && kQs % 4 == 0, "4-byte aligned qs");

  static __device__ float value(const uint8_t *row, int64_t i) {
    const uint8_t *block = row + (i / 256) * kBlockBytes;
    const int j = (int)(i % 256), half = j / 128, l = j % 32, quarter = (j % 128) / 32;
    const int q = (__ldg(block + kQs + 32 * half + l) >> (2 * quarter)) & 3;
    const uint8_t scale_min = __ldg(block + kScales + j / 16);
    const float d = half_bits_to_float(ldg_u16(block + kD)), dmin = half_bits_to_float(ldg_u16(block + kDmin));
    // d * scale * q - dmin * min, rounded step by step as the CPU (compiled without contraction) does.
    return __fsub_rn(__fmul_rn(__fmul_rn(d, (float)(scale_min & 0x0f)), (float)q), __fmul_rn(dmin, (float)(scale_min >> 4)));
  }

  static __device__ void combine(const int (&a)[4], int (&v)[4][4]) {
#pragma unroll
    for (int g = 0; g < 4; g++)
#pragma unroll
      for (int i = 0; i < 4; i++) v[g][i] = (a[i] >> (2 * g)) & 0x03030303;
  }

  static __device__ Unit load(const uint8_t *row, int64_t u) {
    const uint8_t *block = row + (u / 4) * kBlockBytes;
    const int k = (int)(u % 4), half = k / 2, l0 = 16 * (k % 2);
    int a[4];
    load16_align4(block + kQs + 32 * half + l0, a);
    Unit w;
    combine(a, w.v);
#pragma unroll
    for (int g = 0; g < 4; g++) {
      const uint8_t scale_min = __ldg(block + kScales + 8 * half + k % 2 + 2 * g);
      w.scale[g] = scale_min & 0x0f;
      w.min[g] = scale_min >> 4;
    }
    w.d = half_bits_to_float(ldg_u16(block + kD));
    w.dmin = half_bits_to_float(ldg_u16(block + kDmin));
    return w;
  }

  static __device__ void unpack_quarter(const uint8_t *block, int k, int (&v)[4][4]) {
    const int half = k / 2, l0 = 16 * (k % 2);
    int a[4];
    read16_align2(block + kQs + 32 * half + l0, a);
    combine(a, v);
  }

  static __device__ void group_scale(const uint8_t *block, int g, float &d, float &dmin, int &scale, int &min) {
    d = half_bits_to_float(read_u16(block + kD));
    dmin = half_bits_to_float(read_u16(block + kDmin));
    scale = block[kScales + g] & 0x0f;
    min = block[kScales + g] >> 4;
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
  case LLM_Q4_1: return FormatQ4_1::value(row, i);
  case LLM_Q5_0: return FormatQ5_0::value(row, i);
  case LLM_Q5_1: return FormatQ5_1::value(row, i);
  case LLM_IQ4_NL: return FormatIQ4_NL::value(row, i);
  case LLM_Q2_K: return FormatQ2_K::value(row, i);
  case LLM_Q3_K: return FormatQ3_K::value(row, i);
  case LLM_Q4_K: return FormatQ4_K::value(row, i);
  case LLM_Q5_K: return FormatQ5_K::value(row, i);
  case LLM_IQ4_XS: return FormatIQ4_XS::value(row, i);
  default: return FormatQ6_K::value(row, i);
  }
}
