/* The standard RoPE of rope.c for models on a CUDA GPU as well: the same CPU function, plus the launcher the CUDA
 * backend calls (llama_napi_rope_cuda), which rotates every head of every row in one kernel, with the same
 * rotate_head.
 *
 *   npx llama-napi build-op rope_cuda.cu -o rope_cuda.so          # nvcc
 *   npx llama-napi run -m MODEL --device cuda --custom-ops-path ./rope_cuda.so --enable-custom-rope-kernel */
#include <cuda_runtime.h>

#include "rotary.h"

uint32_t llama_napi_ops_abi_version(void) { return LLAMA_NAPI_OPS_ABI_VERSION; }

void llama_napi_rope(float *q, float *k, const int32_t *positions, int n_rows, int n_heads, int n_kv_heads,
                     int head_dim, const float *freqs, int interleaved) {
  rotate_rows(q, k, positions, n_rows, n_heads, n_kv_heads, head_dim, freqs, interleaved);
}

/* A thread per head of a row, through the rotation of rotary.h: clear rather than fast (each thread keeps its
 * head's rotated values in local memory). blockIdx.x: the row; threads: the q heads, then the k heads. */
__global__ void rope_kernel(float *q, float *k, const int32_t *positions, int n_heads, int n_kv_heads, int head_dim,
                            const float *freqs, int interleaved) {
  const int row = blockIdx.x;
  for (int head = threadIdx.x; head < n_heads + n_kv_heads; head += blockDim.x) {
    float *values = head < n_heads ? q + ((int64_t)row * n_heads + head) * head_dim
                                   : k + ((int64_t)row * n_kv_heads + head - n_heads) * head_dim;
    rotate_head(values, head_dim, positions[row], freqs, interleaved);
  }
}

int llama_napi_rope_cuda(float *q, float *k, const int32_t *positions, int n_rows, int n_heads, int n_kv_heads,
                         int head_dim, const float *freqs, int interleaved, void *stream) {
  rope_kernel<<<n_rows, 64, 0, (cudaStream_t)stream>>>(q, k, positions, n_heads, n_kv_heads, head_dim, freqs, interleaved);
  return (int)cudaGetLastError();
}
