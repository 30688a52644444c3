// Causal grouped-query attention (llm_attention), split-K in the flash-decoding manner: the positions 0..pos a
// query sees are cut into chunks of ATTENTION_CHUNK; one block per (row, head, chunk) scores its chunk, takes the
// chunk's softmax numerators and their weighted sum of values, and a second kernel merges the chunks with their
// maxima. A long context becomes many blocks even for one decoded token; a prompt's queries are just more rows.
// With one chunk there is nothing to merge: the chunk's block writes the output. A decode pass also leaves the
// rotary embedding and the cache store to the chunk blocks (attention_rope): each of those saves a kernel per layer.
//
// Within a block, a warp takes a key (or a value) at a time, its lanes across the head, and each lane has
// kInFlight positions' loads in flight: a decode step's cache reads come from DRAM, and with a thread per key (the
// first version) their latency, not bandwidth, set the time: 11.5 us per layer at 26 positions (ncu, 7B), 8.3 now.
#include "kv_pool.cuh"
#include "rope.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / LLM_CUDA_WARP;
constexpr int kInFlight = 8;

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

// The output of (row, head): out[i] = sum[i] / denominator, and with quantized those values as q8_0 activations
// (each warp's 32 values of a step are one block, head_dim a multiple of 32). The merge of several chunks and a
// lone chunk end here alike.
__device__ __forceinline__ void store_head(float *out, act_q8_0 *quantized, int row, int head, int n_heads, int head_dim,
                                           int i, float sum, float denominator_inverse) {
  const int64_t index = ((int64_t)row * n_heads + head) * head_dim + i;
  out[index] = sum * denominator_inverse;
  if (quantized) quantize_warp_q8_0(out[index], quantized[index / 32]);
}

// A head as vectors of V floats (V = 4: 16-byte loads of f32 rows, 8-byte loads of f16, where head_dim allows),
// vector j in lane j % 32; load widens vector j of a pool row's head.
template <int V> struct HeadVector;
template <> struct HeadVector<4> {
  using T = float4;
  template <int Type> __device__ static float4 load(const uint8_t *head, int j) { return KvFormat<Type>::load4(head, j); }
  __device__ static float dot(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }
  __device__ static void add_scaled(float4 &acc, float s, float4 v) {
    acc.x += s * v.x;
    acc.y += s * v.y;
    acc.z += s * v.z;
    acc.w += s * v.w;
  }
};
template <> struct HeadVector<1> {
  using T = float;
  template <int Type> __device__ static float load(const uint8_t *head, int j) { return KvFormat<Type>::load1(head, j); }
  __device__ static float dot(float a, float b) { return a * b; }
  __device__ static void add_scaled(float &acc, float s, float v) { acc += s * v; }
};

// rope.freqs set (a decode pass, each row its own sequence): q and k as the products left them; each block rotates
// its query, and the blocks of the chunk that holds the row's position store its rotated key and its value into
// the pool first (every query head of a group writes the same bits), so they read them back like the others.
// n_chunks == 1: the block writes the output itself (as the merge would: the same operations on the same values).
template <int V, int Type>
__global__ void __launch_bounds__(kThreads) attention_chunk_kernel(const float *q, const cuda_row *rows, cuda_kv kv, int layer,
                                                                   int n_heads, int n_kv_heads, int head_dim, int n_chunks,
                                                                   float *partial, const uint8_t *row_tiled, attention_rope rope,
                                                                   float *out, act_q8_0 *quantized) {
  using Vec = typename HeadVector<V>::T;
  constexpr int kMaxVectorsPerLane = LLM_CUDA_MAX_HEAD_DIM / V / LLM_CUDA_WARP;
  constexpr int kChunkBlocks = ATTENTION_CHUNK / LLM_KV_BLOCK_TOKENS;
  const int row = blockIdx.x, head = blockIdx.y, chunk = blockIdx.z;
  const int warp = threadIdx.x / LLM_CUDA_WARP, lane = threadIdx.x % LLM_CUDA_WARP;
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
  __shared__ __align__(16) float q_head[LLM_CUDA_MAX_HEAD_DIM];
  __shared__ float scores[ATTENTION_CHUNK];
  __shared__ __align__(16) float warp_sums[kWarps][LLM_CUDA_MAX_HEAD_DIM];
  __shared__ float scratch[kWarps];
  __shared__ int32_t chunk_blocks[kChunkBlocks]; // the pool blocks of positions begin .. end - 1
  const int64_t kv_dim = (int64_t)n_kv_heads * head_dim;
  const int kv_head = head / (n_heads / n_kv_heads);
  const size_t head_offset = kv_head * (kv.row_bytes / n_kv_heads);
  const float *qh = q + ((int64_t)row * n_heads + head) * head_dim;
  const int32_t *table = kv.block_table + info.blocks;
  for (int i = threadIdx.x; i < (end - begin + LLM_KV_BLOCK_TOKENS - 1) / LLM_KV_BLOCK_TOKENS; i += kThreads)
    chunk_blocks[i] = table[begin / LLM_KV_BLOCK_TOKENS + i];
  const bool store = rope.freqs && info.pos < end;
  if (rope.freqs) {
    rope_head(q_head, qh, head_dim, rope.interleaved, info.pos, rope.freqs);
    if (store) { // the new key and value wait in the first two warps' sums, unused until the values
      const int64_t kv_offset = row * kv_dim + kv_head * head_dim;
      rope_head(warp_sums[0], rope.k + kv_offset, head_dim, rope.interleaved, info.pos, rope.freqs);
      for (int i = threadIdx.x; i < head_dim; i += kThreads) warp_sums[1][i] = rope.v[kv_offset + i];
    }
  } else {
    for (int i = threadIdx.x; i < head_dim; i += kThreads) q_head[i] = qh[i];
  }
  __syncthreads();
  if (store) {
    const size_t offset = kv_row_offset(kv, chunk_blocks[(info.pos - begin) / LLM_KV_BLOCK_TOKENS], layer, info.pos) + head_offset;
    KvFormat<Type>::store(kv.keys + offset, warp_sums[0], head_dim);
    KvFormat<Type>::store(kv.values + offset, warp_sums[1], head_dim);
    __syncthreads(); // makes this block's pool stores visible to all its threads
  }

  // Position p's row of this layer, at this head.
  auto position_offset = [&](int p) {
    return kv_row_offset(kv, chunk_blocks[(p - begin) / LLM_KV_BLOCK_TOKENS], layer, p) + head_offset;
  };

  // Scores: warp w takes the keys begin + w, + kWarps, ..., kInFlight of them at a time.
  const int n_vectors = head_dim / V;
  const Vec *q_vectors = reinterpret_cast<const Vec *>(q_head);
  const float scale = 1.0f / sqrtf((float)head_dim);
  float local_max = -INFINITY;
  for (int p0 = begin + warp; p0 < end; p0 += kWarps * kInFlight) {
    float dots[kInFlight] = {};
    const uint8_t *keys[kInFlight];
#pragma unroll
    for (int g = 0; g < kInFlight; g++) {
      const int p = p0 + g * kWarps;
      keys[g] = p < end ? kv.keys + position_offset(p) : nullptr;
    }
    for (int j = lane; j < n_vectors; j += LLM_CUDA_WARP) {
      const Vec qv = q_vectors[j];
#pragma unroll
      for (int g = 0; g < kInFlight; g++)
        if (p0 + g * kWarps < end) dots[g] += HeadVector<V>::dot(qv, HeadVector<V>::template load<Type>(keys[g], j));
    }
#pragma unroll
    for (int g = 0; g < kInFlight; g++) {
      const int p = p0 + g * kWarps;
      const float score = warp_sum(dots[g]) * scale; // the same in every lane
      if (p < end) {
        local_max = fmaxf(local_max, score);
        if (lane == 0) scores[p - begin] = score;
      }
    }
  }
  const float max = block_reduce(local_max, true, scratch);
  float local_sum = 0.0f;
  for (int p = threadIdx.x; p < end - begin; p += kThreads) {
    scores[p] = expf(scores[p] - max);
    local_sum += scores[p];
  }
  const float sum = block_reduce(local_sum, false, scratch); // its barrier also publishes the exponentials

  // Weighted values: warp w sums its positions (as for the keys) into its own row of warp_sums, then the warps'
  // rows are added in warp order.
#pragma unroll
  for (int k = 0; k < kMaxVectorsPerLane; k++) {
    const int j = lane + k * LLM_CUDA_WARP;
    if (j >= n_vectors) break;
    Vec acc = {};
    for (int p0 = begin + warp; p0 < end; p0 += kWarps * kInFlight) {
      Vec v[kInFlight];
#pragma unroll
      for (int g = 0; g < kInFlight; g++) {
        const int p = p0 + g * kWarps;
        if (p < end) v[g] = HeadVector<V>::template load<Type>(kv.values + position_offset(p), j);
      }
#pragma unroll
      for (int g = 0; g < kInFlight; g++) {
        const int p = p0 + g * kWarps;
        if (p < end) HeadVector<V>::add_scaled(acc, scores[p - begin], v[g]);
      }
    }
    reinterpret_cast<Vec *>(warp_sums[warp])[j] = acc;
  }
  __syncthreads();
  float *partial_out = partial + (int64_t)gridDim.x * n_heads * n_chunks * 2 + index * head_dim;
  for (int i = threadIdx.x; i < head_dim; i += kThreads) {
    float weighted = warp_sums[0][i];
#pragma unroll
    for (int w = 1; w < kWarps; w++) weighted += warp_sums[w][i];
    if (n_chunks == 1)
      store_head(out, quantized, row, head, n_heads, head_dim, i, weighted, 1.0f / sum);
    else
      partial_out[i] = weighted;
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
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float acc = 0.0f;
    for (int c = 0; c < n_chunks; c++)
      if (stats[2 * c + 1] > 0.0f) acc += values[(int64_t)c * head_dim + i] * expf(stats[2 * c] - max);
    store_head(out, quantized, row, head, n_heads, head_dim, i, acc, inv_sum);
  }
}

} // namespace

size_t attention_partial_floats(int n_rows, int n_heads, int head_dim, int n_chunks) {
  return (size_t)n_rows * n_heads * n_chunks * (size_t)(head_dim + 2);
}

bool cuda_kv_supported(const cuda_kv &kv, int n_kv_heads, int head_dim) {
  const bool known = kv.type == LLM_KV_F32 || kv.type == LLM_KV_F16 || (kv.type == LLM_KV_Q8_0 && head_dim % 32 == 0);
  return known && kv.keys && kv.values && kv.block_table && kv.n_blocks > 0 && n_kv_heads > 0 &&
         kv.row_bytes == llm_kv_row_bytes((llm_kv_type)kv.type, (int64_t)n_kv_heads * head_dim);
}

cudaError_t launch_attention(float *out, const float *q, const cuda_row *rows, int n_rows, const cuda_kv &kv, int layer, int n_heads,
                             int n_kv_heads, int head_dim, int n_chunks, float *partial, const uint8_t *row_tiled,
                             cudaStream_t stream, act_q8_0 *quantized, attention_rope rope) {
  if (n_rows == 0) return cudaSuccess;
  if (n_chunks < 1 || n_chunks > 65535 || n_heads > 65535 || head_dim > LLM_CUDA_MAX_HEAD_DIM) return cudaErrorInvalidValue;
  if (!cuda_kv_supported(kv, n_kv_heads, head_dim)) return cudaErrorInvalidValue;
  if (quantized && (head_dim % LLM_CUDA_WARP != 0 || row_tiled)) return cudaErrorInvalidValue;
  if (rope.freqs && (row_tiled || head_dim % 2 != 0)) return cudaErrorInvalidValue;
  const dim3 grid(n_rows, n_heads, n_chunks);
  const cudaError_t launched = with_kv_type(kv.type, [&](auto type) {
    constexpr int kType = decltype(type)::value;
    if (head_dim % 4 == 0)
      attention_chunk_kernel<4, kType><<<grid, kThreads, 0, stream>>>(q, rows, kv, layer, n_heads, n_kv_heads, head_dim, n_chunks,
                                                                      partial, row_tiled, rope, out, quantized);
    else
      attention_chunk_kernel<1, kType><<<grid, kThreads, 0, stream>>>(q, rows, kv, layer, n_heads, n_kv_heads, head_dim, n_chunks,
                                                                      partial, row_tiled, rope, out, quantized);
    return cudaGetLastError();
  });
  if (launched != cudaSuccess || n_chunks == 1) return launched;
  const int merge_threads = head_dim < kThreads ? head_dim : kThreads;
  attention_merge_kernel<<<dim3(n_rows, n_heads), merge_threads, 0, stream>>>(out, partial, n_rows, n_heads, head_dim,
                                                                             n_chunks, row_tiled, quantized);
  return cudaGetLastError();
}
