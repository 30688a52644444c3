/* The rotary embedding's rotation, shared by rope.c (the standard RoPE) and ntk_rope.c (NTK-aware scaled RoPE),
 * which differ only in the frequencies they turn by, and by rope_cuda.cu on the GPU. Written for clarity, not speed. */
#ifndef CUSTOM_ROPE_ROTARY_H
#define CUSTOM_ROPE_ROTARY_H

#include <math.h>
#include <string.h>

#include "llama_napi_ops.h"

/* The largest head the engine passes (llama_napi_ops.h): one head's rotated values fit on the stack. */
#define MAX_HEAD_DIM 1024

/* Under nvcc the rotation also compiles for the GPU (rope_cuda.cu's kernel calls rotate_head). */
#ifdef __CUDACC__
#define ROTARY_FN static __host__ __device__
#else
#define ROTARY_FN static
#endif

/* Rotates one head of head_dim values for `position`: pair i turns by the angle position * freqs[i]. The input
 * pair i is (2i, 2i + 1) when interleaved, else (i, i + head_dim / 2); the output pair i is always (2i, 2i + 1),
 * as the engine's attention expects. */
ROTARY_FN void rotate_head(float *head, int head_dim, int32_t position, const float *freqs, int interleaved) {
  const int half = head_dim / 2;
  float rotated[MAX_HEAD_DIM];
  for (int i = 0; i < half; i++) {
    const float x0 = interleaved ? head[2 * i] : head[i];
    const float x1 = interleaved ? head[2 * i + 1] : head[i + half];
    const float angle = (float)position * freqs[i];
    const float cos_angle = cosf(angle), sin_angle = sinf(angle);
    rotated[2 * i] = x0 * cos_angle - x1 * sin_angle;
    rotated[2 * i + 1] = x1 * cos_angle + x0 * sin_angle;
  }
  memcpy(head, rotated, (size_t)head_dim * sizeof(float));
}

/* Every head of q and k of every row, each row at its own position. */
ROTARY_FN void rotate_rows(float *q, float *k, const int32_t *positions, int n_rows, int n_heads, int n_kv_heads,
                        int head_dim, const float *freqs, int interleaved) {
  for (int row = 0; row < n_rows; row++) {
    for (int h = 0; h < n_heads; h++)
      rotate_head(q + ((int64_t)row * n_heads + h) * head_dim, head_dim, positions[row], freqs, interleaved);
    for (int h = 0; h < n_kv_heads; h++)
      rotate_head(k + ((int64_t)row * n_kv_heads + h) * head_dim, head_dim, positions[row], freqs, interleaved);
  }
}

#endif
