#include <math.h>

#include "ops.h"

void llm_rope(float *vec, int n_heads, int head_dim, int pos, const float *freqs, bool interleaved) {
  int half = head_dim / 2;
  for (int i = 0; i < half; i++) {
    float angle = (float)pos * freqs[i];
    float c = cosf(angle), s = sinf(angle);
    for (int h = 0; h < n_heads; h++) {
      float *head = vec + (int64_t)h * head_dim;
      int a = interleaved ? 2 * i : i;
      int b = interleaved ? 2 * i + 1 : i + half;
      float x0 = head[a], x1 = head[b];
      head[a] = x0 * c - x1 * s;
      head[b] = x1 * c + x0 * s;
    }
  }
}
