#include "tensor.h"

#include <stdio.h>
#include <string.h>

#include "quant.h"

/* Per type: name, values per block, bytes per block, and the row conversions: the one table of the engine's types,
 * which the addon lists to JavaScript (typeInfo) and model.c checks files against. */
struct type_info {
  const char *name;
  int block_size;
  size_t block_bytes;
  void (*quantize)(const float *x, void *y, int64_t n);
  void (*dequantize)(const void *x, float *y, int64_t n);
};

static void f32_from_f32(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }
static void f32_to_f32(const void *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }
static void f16_from_f32(const float *x, void *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i] = llm_f32_to_f16(x[i]);
}
static void f16_to_f32(const void *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = llm_f16_to_f32(((const uint16_t *)x)[i]);
}
static void bf16_from_f32(const float *x, void *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i] = llm_f32_to_bf16(x[i]);
}
static void bf16_to_f32(const void *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = llm_bf16_to_f32(((const uint16_t *)x)[i]);
}

static const struct type_info TYPES[LLM_TYPE_COUNT] = {
  [LLM_F32] = { "f32", 1, 4, f32_from_f32, f32_to_f32 },
  [LLM_F16] = { "f16", 1, 2, f16_from_f32, f16_to_f32 },
  [LLM_IQ4_NL] = { "iq4_nl", LLM_QK8_0, sizeof(struct llm_block_iq4_nl), llm_quantize_row_iq4_nl_ref, llm_dequantize_row_iq4_nl },
  [LLM_IQ4_XS] = { "iq4_xs", LLM_QK_K, sizeof(struct llm_block_iq4_xs), llm_quantize_row_iq4_xs_ref, llm_dequantize_row_iq4_xs },
  [LLM_BF16] = { "bf16", 1, 2, bf16_from_f32, bf16_to_f32 },
  [LLM_Q8_0] = { "q8_0", LLM_QK8_0, sizeof(struct llm_block_q8_0), llm_quantize_row_q8_0_ref, llm_dequantize_row_q8_0 },
  [LLM_Q4_0] = { "q4_0", LLM_QK4_0, sizeof(struct llm_block_q4_0), llm_quantize_row_q4_0_ref, llm_dequantize_row_q4_0 },
  [LLM_Q2_K] = { "q2_K", LLM_QK_K, sizeof(struct llm_block_q2_K), llm_quantize_row_q2_K_ref, llm_dequantize_row_q2_K },
  [LLM_Q3_K] = { "q3_K", LLM_QK_K, sizeof(struct llm_block_q3_K), llm_quantize_row_q3_K_ref, llm_dequantize_row_q3_K },
  [LLM_Q4_1] = { "q4_1", LLM_QK4_0, sizeof(struct llm_block_q4_1), llm_quantize_row_q4_1_ref, llm_dequantize_row_q4_1 },
  [LLM_Q5_0] = { "q5_0", LLM_QK4_0, sizeof(struct llm_block_q5_0), llm_quantize_row_q5_0_ref, llm_dequantize_row_q5_0 },
  [LLM_Q5_1] = { "q5_1", LLM_QK4_0, sizeof(struct llm_block_q5_1), llm_quantize_row_q5_1_ref, llm_dequantize_row_q5_1 },
  [LLM_Q4_K] = { "q4_K", LLM_QK_K, sizeof(struct llm_block_q4_K), llm_quantize_row_q4_K_ref, llm_dequantize_row_q4_K },
  [LLM_Q5_K] = { "q5_K", LLM_QK_K, sizeof(struct llm_block_q5_K), llm_quantize_row_q5_K_ref, llm_dequantize_row_q5_K },
  [LLM_Q6_K] = { "q6_K", LLM_QK_K, sizeof(struct llm_block_q6_K), llm_quantize_row_q6_K_ref, llm_dequantize_row_q6_K },
};

/* NULL for codes outside the enum and for the gaps between its codes (types the engine does not compute with). */
static const struct type_info *info(int type) {
  return type >= 0 && type < LLM_TYPE_COUNT && TYPES[type].name ? &TYPES[type] : NULL;
}

int llm_type_block_size(int type) { return info(type) ? info(type)->block_size : 0; }
size_t llm_type_block_bytes(int type) { return info(type) ? info(type)->block_bytes : 0; }
const char *llm_type_name(int type) { return info(type) ? info(type)->name : "unknown"; }

void llm_format_type_list(char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int type = 0; type < LLM_TYPE_COUNT && used < size; type++)
    if (info(type)) used += (size_t)snprintf(buf + used, size - used, used ? ", %d %s" : "%d %s", type, TYPES[type].name);
}

size_t llm_row_bytes(int type, int64_t cols) {
  const struct type_info *t = info(type);
  if (!t || cols < 0 || cols % t->block_size != 0) return 0;
  return (size_t)(cols / t->block_size) * t->block_bytes;
}

void llm_quantize_row(enum llm_type type, const float *x, void *y, int64_t n) { TYPES[type].quantize(x, y, n); }
void llm_dequantize_row(enum llm_type type, const void *x, float *y, int64_t n) { TYPES[type].dequantize(x, y, n); }

/* IEEE half to single, exact for every input including subnormals, infinities and NaN. */
float llm_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    /* Subnormal: normalise the mantissa. */
    exponent = 113;
    while (!(mantissa & 0x400)) {
      mantissa <<= 1;
      exponent--;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* Single to half, round to nearest even (what F16C's vcvtps2ph does with rounding mode 0, and so what ggml stores
 * for every block scale). */
uint16_t llm_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t abs = u & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00 | (uint16_t)((abs >> 13) & 0x3ff); /* NaN stays NaN */
  if (abs >= 0x477ff000) return sign | 0x7c00; /* rounds to >= 65520: infinity */
  if (abs < 0x38800000) {
    /* Result is subnormal (or zero): value / 2^-24 rounded to nearest even. */
    if (abs < 0x33000000) return sign; /* below half the smallest subnormal */
    uint32_t mantissa = (abs & 0x7fffff) | 0x800000;
    int shift = 126 - (int)(abs >> 23); /* 14..24: value = mantissa * 2^(e-150), unit 2^-24 */
    uint32_t rounded = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (rounded & 1))) rounded++;
    return sign | (uint16_t)rounded;
  }
  uint32_t h = ((abs >> 13) - (112u << 10)); /* rebias exponent, keep 10 mantissa bits */
  uint32_t rest = abs & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* a carry into the exponent is still correct */
  return sign | (uint16_t)h;
}

uint16_t llm_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}
