// Rotary embedding of q and k (llm_rope) and the store of k and v into each row's KV cache. One block per (row,
// head), one thread per rotated pair (rope.cuh). A decode pass rotates in its attention kernel instead.
#include "kernels.cuh"
#include "rope.cuh"

namespace {

__device__ __forceinline__ void rotate_pair(const float *head, float *out, int i, int half, bool interleaved, int pos, float freq) {
  const float2 rotated = rope_pair(head, i, half, interleaved, pos, freq);
  __syncthreads(); // q rotates in place: every pair is read before any is written
  out[2 * i] = rotated.x;
  out[2 * i + 1] = rotated.y;
}

// blockIdx.y: q heads [0, n_heads), then k heads, then v heads.
__global__ void rope_store_kernel(float *q, const float *k, const float *v, const cuda_row *rows, int layer, int n_heads,
                                  int n_kv_heads, int head_dim, const float *freqs, bool interleaved) {
  const int row = blockIdx.x, head = blockIdx.y, i = threadIdx.x, half = head_dim / 2;
  const cuda_row info = rows[row];
  const int64_t kv_dim = (int64_t)n_kv_heads * head_dim;
  const int64_t cache_offset = layer * info.layer_stride + (int64_t)info.pos * kv_dim;
  if (head < n_heads) {
    float *h = q + ((int64_t)row * n_heads + head) * head_dim;
    rotate_pair(h, h, i, half, interleaved, info.pos, freqs[i]);
  } else if (head < n_heads + n_kv_heads) {
    const int kv_head = head - n_heads;
    rotate_pair(k + row * kv_dim + kv_head * head_dim, info.keys + cache_offset + kv_head * head_dim, i, half,
                interleaved, info.pos, freqs[i]);
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
