// Causal attention of a prompt's rows in tiles (llm_attention's result, flash-attention's order): a block takes up
// to ATTENTION_TILE_ROWS consecutive rows of one sequence (consecutive positions) and one head, and walks the
// positions they see in tiles of kKeyTile keys and values loaded once into shared memory for all its rows, with an
// online softmax. attention.cu's split-K kernel reads a row's keys and values once per row, which for a prompt
// of n tokens is n times the cache; this reads it n / ATTENTION_TILE_ROWS times. f32 on the CUDA cores, as the
// CPU computes it (only the order of the sums differs); f16 and q8_0 pool rows are widened as they are loaded.
#include <algorithm>

#include "kv_pool.cuh"

namespace {

constexpr int kThreads = 128;
constexpr int kKeyTile = 64;
static_assert(kKeyTile % LLM_KV_BLOCK_TOKENS == 0, "a key tile covers whole pool blocks");
constexpr int kMaxHeadDim = 128;
// A thread owns 4 rows (of the tile's 32) and, per key tile, 4 scores (keys c, c + 16, c + 32, c + 48) and 8
// output columns (4 at 4c, 4 at 64 + 4c): the 16 threads of a row group are one half-warp, so row maxima and sums
// are half-warp shuffles.
constexpr int kRowsPerThread = ATTENTION_TILE_ROWS / (kThreads / 16);
static_assert(kRowsPerThread == 4, "8 row groups of 4 rows");

// Shared memory, in floats: q and k rows padded by 4 (16-byte loads of 8 lanes at one column fall in different
// banks), v rows unpadded (lanes read consecutive columns), the tile's softmax numerators.
__host__ __device__ inline int q_pitch(int head_dim) { return head_dim + 4; }
__host__ __device__ inline size_t smem_floats(int head_dim) {
  return (size_t)ATTENTION_TILE_ROWS * q_pitch(head_dim) + (size_t)kKeyTile * q_pitch(head_dim) + (size_t)kKeyTile * head_dim +
         (size_t)ATTENTION_TILE_ROWS * (kKeyTile + 1);
}

__device__ __forceinline__ float half_warp_max(float v) {
#pragma unroll
  for (int offset = 8; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ __forceinline__ float half_warp_sum(float v) {
#pragma unroll
  for (int offset = 8; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <int Type>
__global__ void __launch_bounds__(kThreads) attention_tile_kernel(float *out, const float *q, const cuda_row *rows,
                                                                  const int32_t *tiles, cuda_kv kv, int layer, int n_heads,
                                                                  int n_kv_heads, int head_dim) {
  extern __shared__ float4 smem4[];
  float *smem = reinterpret_cast<float *>(smem4);
  const int qp = q_pitch(head_dim);
  float *q_s = smem;                                  // [ATTENTION_TILE_ROWS][qp]
  float *k_s = q_s + ATTENTION_TILE_ROWS * qp;        // [kKeyTile][qp]
  float *v_s = k_s + kKeyTile * qp;                   // [kKeyTile][head_dim]
  float *p_s = v_s + kKeyTile * head_dim;             // [ATTENTION_TILE_ROWS][kKeyTile + 1]

  const int first_row = tiles[2 * blockIdx.x], n_rows = tiles[2 * blockIdx.x + 1];
  const int head = blockIdx.y, kv_head = head / (n_heads / n_kv_heads);
  const cuda_row info = rows[first_row];
  const int pos0 = info.pos, last_pos = pos0 + n_rows - 1;
  const int32_t *table = kv.block_table + info.blocks;
  const size_t head_offset = kv_head * (kv.row_bytes / n_kv_heads);
  const int vec = head_dim / 4;

  // The tile's queries; rows past n_rows repeat the last (finite, never stored).
  for (int i = threadIdx.x; i < ATTENTION_TILE_ROWS * vec; i += kThreads) {
    const int r = i / vec, c = i % vec;
    const int row = first_row + min(r, n_rows - 1);
    reinterpret_cast<float4 *>(q_s + r * qp)[c] = reinterpret_cast<const float4 *>(q + ((int64_t)row * n_heads + head) * head_dim)[c];
  }

  const int group = threadIdx.x / 16, lane16 = threadIdx.x % 16;
  const int row_base = group * kRowsPerThread;
  int row_pos[kRowsPerThread];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; i++) row_pos[i] = pos0 + min(row_base + i, n_rows - 1);
  const float scale = 1.0f / sqrtf((float)head_dim);
  float running_max[kRowsPerThread], running_sum[kRowsPerThread], acc[kRowsPerThread][8];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; i++) {
    running_max[i] = -INFINITY;
    running_sum[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;
  }

  for (int key0 = 0; key0 <= last_pos; key0 += kKeyTile) {
    __syncthreads(); // the previous tile's keys, values and numerators are read
    // Keys and values of positions key0 .. key0 + kKeyTile - 1; zeros past the last visible position (their
    // numerators are 0, and 0 * garbage could be NaN).
    for (int i = threadIdx.x; i < kKeyTile * vec; i += kThreads) {
      const int k = i / vec, c = i % vec, p = key0 + k;
      float4 kv4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f), vv = kv4;
      if (p <= last_pos) {
        const size_t offset = kv_row_offset(kv, table[p / LLM_KV_BLOCK_TOKENS], layer, p) + head_offset;
        kv4 = KvFormat<Type>::load4(kv.keys + offset, c);
        vv = KvFormat<Type>::load4(kv.values + offset, c);
      }
      reinterpret_cast<float4 *>(k_s + k * qp)[c] = kv4;
      reinterpret_cast<float4 *>(v_s + k * head_dim)[c] = vv;
    }
    __syncthreads();

    float score[kRowsPerThread][4];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) score[i][j] = 0.0f;
    for (int d = 0; d < head_dim; d += 4) {
      float4 qv[kRowsPerThread], kt[4];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; i++) qv[i] = *reinterpret_cast<const float4 *>(q_s + (row_base + i) * qp + d);
#pragma unroll
      for (int j = 0; j < 4; j++) kt[j] = *reinterpret_cast<const float4 *>(k_s + (lane16 + 16 * j) * qp + d);
#pragma unroll
      for (int i = 0; i < kRowsPerThread; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
          score[i][j] += qv[i].x * kt[j].x + qv[i].y * kt[j].y + qv[i].z * kt[j].z + qv[i].w * kt[j].w;
    }

#pragma unroll
    for (int i = 0; i < kRowsPerThread; i++) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int p = key0 + lane16 + 16 * j;
        score[i][j] = p <= row_pos[i] ? score[i][j] * scale : -INFINITY;
        tile_max = fmaxf(tile_max, score[i][j]);
      }
      const float new_max = fmaxf(running_max[i], half_warp_max(tile_max)); // finite: position 0 is in every row's first tile
      const float correction = expf(running_max[i] - new_max);
      float tile_sum = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const float e = expf(score[i][j] - new_max);
        p_s[(row_base + i) * (kKeyTile + 1) + lane16 + 16 * j] = e;
        tile_sum += e;
      }
      running_sum[i] = running_sum[i] * correction + half_warp_sum(tile_sum);
      running_max[i] = new_max;
#pragma unroll
      for (int j = 0; j < 8; j++) acc[i][j] *= correction;
    }
    __syncwarp(); // the numerators of a row group come from its own half-warp

    const int keys_here = min(kKeyTile, last_pos + 1 - key0);
    for (int k = 0; k < keys_here; k++) {
      float4 v[2];
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int col = 4 * lane16 + 64 * h;
        v[h] = col < head_dim ? *reinterpret_cast<const float4 *>(v_s + k * head_dim + col) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
#pragma unroll
      for (int i = 0; i < kRowsPerThread; i++) {
        const float e = p_s[(row_base + i) * (kKeyTile + 1) + k];
#pragma unroll
        for (int h = 0; h < 2; h++) {
          acc[i][4 * h] += e * v[h].x;
          acc[i][4 * h + 1] += e * v[h].y;
          acc[i][4 * h + 2] += e * v[h].z;
          acc[i][4 * h + 3] += e * v[h].w;
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; i++) {
    if (row_base + i >= n_rows) break;
    float *o = out + ((int64_t)(first_row + row_base + i) * n_heads + head) * head_dim;
    const float inv_sum = 1.0f / running_sum[i];
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int col = 4 * lane16 + 64 * h;
      if (col < head_dim)
        *reinterpret_cast<float4 *>(o + col) = make_float4(acc[i][4 * h] * inv_sum, acc[i][4 * h + 1] * inv_sum,
                                                           acc[i][4 * h + 2] * inv_sum, acc[i][4 * h + 3] * inv_sum);
    }
  }
}

} // namespace

int plan_attention_tiles(const cuda_row *rows, int n_rows, int head_dim, int32_t *tiles, uint8_t *row_tiled, int *n_tiled_rows) {
  int n_tiles = 0;
  *n_tiled_rows = 0;
  for (int r = 0; r < n_rows; r++) row_tiled[r] = 0;
  if (head_dim > kMaxHeadDim || head_dim % 4 != 0) return 0;
  for (int start = 0; start < n_rows;) {
    int end = start + 1; // the run of rows of one cache at consecutive positions
    while (end < n_rows && rows[end].blocks == rows[start].blocks && rows[end].pos == rows[end - 1].pos + 1) end++;
    for (int first = start; end - first >= ATTENTION_TILE_MIN_ROWS; first += ATTENTION_TILE_ROWS) {
      const int count = std::min(ATTENTION_TILE_ROWS, end - first);
      if (count < ATTENTION_TILE_MIN_ROWS) break;
      tiles[2 * n_tiles] = first;
      tiles[2 * n_tiles + 1] = count;
      n_tiles++;
      *n_tiled_rows += count;
      for (int i = first; i < first + count; i++) row_tiled[i] = 1;
    }
    start = end;
  }
  return n_tiles;
}

cudaError_t launch_attention_tiles(float *out, const float *q, const cuda_row *rows, const int32_t *tiles, int n_tiles,
                                   const cuda_kv &kv, int layer, int n_heads, int n_kv_heads, int head_dim, cudaStream_t stream) {
  if (n_tiles == 0) return cudaSuccess;
  if (head_dim > kMaxHeadDim || head_dim % 4 != 0 || n_heads > 65535 || !cuda_kv_supported(kv, n_kv_heads, head_dim))
    return cudaErrorInvalidValue;
  const size_t smem = smem_floats(head_dim) * sizeof(float);
  return with_kv_type(kv.type, [&](auto type) {
    const auto kernel = attention_tile_kernel<decltype(type)::value>;
    const cudaError_t raised = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (raised != cudaSuccess) return raised;
    kernel<<<dim3(n_tiles, n_heads), kThreads, smem, stream>>>(out, q, rows, tiles, kv, layer, n_heads, n_kv_heads, head_dim);
    return cudaGetLastError();
  });
}
