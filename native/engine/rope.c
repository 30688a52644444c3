#include <math.h>
#include <string.h>

#include "ops.h"

/* Rotary embedding of every head of one token. The two checkpoint layouts pair different elements: "interleaved"
 * (Meta, GGUF, llama2.c) rotates (2i, 2i+1), "half" (HF rotate_half) rotates (i, i + head_dim/2). Queries and keys
 * are only ever used through q·k, which does not care about element order as long as q and k share it, so both
 * layouts store the rotated pair i at (2i, 2i+1). Attention then sums the same products in the same order, and a
 * model gives bit-identical logits from its HF checkpoint and from a GGUF conversion of it. */
void llm_rope(float *vec, int n_heads, int head_dim, int pos, const float *freqs, bool interleaved) {
  const int half = head_dim / 2;
  float cos_theta[LLM_MAX_HEAD_DIM / 2], sin_theta[LLM_MAX_HEAD_DIM / 2], rotated[LLM_MAX_HEAD_DIM];
  for (int i = 0; i < half; i++) {
    float angle = (float)pos * freqs[i];
    cos_theta[i] = cosf(angle);
    sin_theta[i] = sinf(angle);
  }
  for (int h = 0; h < n_heads; h++) {
    float *head = vec + (int64_t)h * head_dim;
    for (int i = 0; i < half; i++) {
      float x0 = head[interleaved ? 2 * i : i], x1 = head[interleaved ? 2 * i + 1 : i + half];
      rotated[2 * i] = x0 * cos_theta[i] - x1 * sin_theta[i];
      rotated[2 * i + 1] = x1 * cos_theta[i] + x0 * sin_theta[i];
    }
    memcpy(head, rotated, (size_t)head_dim * sizeof(float));
  }
}
