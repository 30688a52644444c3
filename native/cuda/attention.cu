// Causal grouped-query attention (llm_attention), split-K in the flash-decoding manner: the positions 0..pos a
// query sees are cut into chunks of ATTENTION_CHUNK; one block per (row, head, chunk) scores its chunk (one thread
// per key, the query in shared memory), takes the chunk's softmax numerators and their weighted sum of values,
// and a second kernel merges the chunks with their maxima. A long context becomes many blocks even for one
// decoded token; a prompt's queries are just more rows.
#include "kernels.cuh"

namespace {

constexpr int kThreads = 128;

// `partial` holds, per (row, head, chunk) in this order, the chunk's max score and its sum of exp(score - max);
// after all of those, per (row, head, chunk), the head_dim sums of exp(score - max) * value.
__host__ __device__ inline int64_t partial_index(int row, int head, int chunk, int n_heads, int n_chunks) {
  return ((int64_t)row * n_heads + head) * n_chunks + chunk;
}

__device__ float block_reduce(float v, bool is_max, float *scratch) {
  v = is_max ? warp_max(v) : warp_sum(v);
  if (threadIdx.x % LLM_CUDA_WARP == 0) scratch[threadIdx.x / LLM_CUDA_WARP] = v;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < kThreads / LLM_CUDA_WARP; w++) r = is_max ? fmaxf(r, scratch[w]) : r + scratch[w];
  __syncthreads();
  return r;
}

__global__ void __launch_bounds__(kThreads) attention_chunk_kernel(const float *q, const cuda_row *rows, int layer, int n_heads,
                                                                   int n_kv_heads, int head_dim, int n_chunks, float *partial,
                                                                   const uint8_t *row_tiled) {
  const int row = blockIdx.x, head = blockIdx.y, chunk = blockIdx.z;
  if (row_tiled && row_tiled[row]) return;
  const cuda_row info = rows[row];
  const int begin = chunk * ATTENTION_CHUNK, end = min(begin + ATTENTION_CHUNK, info.pos + 1);
  const int64_t index = partial_index(row, head, chunk, n_heads, n_chunks);
  float *stats = partial + index * 2;
  if (begin >= end) { // a chunk past this query's position (chunks are sized for the longest row)
    if (threadIdx.x == 0) {
      stats[0] = -INFINITY;
      stats[1] = 0.0f;
    }
    return;
  }
  __shared__ float q_head[LLM_CUDA_MAX_HEAD_DIM];
  __shared__ float scores[ATTENTION_CHUNK];
  __shared__ float scratch[kThreads / LLM_CUDA_WARP];
  const int64_t kv_dim = (int64_t)n_kv_heads * head_dim;
  const int kv_head = head / (n_heads / n_kv_heads);
  const float *qh = q + ((int64_t)row * n_heads + head) * head_dim;
  for (int i = threadIdx.x; i < head_dim; i += kThreads) q_head[i] = qh[i];
  __syncthreads();

  const float scale = 1.0f / sqrtf((float)head_dim);
  const float *keys = info.keys + layer * info.layer_stride + kv_head * head_dim;
  float local_max = -INFINITY;
  for (int p = begin + threadIdx.x; p < end; p += kThreads) {
    const float *key = keys + p * kv_dim;
    float dot = 0.0f;
    if (head_dim % 4 == 0) {
      for (int i = 0; i < head_dim; i += 4) {
        const float4 k4 = *reinterpret_cast<const float4 *>(key + i);
        dot += q_head[i] * k4.x + q_head[i + 1] * k4.y + q_head[i + 2] * k4.z + q_head[i + 3] * k4.w;
      }
    } else {
      for (int i = 0; i < head_dim; i++) dot += q_head[i] * key[i];
    }
    scores[p - begin] = dot * scale;
    local_max = fmaxf(local_max, dot * scale);
  }
  const float max = block_reduce(local_max, true, scratch);
  float local_sum = 0.0f;
  for (int p = threadIdx.x; p < end - begin; p += kThreads) {
    scores[p] = expf(scores[p] - max);
    local_sum += scores[p];
  }
  const float sum = block_reduce(local_sum, false, scratch); // its barrier also publishes the exponentials

  const float *values = info.values + layer * info.layer_stride + kv_head * head_dim;
  float *out = partial + (int64_t)gridDim.x * n_heads * n_chunks * 2 + index * head_dim;
  // Eight independent sums per thread, so that eight positions' values are loaded at once (one running sum: decode
  // measured 2% slower, bench/RESULTS.md).
  for (int i = threadIdx.x; i < head_dim; i += kThreads) {
    float acc[8] = {};
    int p = begin;
    for (; p + 8 <= end; p += 8)
#pragma unroll
      for (int j = 0; j < 8; j++) acc[j] += scores[p + j - begin] * values[(p + j) * kv_dim + i];
    for (; p < end; p++) acc[0] += scores[p - begin] * values[p * kv_dim + i];
    out[i] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
  if (threadIdx.x == 0) {
    stats[0] = max;
    stats[1] = sum;
  }
}

// With quantized, the rows also go out as q8_0 activations (each warp's 32 values of a step are one block).
__global__ void attention_merge_kernel(float *out, const float *partial, int n_rows, int n_heads, int head_dim, int n_chunks,
                                       const uint8_t *row_tiled, act_q8_0 *quantized) {
  const int row = blockIdx.x, head = blockIdx.y;
  if (row_tiled && row_tiled[row]) return;
  const float *stats = partial + partial_index(row, head, 0, n_heads, n_chunks) * 2;
  const float *values = partial + (int64_t)n_rows * n_heads * n_chunks * 2 + partial_index(row, head, 0, n_heads, n_chunks) * head_dim;
  float max = -INFINITY;
  for (int c = 0; c < n_chunks; c++) max = fmaxf(max, stats[2 * c]);
  float sum = 0.0f;
  for (int c = 0; c < n_chunks; c++)
    if (stats[2 * c + 1] > 0.0f) sum += stats[2 * c + 1] * expf(stats[2 * c] - max);
  const float inv_sum = 1.0f / sum;
  float *o = out + ((int64_t)row * n_heads + head) * head_dim;
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float acc = 0.0f;
    for (int c = 0; c < n_chunks; c++)
      if (stats[2 * c + 1] > 0.0f) acc += values[(int64_t)c * head_dim + i] * expf(stats[2 * c] - max);
    o[i] = acc * inv_sum;
    if (quantized) quantize_warp_q8_0(o[i], quantized[(((int64_t)row * n_heads + head) * head_dim + i) / 32]);
  }
}

} // namespace

size_t attention_partial_floats(int n_rows, int n_heads, int head_dim, int n_chunks) {
  return (size_t)n_rows * n_heads * n_chunks * (size_t)(head_dim + 2);
}

cudaError_t launch_attention(float *out, const float *q, const cuda_row *rows, int n_rows, int layer, int n_heads,
                             int n_kv_heads, int head_dim, int n_chunks, float *partial, const uint8_t *row_tiled,
                             cudaStream_t stream, act_q8_0 *quantized) {
  if (n_rows == 0) return cudaSuccess;
  if (n_chunks < 1 || n_chunks > 65535 || n_heads > 65535 || head_dim > LLM_CUDA_MAX_HEAD_DIM) return cudaErrorInvalidValue;
  const int merge_threads = head_dim < kThreads ? head_dim : kThreads;
  if (quantized && (head_dim % LLM_CUDA_WARP != 0 || row_tiled)) return cudaErrorInvalidValue;
  attention_chunk_kernel<<<dim3(n_rows, n_heads, n_chunks), kThreads, 0, stream>>>(q, rows, layer, n_heads, n_kv_heads,
                                                                                    head_dim, n_chunks, partial, row_tiled);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  attention_merge_kernel<<<dim3(n_rows, n_heads), merge_threads, 0, stream>>>(out, partial, n_rows, n_heads, head_dim,
                                                                             n_chunks, row_tiled, quantized);
  return cudaGetLastError();
}
