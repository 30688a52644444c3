// Rotary embedding of q and k (llm_rope) and the store of k and v into each row's KV cache. One block per (row,
// head), one thread per rotated pair. As on the CPU, the output is in interleaved pair order whatever the input
// layout, and the angle and the rotation are rounded step by step (the CPU is compiled without contraction).
#include "kernels.cuh"

namespace {

__device__ __forceinline__ void rotate_pair(const float *head, float *out, int i, int half, bool interleaved, float angle) {
  const float x0 = head[interleaved ? 2 * i : i], x1 = head[interleaved ? 2 * i + 1 : i + half];
  const float c = cosf(angle), s = sinf(angle);
  __syncthreads(); // q rotates in place: every pair is read before any is written
  out[2 * i] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
  out[2 * i + 1] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
}

// blockIdx.y: q heads [0, n_heads), then k heads, then v heads.
__global__ void rope_store_kernel(float *q, const float *k, const float *v, const cuda_row *rows, int layer, int n_heads,
                                  int n_kv_heads, int head_dim, const float *freqs, bool interleaved) {
  const int row = blockIdx.x, head = blockIdx.y, i = threadIdx.x, half = head_dim / 2;
  const cuda_row info = rows[row];
  const int64_t kv_dim = (int64_t)n_kv_heads * head_dim;
  const int64_t cache_offset = layer * info.layer_stride + (int64_t)info.pos * kv_dim;
  const float angle = __fmul_rn((float)info.pos, freqs[i]);
  if (head < n_heads) {
    float *h = q + ((int64_t)row * n_heads + head) * head_dim;
    rotate_pair(h, h, i, half, interleaved, angle);
  } else if (head < n_heads + n_kv_heads) {
    const int kv_head = head - n_heads;
    rotate_pair(k + row * kv_dim + kv_head * head_dim, info.keys + cache_offset + kv_head * head_dim, i, half,
                interleaved, angle);
  } else {
    const int64_t offset = (int64_t)(head - n_heads - n_kv_heads) * head_dim + 2 * i;
    info.values[cache_offset + offset] = v[row * kv_dim + offset];
    info.values[cache_offset + offset + 1] = v[row * kv_dim + offset + 1];
  }
}

} // namespace

cudaError_t launch_rope_store(float *q, const float *k, const float *v, const cuda_row *rows, int n_rows, int layer,
                              int n_heads, int n_kv_heads, int head_dim, const float *freqs, bool interleaved,
                              cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  const dim3 grid(n_rows, n_heads + 2 * n_kv_heads);
  rope_store_kernel<<<grid, head_dim / 2, 0, stream>>>(q, k, v, rows, layer, n_heads, n_kv_heads, head_dim, freqs, interleaved);
  return cudaGetLastError();
}
