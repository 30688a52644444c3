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

extern "C" {
#include "kv_cache.h"
}

// One token (row) of a pass: its id, its position, and where its sequence's block ids start in the pass's block
// table (cuda_kv.block_table): position p of the sequence is in pool block block_table[blocks + p /
// LLM_KV_BLOCK_TOKENS]. Kernels read these from device memory, so a captured graph serves every step of a decode
// whatever its positions and blocks. Rows of one sequence in a pass share `blocks`.
struct cuda_row {
  int32_t pos;
  int32_t token;
  int32_t blocks;
};

// The paged KV pool as the kernels see it (kv_cache.h's layout): layer l, block b, slot s of the keys (values) at
// byte ((l * n_blocks + b) * LLM_KV_BLOCK_TOKENS + s) * row_bytes, rows of n_kv_heads * head_dim values of `type`
// (enum llm_kv_type: f32, f16, or q8_0 blocks of 32 values, head_dim a multiple of 32). block_table: the pass's
// block ids in device memory, indexed through cuda_row.blocks.
struct cuda_kv {
  uint8_t *keys, *values;
  const int32_t *block_table;
  size_t row_bytes;
  int n_blocks;
  int type;
};
// Whether the kernels take this pool for heads of this shape (a known type, rows of llm_kv_row_bytes).
bool cuda_kv_supported(const cuda_kv &kv, int n_kv_heads, int head_dim);

// The activation layout a weight type is multiplied with: on the CUDA cores (activation_format), on the tensor
// cores (mma_activation_format: f16 for f16 weights; for bf16 weights each row's bf16 values then the bf16 of
// what they leave over, two terms), and by launch_matmul for a count of tokens (matmul_activation_format).
enum act_format { ACT_F32, ACT_Q8_0, ACT_Q8_K, ACT_F16, ACT_BF16X2 };
act_format activation_format(int type);
act_format mma_activation_format(int type);
struct cuda_matrix;
struct matmul_workspace;
act_format matmul_activation_format(const cuda_matrix &w, int n_tokens, const matmul_workspace *workspace = nullptr);
// Bytes of one activation row of `cols` values in a format.
size_t activation_row_bytes(act_format format, int64_t cols);

// Converts n_rows rows of `cols` f32 values (contiguous) to an activation format other than f32 (q8_0 and q8_K:
// cols a multiple of their blocks; f16 and bf16x2: of 8).
cudaError_t launch_quantize(act_format format, const float *x, void *out, int n_rows, int64_t cols, cudaStream_t stream);

enum matmul_mode {
  MATMUL_STORE,  // out = W x
  MATMUL_ADD,    // out += W x (the residual connection)
  MATMUL_SWIGLU, // out of product 0 = silu(W0 x) * (W1 x): the feed-forward gate and up in one pass
};
#define MATMUL_MAX_PRODUCTS 3

// out_p[t * rows_p + r] = sum_c W_p[r][c] x_t[c] for each product p (all of one type and cols) and token t <
// n_tokens. x holds n_tokens activation rows in matmul_activation_format(W, n_tokens, workspace), x_stride bytes
// apart. Below matmul_takes_tensor_cores each warp reads its weight row once for up to 8 tokens (for one token this
// is the bandwidth-bound decode product); from there on, cuBLAS where matmul_takes_cublas, else tiles on the tensor
// cores (split-K in the workspace's partials). SWIGLU on those two paths also writes the up product to outs[1].
cudaError_t launch_matmul(const cuda_matrix *const weights[], float *const outs[], int n_products, const void *x,
                          size_t x_stride, int n_tokens, matmul_mode mode, cudaStream_t stream,
                          const matmul_workspace *workspace = nullptr);

// Device memory that products may use: room for one weight matrix dequantized to f16, for cuBLAS (too small for a
// matrix: that matrix stays on the tensor-core tiles; no workspace at all: no cuBLAS), and for the partial sums of
// the tensor-core tiles' split-K (matmul_mma_partial_bytes; too small: they split less). The two may be one
// allocation: a stream runs its products one after another. graph_capture: the products are being captured into a
// CUDA graph, where cuBLAS stays out (it may allocate) and the partials still serve.
struct matmul_workspace {
  __half *f16_weights;
  size_t f16_weight_bytes;
  float *partials;
  size_t partial_bytes;
  bool graph_capture;
};

// The same products through cuBLAS (matmul_cublas.cu), loaded at run time where the machine has it: launch_matmul
// takes them where matmul_takes_cublas (from cublas_min_tokens: quantized weights are dequantized into the
// workspace first, which pays off from more tokens). x: the tokens' activations in f16 (ACT_F16).
#define CUBLAS_MIN_TOKENS_QUANTIZED 128 // the fewest of any quantized type: from here a pass makes cuBLAS room in the workspace
int cublas_min_tokens(int type);
bool cublas_loaded();
// The workspace a matrix needs on that path: 0 for f16 weights, and where cuBLAS cannot take it.
size_t cublas_workspace_bytes(const cuda_matrix &w);
bool matmul_takes_cublas(const cuda_matrix &w, int n_tokens, const matmul_workspace *workspace);
cudaError_t launch_matmul_cublas(const cuda_matrix *const weights[], float *const outs[], int n_products, const __half *x,
                                 int n_tokens, bool add, const matmul_workspace *workspace, cudaStream_t stream);

// The same products on the tensor cores (matmul_mma.cu), which launch_matmul takes where
// matmul_takes_tensor_cores: enough tokens (16 for f16/bf16, 32 for the quantized types) and weights that
// matmul_mma_supports (the quantized types; f16/bf16 with rows of 16-byte multiples). add: out += W x. SwiGLU is
// launch_matmul's: it runs these as two products and then launch_swiglu.
// Split-K: where the tiles' grid leaves SMs idle (few tokens), the columns' k-tiles split into ranges whose
// partial sums go to workspace->partials and are then added up in a fixed order (no atomics: the same bits every
// run). matmul_mma_split says into how many ranges a launch splits (1: none; no workspace: none);
// matmul_mma_partial_bytes, the most partial-sum bytes a launch of these weights with up to max_tokens tokens uses
// (rounded up to whole tiles of tokens).
// split > 0 forces the ranges (at most the k-tiles; the partials must fit): for the tests.
bool matmul_mma_supports(int type, size_t row_bytes);
bool matmul_takes_tensor_cores(const cuda_matrix &w, int n_tokens);
int matmul_mma_split(const cuda_matrix *const weights[], int n_products, int n_tokens, const matmul_workspace *workspace);
size_t matmul_mma_partial_bytes(const cuda_matrix *const weights[], int n_products, int max_tokens);
cudaError_t launch_matmul_mma(const cuda_matrix *const weights[], float *const outs[], int n_products, const void *x,
                              size_t x_stride, int n_tokens, bool add, cudaStream_t stream,
                              const matmul_workspace *workspace = nullptr, int split = 0);

// out row i = x row (row_map ? row_map[i] : i) / rms * weight, rows of dim values (llm_rmsnorm); with quantized,
// also those rows as q8_0 activations (dim a multiple of 32), as launch_quantize would make them of out.
cudaError_t launch_rmsnorm(float *out, const float *x, const cuda_matrix *weight, const int32_t *row_map, int n_rows,
                           int dim, float eps, cudaStream_t stream, act_q8_0 *quantized = nullptr);

// out row r = row rows[r].token of the table, dequantized (llm_embedding).
cudaError_t launch_embedding(float *out, const cuda_matrix *table, const cuda_row *rows, int n_rows, cudaStream_t stream);

// Rotates each row's q (in place) and k by its position (llm_rope: output in interleaved pair order) and stores k
// and v into the pool at the row's position, layer `layer`, in the pool's type (q8_0: bit for bit
// llm_quantize_row_q8_0_ref of each head). freqs nullptr: q and k are rotated already (a custom op library's RoPE),
// k and v are only stored.
cudaError_t launch_rope_store(float *q, const float *k, const float *v, const cuda_row *rows, int n_rows, const cuda_kv &kv, int layer,
                              int n_heads, int n_kv_heads, int head_dim, const float *freqs, bool interleaved,
                              cudaStream_t stream);

// Causal grouped-query attention of each row's query against positions 0..pos of its sequence in the pool
// (llm_attention; f16 and q8_0 rows widened to f32, the sums in f32): split-K over chunks of ATTENTION_CHUNK positions
// (whole blocks of the pool), then a merge (none for one chunk). partial holds
// attention_partial_floats(...). Rows with row_tiled[r] set (nullptr: none) are left to launch_attention_tiles.
// With quantized (and no row_tiled, head_dim a multiple of 32), the output rows also go out as q8_0 activations,
// as launch_quantize would make them. With rope.freqs set (no row_tiled; each row of its own sequence, as in a
// decode pass, since a row would not see another's key), q and rope.k are unrotated and the kernel does what
// launch_rope_store would first: the same bits in q's place (q itself is left as it is) and in the pool.
#define ATTENTION_CHUNK 256
static_assert(ATTENTION_CHUNK % LLM_KV_BLOCK_TOKENS == 0, "a chunk covers whole blocks");
struct attention_rope {
  const float *k, *v; // the rows' keys and values as the products left them, n_kv_heads * head_dim apart
  const float *freqs;
  bool interleaved;
};
size_t attention_partial_floats(int n_rows, int n_heads, int head_dim, int n_chunks);
cudaError_t launch_attention(float *out, const float *q, const cuda_row *rows, int n_rows, const cuda_kv &kv, int layer, int n_heads,
                             int n_kv_heads, int head_dim, int n_chunks, float *partial, const uint8_t *row_tiled,
                             cudaStream_t stream, act_q8_0 *quantized = nullptr, attention_rope rope = {});

// The same for prompts in tiles (attention_prompt.cu): up to ATTENTION_TILE_ROWS consecutive rows of one sequence
// (one `blocks`) at consecutive positions share every key and value they load. plan_attention_tiles picks a pass's tiles on the
// host from its rows: runs of at least ATTENTION_TILE_MIN_ROWS such rows, when head_dim <= 128 and a multiple of
// 4; tiles[2i] and tiles[2i + 1] are tile i's first row and row count, row_tiled[r] = 1 for the rows of tiles
// (n_rows entries). Returns the tile count; *n_tiled_rows, their rows.
#define ATTENTION_TILE_ROWS 32
#define ATTENTION_TILE_MIN_ROWS 8
int plan_attention_tiles(const cuda_row *rows, int n_rows, int head_dim, int32_t *tiles, uint8_t *row_tiled, int *n_tiled_rows);
cudaError_t launch_attention_tiles(float *out, const float *q, const cuda_row *rows, const int32_t *tiles, int n_tiles,
                                   const cuda_kv &kv, int layer, int n_heads, int n_kv_heads, int head_dim, cudaStream_t stream);

// For custom op libraries (custom_ops.h), whose launchers take plain arrays: each row's position (positions[r] =
// rows[r].pos), and rows of x gathered (out row i = x row row_map[i], rows of dim values).
cudaError_t launch_row_positions(int32_t *positions, const cuda_row *rows, int n_rows, cudaStream_t stream);
cudaError_t launch_gather_rows(float *out, const float *x, const int32_t *row_map, int n_rows, int dim, cudaStream_t stream);

// out = silu(gate) * up over n values (llm_swiglu), for gate and up products of different types.
cudaError_t launch_swiglu(float *out, const float *gate, const float *up, int64_t n, cudaStream_t stream);

// The flat index of the first NaN or infinity among n values into *first, or ULLONG_MAX when every one is finite.
cudaError_t launch_first_non_finite(const float *values, int64_t n, unsigned long long *first, cudaStream_t stream);

// The k largest of each of n_rows rows of n values, largest first; equal values lower index first; NaN last
// (llm_top_k). k <= TOP_K_DEVICE_MAX.
#define TOP_K_DEVICE_MAX 64
cudaError_t launch_top_k(const float *values, int n_rows, int n, int k, int32_t *out_ids, float *out_values,
                         cudaStream_t stream);
