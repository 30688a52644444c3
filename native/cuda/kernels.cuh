// Host-side launchers of the CUDA kernels (one .cu file per family). The forward pass (backend.cu) and the
// kernel tests (test/kernel_tests.cu) call these; every launcher enqueues on `stream` and returns the launch error.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "common.cuh"

// A weight tensor in device memory: the file's bytes, rows of llm_row_bytes(type, cols).
struct cuda_matrix {
  const uint8_t *data;
  int type; // enum llm_type
  int64_t rows, cols;
  size_t row_bytes;
};

// One token (row) of a pass: its id, its position, and its sequence's KV cache (layer 0; layer l starts
// l * layer_stride floats further). Kernels read these from device memory, so a captured graph serves every
// step of a decode whatever its positions and caches.
struct cuda_row {
  float *keys;
  float *values;
  int64_t layer_stride;
  int32_t pos;
  int32_t token;
};

// The activation layout a weight type is multiplied with.
enum act_format { ACT_F32, ACT_Q8_0, ACT_Q8_K };
act_format activation_format(int type);
// Bytes of one activation row of `cols` values in a format.
size_t activation_row_bytes(act_format format, int64_t cols);

// Converts n_rows rows of `cols` f32 values (contiguous) to a quantized activation format (q8_0 or q8_K).
cudaError_t launch_quantize(act_format format, const float *x, void *out, int n_rows, int64_t cols, cudaStream_t stream);

enum matmul_mode {
  MATMUL_STORE,  // out = W x
  MATMUL_ADD,    // out += W x (the residual connection)
  MATMUL_SWIGLU, // out of product 0 = silu(W0 x) * (W1 x): the feed-forward gate and up in one pass
};
#define MATMUL_MAX_PRODUCTS 3

// out_p[t * rows_p + r] = sum_c W_p[r][c] x_t[c] for each product p (all of one type and cols) and token t <
// n_tokens. x holds n_tokens activation rows in activation_format(type), x_stride bytes apart. Each warp reads
// its weight row once for up to 8 tokens; for one token this is the bandwidth-bound decode product.
cudaError_t launch_matmul(const cuda_matrix *const weights[], float *const outs[], int n_products, const void *x,
                          size_t x_stride, int n_tokens, matmul_mode mode, cudaStream_t stream);

// out row i = x row (row_map ? row_map[i] : i) / rms * weight, rows of dim values (llm_rmsnorm).
cudaError_t launch_rmsnorm(float *out, const float *x, const cuda_matrix *weight, const int32_t *row_map, int n_rows,
                           int dim, float eps, cudaStream_t stream);

// out row r = row rows[r].token of the table, dequantized (llm_embedding).
cudaError_t launch_embedding(float *out, const cuda_matrix *table, const cuda_row *rows, int n_rows, cudaStream_t stream);

// Rotates each row's q (in place) and k by its position (llm_rope: output in interleaved pair order) and stores k
// and v into the row's cache at its position, layer `layer`.
cudaError_t launch_rope_store(float *q, const float *k, const float *v, const cuda_row *rows, int n_rows, int layer,
                              int n_heads, int n_kv_heads, int head_dim, const float *freqs, bool interleaved,
                              cudaStream_t stream);

// Causal grouped-query attention of each row's query against positions 0..pos of its cache (llm_attention):
// split-K over chunks of ATTENTION_CHUNK positions, then a merge. partial holds attention_partial_floats(...).
#define ATTENTION_CHUNK 256
size_t attention_partial_floats(int n_rows, int n_heads, int head_dim, int n_chunks);
cudaError_t launch_attention(float *out, const float *q, const cuda_row *rows, int n_rows, int layer, int n_heads,
                             int n_kv_heads, int head_dim, int n_chunks, float *partial, cudaStream_t stream);

// out = silu(gate) * up over n values (llm_swiglu), for gate and up products of different types.
cudaError_t launch_swiglu(float *out, const float *gate, const float *up, int64_t n, cudaStream_t stream);

// The k largest of each of n_rows rows of n values, largest first; equal values lower index first; NaN last
// (llm_top_k). k <= TOP_K_DEVICE_MAX.
#define TOP_K_DEVICE_MAX 64
cudaError_t launch_top_k(const float *values, int n_rows, int n, int k, int32_t *out_ids, cudaStream_t stream);
