#ifndef LLM_BLOCKS_H
#define LLM_BLOCKS_H

/* The block layouts of the quantized types, bit for bit ggml's GGUF layouts (ggml-common.h), in plain C that both
 * the CPU engine (quant_*.c) and the CUDA kernels (native/cuda/formats.cuh) read: sizes and field offsets are
 * taken from these structs, never restated. Halves are stored as their IEEE bits (uint16_t). */

#include <stdint.h>

#ifdef __cplusplus
#define LLM_BLOCK_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define LLM_BLOCK_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define LLM_QK8_0 32
#define LLM_QK4_0 32
#define LLM_QK_K 256 /* values per K-quant super-block */
#define LLM_K_SCALE_BYTES 12 /* 16 6-bit numbers: q4_K / q5_K scales and mins, q3_K scales */

/* q8_0: value i = d * qs[i]. Also the activation format that the 32-value weight formats are multiplied with. */
struct llm_block_q8_0 {
  uint16_t d;
  int8_t qs[LLM_QK8_0];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q8_0) == 34, "q8_0 block is 34 bytes per 32 values");

/* q4_0: value j = d * (q_j - 8), byte j holding q_j in its low nibble and q_(j+16) in its high nibble. */
struct llm_block_q4_0 {
  uint16_t d;
  uint8_t qs[LLM_QK4_0 / 2];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q4_0) == 18, "q4_0 block is 18 bytes per 32 values");

/* q4_1: value j = d * q_j + m with 4-bit q_j packed as q4_0's (quant_q4_1.c). */
struct llm_block_q4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[LLM_QK4_0 / 2];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q4_1) == 20, "q4_1 block is 20 bytes per 32 values");

/* q5_0: value j = d * (q_j - 16) with 5-bit q_j: the low 4 bits packed as q4_0's, the fifth in bit j of qh (a
 * little-endian 32-bit word) (quant_q5_0.c). */
struct llm_block_q5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[LLM_QK4_0 / 2];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q5_0) == 22, "q5_0 block is 22 bytes per 32 values");

/* q5_1: value j = d * q_j + m with q5_0's 5-bit q_j (quant_q5_1.c). */
struct llm_block_q5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[LLM_QK4_0 / 2];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q5_1) == 24, "q5_1 block is 24 bytes per 32 values");

/* The 16 levels of iq4_nl and iq4_xs (ggml's kvalues_iq4nl), ascending: the initializer of the engine's
 * llm_iq4nl_values (quant_iq4_nl.c) and of the CUDA kernels' lookup words (native/cuda/formats.cuh). */
#define LLM_IQ4NL_VALUES { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 }

/* iq4_nl: value j = d * kvalues_iq4nl[q_j] with 4-bit q_j packed as q4_0's (quant_iq4_nl.c). */
struct llm_block_iq4_nl {
  uint16_t d;
  uint8_t qs[LLM_QK4_0 / 2];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_iq4_nl) == 18, "iq4_nl block is 18 bytes per 32 values");

/* iq4_xs: 8 sub-blocks of 32, value = d * (scale_s - 32) * kvalues_iq4nl[q] with 6-bit scale_s (low 4 bits in a
 * nibble of scales_l[s / 2], top 2 bits at bit 2s of scales_h) and each sub-block's 4-bit q packed as iq4_nl's
 * (quant_iq4_xs.c). */
struct llm_block_iq4_xs {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[LLM_QK_K / 64];
  uint8_t qs[LLM_QK_K / 2];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_iq4_xs) == 136, "iq4_xs block is 136 bytes per 256 values");

/* q2_K: 16 groups of 16, value = d * scale_g * q - dmin * min_g with 2-bit q; byte g of scales holds scale_g
 * (low nibble) and min_g (high nibble) (quant_q2_K.c). */
struct llm_block_q2_K {
  uint8_t scales[LLM_QK_K / 16];
  uint8_t qs[LLM_QK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q2_K) == 84, "q2_K block is 84 bytes per 256 values");

/* q3_K: 16 groups of 16, value = d * (scale_g - 32) * (q - 4) with 3-bit q: the low 2 bits in qs, the third in
 * hmask, 6-bit scale_g packed into 12 bytes (quant_q3_K.c). */
struct llm_block_q3_K {
  uint8_t hmask[LLM_QK_K / 8];
  uint8_t qs[LLM_QK_K / 4];
  uint8_t scales[LLM_K_SCALE_BYTES];
  uint16_t d;
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q3_K) == 110, "q3_K block is 110 bytes per 256 values");

/* q4_K: 8 sub-blocks of 32, value = d * scale_s * q - dmin * min_s (quant_q4_K.c). */
struct llm_block_q4_K {
  uint16_t d;    /* scale of the sub-block scales */
  uint16_t dmin; /* scale of the sub-block mins */
  uint8_t scales[LLM_K_SCALE_BYTES];
  uint8_t qs[LLM_QK_K / 2];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q4_K) == 144, "q4_K block is 144 bytes per 256 values");

/* q5_K: q4_K with a fifth bit of each value in qh (quant_q5_K.c). */
struct llm_block_q5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[LLM_K_SCALE_BYTES];
  uint8_t qh[LLM_QK_K / 8];
  uint8_t qs[LLM_QK_K / 2];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q5_K) == 176, "q5_K block is 176 bytes per 256 values");

/* q6_K: 16 groups of 16, value = d * scale_g * (q - 32) with 6-bit q (quant_q6_K.c). */
struct llm_block_q6_K {
  uint8_t ql[LLM_QK_K / 2];
  uint8_t qh[LLM_QK_K / 4];
  int8_t scales[LLM_QK_K / 16];
  uint16_t d;
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q6_K) == 210, "q6_K block is 210 bytes per 256 values");

/* q8_K: the activation format of the K-quant dot products (never stored in files). bsums[i] is the sum of
 * qs[16i .. 16i+15]: the dot products subtract the weights' offsets from these instead of from each value. */
struct llm_block_q8_K {
  float d;
  int8_t qs[LLM_QK_K];
  int16_t bsums[LLM_QK_K / 16];
};
LLM_BLOCK_ASSERT(sizeof(struct llm_block_q8_K) == 292, "q8_K block is 292 bytes per 256 values");

#endif
