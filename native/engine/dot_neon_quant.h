/* The quantized dot-product kernels of a NEON set, included once per set: by dot_neon.c (plain NEON), by
 * dot_neon_dotprod.c (compiled for dotprod, LLM_NEON_DOTPROD 1: llm_neon_dot_i8 is then sdot) and by dot_neon_i8mm.c
 * (dotprod and i8mm, LLM_NEON_I8MM 1: whole 4 x 4 tiles, i.e. prompts, multiply with smmla). Every kernel decodes
 * a weight block to signed bytes once per row and multiplies it with each token's activation block as exact int32
 * sums; the float steps per block are the scalar reference's (quant_i8.h, quant_b32.h, quant_k4.h, quant_k16.h,
 * quant_iq4_xs.c), in its order and unfused, so the results equal the scalar kernels' bit for bit. */

#include "quant.h"
#include "quant_b32.h"
#include "quant_i8.h"
#include "quant_k16.h"
#include "quant_k4.h"
#include "simd_neon.h"

#if LLM_NEON_I8MM
#define NEON_KERNEL(name) llm_dot_##name##_neon_i8mm
#elif LLM_NEON_DOTPROD
#define NEON_KERNEL(name) llm_dot_##name##_neon_dotprod
#else
#define NEON_KERNEL(name) llm_dot_##name##_neon
#endif

/* Rows x tokens per tile: a row's decoded block serves 4 tokens (prompts), a token's activations 4 rows. */
#define NEON_QUANT_ROWS 4
#define NEON_QUANT_TOKENS 4
_Static_assert(NEON_QUANT_ROWS == 4 && NEON_QUANT_TOKENS == 4, "tile_n32 folds 4 rows into the lanes of one vector; "
               "the smmla tiles take rows and tokens in 2 pairs each");

#if LLM_NEON_I8MM
/* smmla (vmmlaq_s32) adds the 2 x 2 int32 products of its first operand's two rows of 8 bytes with its second's:
 * lanes row 0 token 0, row 0 token 1, row 1 token 0, row 1 token 1. The tiles below pair rows and tokens 8 values at
 * a time; each lane's integer sum is the one the dot-product kernels form and its float steps are theirs, so the
 * results are the same bits with half the multiply instructions. */

/* The low (high = 0) or high 8 bytes of two vectors, side by side. */
LLM_NEON_INLINE int8x16_t mmla_halves(int8x16_t first, int8x16_t second, const int high) {
  const int64x2_t a = vreinterpretq_s64_s8(first), b = vreinterpretq_s64_s8(second);
  return vreinterpretq_s8_s64(high ? vzip2q_s64(a, b) : vzip1q_s64(a, b));
}

/* acc + the 2 x 2 dot products of 16 values of two rows with the same 16 of two tokens. */
LLM_NEON_INLINE int32x4_t mmla_16(int32x4_t acc, int8x16_t row0, int8x16_t row1, int8x16_t token0, int8x16_t token1) {
  acc = vmmlaq_s32(acc, mmla_halves(row0, row1, 0), mmla_halves(token0, token1, 0));
  return vmmlaq_s32(acc, mmla_halves(row0, row1, 1), mmla_halves(token0, token1, 1));
}

/* A factor of each row of the pair, [r0, r0, r1, r1], and of each token, [t0, t1, t0, t1], in the lanes' order. */
LLM_NEON_INLINE float32x4_t mmla_rows(float row0, float row1) { return vcombine_f32(vdup_n_f32(row0), vdup_n_f32(row1)); }
LLM_NEON_INLINE float32x4_t mmla_tokens(float token0, float token1) {
  const float32x2_t pair = vset_lane_f32(token1, vdup_n_f32(token0), 1);
  return vcombine_f32(pair, pair);
}

/* acc[p][q]: rows 2p, 2p+1 and tokens 2q, 2q+1 of a 4 x 4 tile. */
LLM_NEON_INLINE void mmla_store(const float32x4_t acc[2][2], float *out, int64_t out_stride) {
  for (int p = 0; p < 2; p++)
    for (int q = 0; q < 2; q++) {
      float lanes[4];
      vst1q_f32(lanes, acc[p][q]);
      for (int lane = 0; lane < 4; lane++) out[(2 * q + lane % 2) * out_stride + 2 * p + lane / 2] = lanes[lane];
    }
}
#endif

/* ---- Blocks of 32 values against q8_0 activations: q8_0 and iq4_nl (quant_i8.h), q4_0, q4_1, q5_0, q5_1
 * (quant_b32.h). N32 numbers them as one family: the first two are quant_i8.h's formats, the rest quant_b32.h's. */

enum { N32_Q8_0, N32_IQ4_NL, N32_Q4_0, N32_Q4_1, N32_Q5_0, N32_Q5_1 };
_Static_assert((int)N32_Q8_0 == (int)I8_Q8_0 && (int)N32_IQ4_NL == (int)I8_IQ4_NL && N32_Q4_0 - 2 == (int)B32_Q4_0 &&
                   N32_Q4_1 - 2 == (int)B32_Q4_1 && N32_Q5_0 - 2 == (int)B32_Q5_0 && N32_Q5_1 - 2 == (int)B32_Q5_1,
               "N32 formats map onto quant_i8.h's and quant_b32.h's");
#define N32_IS_I8(FORMAT) ((FORMAT) < N32_Q4_0)
#define N32_B32(FORMAT) ((FORMAT) - N32_Q4_0)
#define N32_BLOCK_BYTES(FORMAT) (N32_IS_I8(FORMAT) ? I8_BLOCK_BYTES(FORMAT) : B32_BLOCK_BYTES(N32_B32(FORMAT)))
#define N32_HAS_MIN(FORMAT) (!N32_IS_I8(FORMAT) && B32_HAS_MIN(N32_B32(FORMAT)))

/* 16 bytes of 4-bit codes: the low nibbles (values 0..15 of a block) and the high nibbles (16..31). */
LLM_NEON_INLINE void neon_nibbles(const uint8_t *packed, uint8x16_t out[2]) {
  const uint8x16_t bytes = vld1q_u8(packed);
  out[0] = vandq_u8(bytes, vdupq_n_u8(0x0f));
  out[1] = vshrq_n_u8(bytes, 4);
}

/* Bytes whose bit `bit` is set in `bits` become 16 (a fifth bit of q), the others 0. */
LLM_NEON_INLINE uint8x16_t neon_fifth_bit(uint8x16_t bits, int bit) {
  return vandq_u8(vtstq_u8(bits, vdupq_n_u8((uint8_t)(1u << bit))), vdupq_n_u8(16));
}

/* The 32 values of a block as signed bytes: v for q8_0 and iq4_nl, q - OFFSET for q4_0 and q5_0, q for the min
 * formats (q4_1, q5_1: q <= 31). */
LLM_NEON_INLINE void n32_values(const uint8_t *block, int8x16_t v[2], const int FORMAT) {
  if (FORMAT == N32_Q8_0) {
    const int8_t *qs = ((const struct llm_block_q8_0 *)block)->qs;
    v[0] = vld1q_s8(qs);
    v[1] = vld1q_s8(qs + 16);
    return;
  }
  uint8x16_t q[2];
  if (FORMAT == N32_IQ4_NL) {
    neon_nibbles(((const struct llm_block_iq4_nl *)block)->qs, q);
    const int8x16_t table = vld1q_s8(llm_iq4nl_values);
    v[0] = vqtbl1q_s8(table, q[0]);
    v[1] = vqtbl1q_s8(table, q[1]);
    return;
  }
  neon_nibbles(b32_qs(block, N32_B32(FORMAT)), q);
  if (B32_FIVE_BITS(N32_B32(FORMAT))) {
    /* Bit j of qh is value j's fifth bit: byte j of each vector takes qh's byte j / 8 and tests bit j % 8. */
    const uint8x8_t qh = vcreate_u8(b32_qh(block, N32_B32(FORMAT)));
    const uint8x16_t bit_of_lane = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ull));
    const uint8x16_t spread_low = vcombine_u8(vdup_lane_u8(qh, 0), vdup_lane_u8(qh, 1));
    const uint8x16_t spread_high = vcombine_u8(vdup_lane_u8(qh, 2), vdup_lane_u8(qh, 3));
    q[0] = vorrq_u8(q[0], vandq_u8(vtstq_u8(spread_low, bit_of_lane), vdupq_n_u8(16)));
    q[1] = vorrq_u8(q[1], vandq_u8(vtstq_u8(spread_high, bit_of_lane), vdupq_n_u8(16)));
  }
  const int8x16_t offset = vdupq_n_s8(N32_HAS_MIN(FORMAT) ? 0 : (int8_t)(1 << B32_OFFSET_SHIFT(N32_B32(FORMAT))));
  v[0] = vsubq_s8(vreinterpretq_s8_u8(q[0]), offset);
  v[1] = vsubq_s8(vreinterpretq_s8_u8(q[1]), offset);
}

#if LLM_NEON_I8MM
/* A whole 4 x 4 tile with smmla: per block, rows and tokens in pairs, each lane's steps tile_n32's. */
LLM_NEON_INLINE void tile_n32_mmla(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                   float *out, int64_t out_stride, const int FORMAT) {
  float32x4_t acc[2][2];
  for (int p = 0; p < 2; p++)
    for (int q = 0; q < 2; q++) acc[p][q] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    int8x16_t v[NEON_QUANT_ROWS][2];
    float wd[NEON_QUANT_ROWS], wm[NEON_QUANT_ROWS];
    for (int i = 0; i < NEON_QUANT_ROWS; i++) {
      const uint8_t *block = (const uint8_t *)w + i * w_stride + b * N32_BLOCK_BYTES(FORMAT);
      n32_values(block, v[i], FORMAT);
      wd[i] = llm_neon_half_to_float(i8_d(block));
      wm[i] = N32_HAS_MIN(FORMAT) ? llm_neon_half_to_float(B32_M(block)) : 0.0f;
    }
    for (int q = 0; q < 2; q++) {
      const struct llm_block_q8_0 *x0 = (const struct llm_block_q8_0 *)((const char *)x + 2 * q * x_stride) + b;
      const struct llm_block_q8_0 *x1 = (const struct llm_block_q8_0 *)((const char *)x + (2 * q + 1) * x_stride) + b;
      const int8x16_t t0[2] = { vld1q_s8(x0->qs), vld1q_s8(x0->qs + 16) }, t1[2] = { vld1q_s8(x1->qs), vld1q_s8(x1->qs + 16) };
      const float32x4_t xd = mmla_tokens(llm_neon_half_to_float(x0->d), llm_neon_half_to_float(x1->d));
      for (int p = 0; p < 2; p++) {
        int32x4_t sumi = mmla_16(vdupq_n_s32(0), v[2 * p][0], v[2 * p + 1][0], t0[0], t1[0]);
        sumi = mmla_16(sumi, v[2 * p][1], v[2 * p + 1][1], t0[1], t1[1]);
        acc[p][q] = vaddq_f32(acc[p][q], vmulq_f32(vcvtq_f32_s32(sumi), vmulq_f32(mmla_rows(wd[2 * p], wd[2 * p + 1]), xd)));
        if (N32_HAS_MIN(FORMAT)) {
          const float32x4_t sum_x = mmla_tokens((float)(vaddlvq_s8(t0[0]) + vaddlvq_s8(t0[1])), (float)(vaddlvq_s8(t1[0]) + vaddlvq_s8(t1[1])));
          acc[p][q] = vaddq_f32(acc[p][q], vmulq_f32(sum_x, vmulq_f32(mmla_rows(wm[2 * p], wm[2 * p + 1]), xd)));
        }
      }
    }
  }
  mmla_store(acc, out, out_stride);
}
#endif

/* Per block, each row's values decoded once, then per token the 4 rows' exact int32 sums folded into the lanes of one
 * vector (lane i: row i), so one conversion and multiply-add scale all 4: per lane the scalar reference's steps,
 * acc += (float)sumi * (d * x_d), then for the min formats acc += (float)sum(x) * (m * x_d). */
LLM_NEON_INLINE void tile_n32(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride, float *out,
                              int64_t out_stride, const int ROWS, const int TOKENS, const int FORMAT) {
#if LLM_NEON_I8MM
  if (ROWS == NEON_QUANT_ROWS && TOKENS == NEON_QUANT_TOKENS) {
    tile_n32_mmla(cols, w, w_stride, x, x_stride, out, out_stride, FORMAT);
    return;
  }
#endif
  float32x4_t acc[NEON_QUANT_TOKENS];
  for (int j = 0; j < TOKENS; j++) acc[j] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < cols / LLM_QK8_0; b++) {
    int8x16_t v[NEON_QUANT_ROWS][2];
    uint16_t wd[NEON_QUANT_ROWS] = { 0 }, wm[NEON_QUANT_ROWS] = { 0 };
    for (int i = 0; i < ROWS; i++) {
      const uint8_t *block = (const uint8_t *)w + i * w_stride + b * N32_BLOCK_BYTES(FORMAT);
      n32_values(block, v[i], FORMAT);
      wd[i] = i8_d(block); /* d leads every block of the family (asserted there) */
      if (N32_HAS_MIN(FORMAT)) wm[i] = B32_M(block);
    }
    const float32x4_t row_d = llm_neon_load4_f16(wd), row_m = llm_neon_load4_f16(wm);
    for (int j = 0; j < TOKENS; j++) {
      const struct llm_block_q8_0 *xb = (const struct llm_block_q8_0 *)((const char *)x + j * x_stride) + b;
      const int8x16_t x0 = vld1q_s8(xb->qs), x1 = vld1q_s8(xb->qs + 16);
      int32x4_t sums[NEON_QUANT_ROWS];
      for (int i = 0; i < NEON_QUANT_ROWS; i++)
        sums[i] = i < ROWS ? llm_neon_dot_i8(llm_neon_dot_i8(vdupq_n_s32(0), v[i][0], x0), v[i][1], x1) : vdupq_n_s32(0);
      const int32x4_t sumi = vpaddq_s32(vpaddq_s32(sums[0], sums[1]), vpaddq_s32(sums[2], sums[3]));
      const float xd = llm_neon_half_to_float(xb->d);
      acc[j] = vaddq_f32(acc[j], vmulq_f32(vcvtq_f32_s32(sumi), vmulq_n_f32(row_d, xd)));
      if (N32_HAS_MIN(FORMAT)) {
        const float sum_x = (float)(vaddlvq_s8(x0) + vaddlvq_s8(x1));
        acc[j] = vaddq_f32(acc[j], vmulq_f32(vdupq_n_f32(sum_x), vmulq_n_f32(row_m, xd)));
      }
    }
  }
  for (int j = 0; j < TOKENS; j++) {
    float lanes[NEON_QUANT_ROWS];
    vst1q_f32(lanes, acc[j]);
    for (int i = 0; i < ROWS; i++) out[j * out_stride + i] = lanes[i];
  }
}

#define N32_KERNEL(name, FORMAT)                                                                                       \
  LLM_NEON_INLINE void tile_##name##_rows(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                          float *out, int64_t out_stride, const int ROWS, const int TOKENS) {          \
    tile_n32(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, FORMAT);                                   \
  }                                                                                                                    \
  LLM_DEFINE_TARGET_TILE(, tile_##name, tile_##name##_rows, NEON_QUANT_ROWS, NEON_QUANT_TOKENS)                        \
  const struct llm_dot_kernel NEON_KERNEL(name) = { LLM_ACTIVATION_Q8_0, NEON_QUANT_ROWS, NEON_QUANT_TOKENS, tile_##name };

N32_KERNEL(q8_0, N32_Q8_0)
N32_KERNEL(iq4_nl, N32_IQ4_NL)
N32_KERNEL(q4_0, N32_Q4_0)
N32_KERNEL(q4_1, N32_Q4_1)
N32_KERNEL(q5_0, N32_Q5_0)
N32_KERNEL(q5_1, N32_Q5_1)

/* ---- Super-blocks of 256 values against q8_K activations ---- */

enum { NK_Q4_K, NK_Q5_K, NK_Q6_K, NK_Q3_K, NK_Q2_K, NK_IQ4_XS };
#define NK_BLOCK_BYTES(FORMAT)                                                                                         \
  ((FORMAT) == NK_Q4_K || (FORMAT) == NK_Q5_K ? K4_BLOCK_BYTES((FORMAT) == NK_Q5_K)                                    \
   : (FORMAT) == NK_Q6_K                      ? K16_BLOCK_BYTES(K16_Q6_K)                                              \
   : (FORMAT) == NK_Q3_K                      ? K16_BLOCK_BYTES(K16_Q3_K)                                              \
   : (FORMAT) == NK_Q2_K                      ? K16_BLOCK_BYTES(K16_Q2_K)                                              \
                                              : sizeof(struct llm_block_iq4_xs))
/* The formats with mins: value = d * scale * q - dmin * min. The others: value = d * scale * (signed q). */
#define NK_HAS_MINS(FORMAT) ((FORMAT) == NK_Q4_K || (FORMAT) == NK_Q5_K || (FORMAT) == NK_Q2_K)

/* A decoded super-block: its 256 values as signed bytes, 16 per vector in value order; the integer scale of each
 * vector's 16 values (q4_K, q5_K and iq4_xs repeat each 32-value scale), and for the min formats the min of each
 * 16 (which meet the activations' bsums). */
struct nk_block {
  int8x16_t v[16];
  int16_t scales[16];
  int16_t mins[16];
  float d, dmin;
};

/* q4_K / q5_K (quant_k4.h): quarter k of qs holds sub-block 2k in its low nibbles and 2k+1 in its high ones. */
LLM_NEON_INLINE void nk_decode_k4(const uint8_t *block, struct nk_block *out, const int FIVE_BITS) {
  const uint8_t *qs = block + K4_QS(FIVE_BITS);
  uint8x16_t high_bits[2];
  if (FIVE_BITS) {
    high_bits[0] = vld1q_u8(block + K4_QH);
    high_bits[1] = vld1q_u8(block + K4_QH + 16);
  }
  for (int k = 0; k < 4; k++) {
    for (int half = 0; half < 2; half++) {
      const uint8x16_t bytes = vld1q_u8(qs + 32 * k + 16 * half);
      uint8x16_t low = vandq_u8(bytes, vdupq_n_u8(0x0f)), high = vshrq_n_u8(bytes, 4);
      if (FIVE_BITS) {
        low = vorrq_u8(low, neon_fifth_bit(high_bits[half], 2 * k));
        high = vorrq_u8(high, neon_fifth_bit(high_bits[half], 2 * k + 1));
      }
      out->v[4 * k + half] = vreinterpretq_s8_u8(low);
      out->v[4 * k + 2 + half] = vreinterpretq_s8_u8(high);
    }
  }
  uint8_t scales_mins[16];
  unpack_scales_mins(k4_head(block)->scales, scales_mins);
  for (int g = 0; g < 16; g++) {
    out->scales[g] = scales_mins[g / 2];
    out->mins[g] = scales_mins[8 + g / 2];
  }
  out->d = llm_neon_half_to_float(k4_head(block)->d);
  out->dmin = llm_neon_half_to_float(k4_head(block)->dmin);
}

/* q6_K (quant_k16.h): per half of 128 values, value 32 k + l takes the nibble of ql[l] (k even) or ql[l + 32]
 * (k odd), low for k < 2, and bits 2k, 2k+1 of qh[l] on top; stored + 32. */
LLM_NEON_INLINE void nk_decode_q6_K(const uint8_t *block, struct nk_block *out) {
  const struct llm_block_q6_K *b = (const struct llm_block_q6_K *)block;
  for (int half = 0; half < 2; half++) {
    for (int part = 0; part < 2; part++) { /* l in 0..15, 16..31 */
      const uint8x16_t ql_even = vld1q_u8(b->ql + 64 * half + 16 * part), ql_odd = vld1q_u8(b->ql + 64 * half + 32 + 16 * part);
      const uint8x16_t qh = vld1q_u8(b->qh + 32 * half + 16 * part);
      const uint8x16_t low4[4] = { vandq_u8(ql_even, vdupq_n_u8(0x0f)), vandq_u8(ql_odd, vdupq_n_u8(0x0f)),
                                   vshrq_n_u8(ql_even, 4), vshrq_n_u8(ql_odd, 4) };
      const uint8x16_t top2[4] = { vshlq_n_u8(vandq_u8(qh, vdupq_n_u8(0x03)), 4), vshlq_n_u8(vandq_u8(qh, vdupq_n_u8(0x0c)), 2),
                                   vandq_u8(qh, vdupq_n_u8(0x30)), vshrq_n_u8(vandq_u8(qh, vdupq_n_u8(0xc0)), 2) };
      for (int k = 0; k < 4; k++)
        out->v[8 * half + 2 * k + part] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low4[k], top2[k])), vdupq_n_s8(32));
    }
  }
  int8_t scales[16];
  k16_scales(block, scales, K16_Q6_K);
  for (int g = 0; g < 16; g++) out->scales[g] = scales[g];
  out->d = llm_neon_half_to_float(b->d);
}

/* q3_K and q2_K (quant_k16.h): value 128 h + 32 k + l keeps its low 2 bits in bits 2k, 2k+1 of qs[32 h + l]; q3_K
 * its third in bit 4h + k of hmask[l] (stored + 4). q2_K's byte g of scales: scale (low nibble), min (high). */
LLM_NEON_INLINE void nk_decode_k16_2bit(const uint8_t *block, struct nk_block *out, const int FORMAT) {
  const uint8_t *qs = FORMAT == K16_Q3_K ? ((const struct llm_block_q3_K *)block)->qs : ((const struct llm_block_q2_K *)block)->qs;
  uint8x16_t hmask[2];
  if (FORMAT == K16_Q3_K) {
    hmask[0] = vld1q_u8(((const struct llm_block_q3_K *)block)->hmask);
    hmask[1] = vld1q_u8(((const struct llm_block_q3_K *)block)->hmask + 16);
  }
  for (int h = 0; h < 2; h++) {
    for (int part = 0; part < 2; part++) {
      uint8x16_t bytes = vld1q_u8(qs + 32 * h + 16 * part);
      for (int k = 0; k < 4; k++, bytes = vshrq_n_u8(bytes, 2)) {
        uint8x16_t q = vandq_u8(bytes, vdupq_n_u8(3));
        int8x16_t value = vreinterpretq_s8_u8(q);
        if (FORMAT == K16_Q3_K) {
          q = vorrq_u8(q, vshrq_n_u8(neon_fifth_bit(hmask[part], 4 * h + k), 2)); /* the bit as 4 */
          value = vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(4));
        }
        out->v[8 * h + 2 * k + part] = value;
      }
    }
  }
  int8_t scales[16];
  k16_scales(block, scales, FORMAT);
  for (int g = 0; g < 16; g++) out->scales[g] = scales[g];
  out->d = llm_neon_half_to_float(k16_d(block, FORMAT));
  if (FORMAT == K16_Q2_K) {
    const struct llm_block_q2_K *b = (const struct llm_block_q2_K *)block;
    for (int g = 0; g < 16; g++) out->mins[g] = b->scales[g] >> 4;
    out->dmin = llm_neon_half_to_float(b->dmin);
  }
}

/* iq4_xs (quant_iq4_xs.c): sub-block s's 16 bytes of indices as iq4_nl's, its scale_s - 32. */
LLM_NEON_INLINE void nk_decode_iq4_xs(const uint8_t *block, struct nk_block *out) {
  const struct llm_block_iq4_xs *b = (const struct llm_block_iq4_xs *)block;
  const int8x16_t table = vld1q_s8(llm_iq4nl_values);
  for (int s = 0; s < 8; s++) {
    uint8x16_t q[2];
    neon_nibbles(b->qs + 16 * s, q);
    out->v[2 * s] = vqtbl1q_s8(table, q[0]);
    out->v[2 * s + 1] = vqtbl1q_s8(table, q[1]);
    out->scales[2 * s] = out->scales[2 * s + 1] = (int16_t)llm_iq4_xs_scale(b, s);
  }
  out->d = llm_neon_half_to_float(b->d);
}

LLM_NEON_INLINE void nk_decode(const uint8_t *block, struct nk_block *out, const int FORMAT) {
  switch (FORMAT) {
  case NK_Q4_K: nk_decode_k4(block, out, 0); break;
  case NK_Q5_K: nk_decode_k4(block, out, 1); break;
  case NK_Q6_K: nk_decode_q6_K(block, out); break;
  case NK_Q3_K: nk_decode_k16_2bit(block, out, K16_Q3_K); break;
  case NK_Q2_K: nk_decode_k16_2bit(block, out, K16_Q2_K); break;
  default: nk_decode_iq4_xs(block, out); break;
  }
}

/* sum over the 16 groups of min_g * bsums_g (the activations' sums of each 16 values), exact. */
LLM_NEON_INLINE int32_t nk_min_sum(const int16x8_t mins[2], const struct llm_block_q8_K *xb) {
  const int16x8_t bsums0 = vld1q_s16(xb->bsums), bsums1 = vld1q_s16(xb->bsums + 8);
  int32x4_t products = vmull_s16(vget_low_s16(mins[0]), vget_low_s16(bsums0));
  products = vmlal_high_s16(products, mins[0], bsums0);
  products = vmlal_s16(products, vget_low_s16(mins[1]), vget_low_s16(bsums1));
  products = vmlal_high_s16(products, mins[1], bsums1);
  return vaddvq_s32(products);
}

#if LLM_NEON_I8MM
/* A whole 4 x 4 tile with smmla: per super-block the 4 rows decoded, then per pair of rows and pair of tokens each
 * 16 values' 2 x 2 products scaled by their rows' group scales; each lane's steps tile_nk's. */
LLM_NEON_INLINE void tile_nk_mmla(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                  float *out, int64_t out_stride, const int FORMAT) {
  float32x4_t acc[2][2];
  for (int p = 0; p < 2; p++)
    for (int q = 0; q < 2; q++) acc[p][q] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    struct nk_block wb[NEON_QUANT_ROWS];
    int16x8_t mins[NEON_QUANT_ROWS][2];
    for (int i = 0; i < NEON_QUANT_ROWS; i++) {
      nk_decode((const uint8_t *)w + i * w_stride + b * NK_BLOCK_BYTES(FORMAT), &wb[i], FORMAT);
      if (NK_HAS_MINS(FORMAT)) {
        mins[i][0] = vld1q_s16(wb[i].mins);
        mins[i][1] = vld1q_s16(wb[i].mins + 8);
      }
    }
    for (int q = 0; q < 2; q++) {
      const struct llm_block_q8_K *x0 = (const struct llm_block_q8_K *)((const char *)x + 2 * q * x_stride) + b;
      const struct llm_block_q8_K *x1 = (const struct llm_block_q8_K *)((const char *)x + (2 * q + 1) * x_stride) + b;
      const float32x4_t xd = mmla_tokens(x0->d, x1->d);
      for (int p = 0; p < 2; p++) {
        const struct nk_block *r0 = &wb[2 * p], *r1 = &wb[2 * p + 1];
        int32x4_t scaled = vdupq_n_s32(0);
        for (int g = 0; g < 16; g++) {
          const int32x4_t products = mmla_16(vdupq_n_s32(0), r0->v[g], r1->v[g], vld1q_s8(x0->qs + 16 * g), vld1q_s8(x1->qs + 16 * g));
          const int32x4_t scales = vcombine_s32(vdup_n_s32(r0->scales[g]), vdup_n_s32(r1->scales[g]));
          scaled = vmlaq_s32(scaled, products, scales);
        }
        const float32x4_t d = mmla_rows(r0->d, r1->d), sumi = vcvtq_f32_s32(scaled);
        if (NK_HAS_MINS(FORMAT)) {
          const int32_t lanes[4] = { nk_min_sum(mins[2 * p], x0), nk_min_sum(mins[2 * p], x1), nk_min_sum(mins[2 * p + 1], x0),
                                     nk_min_sum(mins[2 * p + 1], x1) };
          const float32x4_t min_term = vmulq_f32(mmla_rows(r0->dmin, r1->dmin), vcvtq_f32_s32(vld1q_s32(lanes)));
          acc[p][q] = vaddq_f32(acc[p][q], vmulq_f32(xd, vsubq_f32(vmulq_f32(d, sumi), min_term)));
        } else {
          acc[p][q] = vaddq_f32(acc[p][q], vmulq_f32(vmulq_f32(d, xd), sumi));
        }
      }
    }
  }
  mmla_store(acc, out, out_stride);
}
#endif

LLM_NEON_INLINE void tile_nk(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride, float *out,
                             int64_t out_stride, const int ROWS, const int TOKENS, const int FORMAT) {
#if LLM_NEON_I8MM
  if (ROWS == NEON_QUANT_ROWS && TOKENS == NEON_QUANT_TOKENS) {
    tile_nk_mmla(cols, w, w_stride, x, x_stride, out, out_stride, FORMAT);
    return;
  }
#endif
  float acc[NEON_QUANT_ROWS][NEON_QUANT_TOKENS];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) acc[i][j] = 0.0f;
  for (int64_t b = 0; b < cols / LLM_QK_K; b++) {
    for (int i = 0; i < ROWS; i++) {
      struct nk_block wb;
      nk_decode((const uint8_t *)w + i * w_stride + b * NK_BLOCK_BYTES(FORMAT), &wb, FORMAT);
      int16x8_t mins[2];
      if (NK_HAS_MINS(FORMAT)) {
        mins[0] = vld1q_s16(wb.mins);
        mins[1] = vld1q_s16(wb.mins + 8);
      }
      for (int j = 0; j < TOKENS; j++) {
        const struct llm_block_q8_K *xb = (const struct llm_block_q8_K *)((const char *)x + j * x_stride) + b;
        int32x4_t scaled = vdupq_n_s32(0);
        for (int g = 0; g < 16; g++)
          scaled = vmlaq_n_s32(scaled, llm_neon_dot_i8(vdupq_n_s32(0), wb.v[g], vld1q_s8(xb->qs + 16 * g)), wb.scales[g]);
        const int32_t sumi = vaddvq_s32(scaled);
        if (NK_HAS_MINS(FORMAT)) {
          acc[i][j] += xb->d * (wb.d * (float)sumi - wb.dmin * (float)nk_min_sum(mins, xb));
        } else {
          acc[i][j] += wb.d * xb->d * (float)sumi;
        }
      }
    }
  }
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < TOKENS; j++) out[j * out_stride + i] = acc[i][j];
}

#define NK_KERNEL(name, FORMAT)                                                                                        \
  LLM_NEON_INLINE void tile_##name##_rows(int64_t cols, const void *w, size_t w_stride, const void *x, size_t x_stride, \
                                          float *out, int64_t out_stride, const int ROWS, const int TOKENS) {          \
    tile_nk(cols, w, w_stride, x, x_stride, out, out_stride, ROWS, TOKENS, FORMAT);                                    \
  }                                                                                                                    \
  LLM_DEFINE_TARGET_TILE(, tile_##name, tile_##name##_rows, NEON_QUANT_ROWS, NEON_QUANT_TOKENS)                        \
  const struct llm_dot_kernel NEON_KERNEL(name) = { LLM_ACTIVATION_Q8_K, NEON_QUANT_ROWS, NEON_QUANT_TOKENS, tile_##name };

NK_KERNEL(q4_K, NK_Q4_K)
NK_KERNEL(q5_K, NK_Q5_K)
NK_KERNEL(q6_K, NK_Q6_K)
NK_KERNEL(q3_K, NK_Q3_K)
NK_KERNEL(q2_K, NK_Q2_K)
NK_KERNEL(iq4_xs, NK_IQ4_XS)
