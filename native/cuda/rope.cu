// Rotary embedding of q and k (llm_rope) and the store of k and v into the KV pool at each row's position. One
// block per (row, head): the head is rotated (or, for v, copied) into shared memory, then written back in place
// (q) or stored in the pool's type (kv_pool.cuh). A decode pass rotates and stores in its attention kernel instead.
// Without freqs, q and k come rotated already (by a custom op library's RoPE): only k and v are stored.
#include "kv_pool.cuh"
#include "rope.cuh"

namespace {

constexpr int kThreads = 128; // whole warps: the q8_0 store quantizes a block of 32 values per warp

// blockIdx.y: q heads [0, n_heads), then k heads, then v heads.
template <int Type>
__global__ void __launch_bounds__(kThreads) rope_store_kernel(float *q, const float *k, const float *v, const cuda_row *rows, cuda_kv kv,
                                                              int layer, int n_heads, int n_kv_heads, int head_dim, const float *freqs,
                                                              bool interleaved) {
  __shared__ __align__(16) float head_out[LLM_CUDA_MAX_HEAD_DIM];
  const int row = blockIdx.x, head = blockIdx.y;
  const cuda_row info = rows[row];
  const int64_t kv_dim = (int64_t)n_kv_heads * head_dim;
  const bool is_value = head >= n_heads + n_kv_heads;
  const int kv_head = is_value ? head - n_heads - n_kv_heads : head - n_heads;
  if (head < n_heads) {
    if (!freqs) return;
    rope_head(head_out, q + ((int64_t)row * n_heads + head) * head_dim, head_dim, interleaved, info.pos, freqs);
  } else if (!is_value && freqs) {
    rope_head(head_out, k + row * kv_dim + kv_head * head_dim, head_dim, interleaved, info.pos, freqs);
  } else {
    const float *src = (is_value ? v : k) + row * kv_dim + kv_head * head_dim;
    for (int i = threadIdx.x; i < head_dim; i += kThreads) head_out[i] = src[i];
  }
  __syncthreads(); // q rotates in place: every pair is read before any is written
  if (head < n_heads) {
    float *dst = q + ((int64_t)row * n_heads + head) * head_dim;
    for (int i = threadIdx.x; i < head_dim; i += kThreads) dst[i] = head_out[i];
    return;
  }
  const int32_t block = kv.block_table[info.blocks + info.pos / LLM_KV_BLOCK_TOKENS];
  const size_t offset = kv_row_offset(kv, block, layer, info.pos) + kv_head * (kv.row_bytes / n_kv_heads);
  KvFormat<Type>::store((is_value ? kv.values : kv.keys) + offset, head_out, head_dim);
}

} // namespace

cudaError_t launch_rope_store(float *q, const float *k, const float *v, const cuda_row *rows, int n_rows, const cuda_kv &kv, int layer,
                              int n_heads, int n_kv_heads, int head_dim, const float *freqs, bool interleaved,
                              cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  if (!cuda_kv_supported(kv, n_kv_heads, head_dim) || head_dim > LLM_CUDA_MAX_HEAD_DIM || head_dim % 2 != 0)
    return cudaErrorInvalidValue;
  const dim3 grid(n_rows, n_heads + 2 * n_kv_heads);
  return with_kv_type(kv.type, [&](auto type) {
    rope_store_kernel<decltype(type)::value><<<grid, kThreads, 0, stream>>>(q, k, v, rows, kv, layer, n_heads, n_kv_heads, head_dim,
                                                                             freqs, interleaved);
    return cudaGetLastError();
  });
}
