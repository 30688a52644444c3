#include "tensor.h"

#include <string.h>

size_t llm_type_size(int type) {
  switch (type) {
  case LLM_F32: return 4;
  case LLM_F16: return 2;
  case LLM_BF16: return 2;
  default: return 0;
  }
}

const char *llm_type_name(int type) {
  switch (type) {
  case LLM_F32: return "f32";
  case LLM_F16: return "f16";
  case LLM_BF16: return "bf16";
  default: return "unknown";
  }
}

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
