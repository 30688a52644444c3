// Weight-times-activations products for every weight format (formats.cuh). One warp per weight row: its lanes
// walk the row in units (16-byte loads for the float formats, one block or a quarter super-block for the
// quantized ones), so a warp's loads are consecutive bytes and each weight byte is read once per tile of up to
// NT tokens. Blocks run the token tiles of a row group back to back, so a prompt's later tiles find the rows in L2.
#include "formats.cuh"
#include "kernels.cuh"
#include "llm_cuda.h"

namespace {

constexpr int kWarpsPerBlock = 4;

struct MatmulParams {
  const uint8_t *w[MATMUL_MAX_PRODUCTS];
  float *out[MATMUL_MAX_PRODUCTS];
  int64_t rows[MATMUL_MAX_PRODUCTS];
  int n_products;
  int64_t total_rows; // rows a warp is given: all products' rows, or product 0's for SWIGLU
  int64_t n_units;
  size_t row_bytes;
  const void *x;
  size_t x_stride;
  int n_tokens;
  int n_token_tiles;
  matmul_mode mode;
};

template <typename F, int NT>
__global__ void __launch_bounds__(kWarpsPerBlock * LLM_CUDA_WARP) matmul_kernel(const MatmulParams p) {
  using Activation = typename F::Activation;
  const int lane = threadIdx.x % LLM_CUDA_WARP;
  const int tile = (int)(blockIdx.x % (unsigned)p.n_token_tiles);
  int64_t r = (int64_t)(blockIdx.x / (unsigned)p.n_token_tiles) * kWarpsPerBlock + threadIdx.x / LLM_CUDA_WARP;
  if (r >= p.total_rows) return;
  int product = 0;
  if (p.mode != MATMUL_SWIGLU) {
    while (product + 1 < p.n_products && r >= p.rows[product]) r -= p.rows[product++];
  }
  const uint8_t *w0 = product == 0 ? p.w[0] : product == 1 ? p.w[1] : p.w[2];
  float *out = product == 0 ? p.out[0] : product == 1 ? p.out[1] : p.out[2];
  const int64_t rows = product == 0 ? p.rows[0] : product == 1 ? p.rows[1] : p.rows[2];
  const int first_token = tile * NT;
  const int n_here = min(NT, p.n_tokens - first_token);
  const Activation *x[NT];
#pragma unroll
  for (int t = 0; t < NT; t++)
    x[t] = reinterpret_cast<const Activation *>(static_cast<const char *>(p.x) + (size_t)(first_token + t) * p.x_stride);

  float acc[2][NT];
#pragma unroll
  for (int m = 0; m < 2; m++)
#pragma unroll
    for (int t = 0; t < NT; t++) acc[m][t] = 0.0f;

#pragma unroll
  for (int m = 0; m < 2; m++) {
    if (m == 1 && p.mode != MATMUL_SWIGLU) break;
    const uint8_t *w = (m == 0 ? w0 : p.w[1]) + r * p.row_bytes;
    int64_t u = lane;
    // Two units per lane in flight before their products. (Four measured slower on the H100: the extra registers
    // cost more occupancy than the loads in flight gained, bench/RESULTS.md.)
    for (; u + LLM_CUDA_WARP < p.n_units; u += 2 * LLM_CUDA_WARP) {
      const typename F::Unit a = F::load(w, u), b = F::load(w, u + LLM_CUDA_WARP);
#pragma unroll
      for (int t = 0; t < NT; t++)
        if (t < n_here) acc[m][t] += F::dot(a, x[t], u) + F::dot(b, x[t], u + LLM_CUDA_WARP);
    }
    if (u < p.n_units) {
      const typename F::Unit a = F::load(w, u);
#pragma unroll
      for (int t = 0; t < NT; t++)
        if (t < n_here) acc[m][t] += F::dot(a, x[t], u);
    }
  }

#pragma unroll
  for (int t = 0; t < NT; t++) {
    if (t >= n_here) break;
    const float dot = warp_sum(acc[0][t]);
    if (p.mode == MATMUL_SWIGLU) {
      const float up = warp_sum(acc[1][t]);
      if (lane == 0) out[(int64_t)(first_token + t) * rows + r] = dot / (1.0f + expf(-dot)) * up;
    } else if (lane == 0) {
      float *o = out + (int64_t)(first_token + t) * rows + r;
      *o = p.mode == MATMUL_ADD ? *o + dot : dot;
    }
  }
}

template <typename F>
cudaError_t launch_format(const MatmulParams &params, cudaStream_t stream) {
  MatmulParams p = params;
  p.n_units = (int64_t)(p.n_units / F::kUnitValues); // n_units arrives as cols
  const int nt = p.n_tokens == 1 ? 1 : p.n_tokens == 2 ? 2 : p.n_tokens <= 4 ? 4 : 8;
  p.n_token_tiles = (p.n_tokens + nt - 1) / nt;
  const int64_t row_groups = (p.total_rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int64_t blocks = row_groups * p.n_token_tiles;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const dim3 grid((unsigned)blocks), block(kWarpsPerBlock * LLM_CUDA_WARP);
  switch (nt) {
  case 1: matmul_kernel<F, 1><<<grid, block, 0, stream>>>(p); break;
  case 2: matmul_kernel<F, 2><<<grid, block, 0, stream>>>(p); break;
  case 4: matmul_kernel<F, 4><<<grid, block, 0, stream>>>(p); break;
  default: matmul_kernel<F, 8><<<grid, block, 0, stream>>>(p); break;
  }
  return cudaGetLastError();
}

} // namespace

act_format activation_format(int type) {
  switch (type) {
  case LLM_Q8_0:
  case LLM_Q4_0:
  case LLM_Q4_1:
  case LLM_Q5_0:
  case LLM_Q5_1:
  case LLM_IQ4_NL: return ACT_Q8_0;
  case LLM_Q2_K:
  case LLM_Q3_K:
  case LLM_Q4_K:
  case LLM_Q5_K:
  case LLM_Q6_K:
  case LLM_IQ4_XS: return ACT_Q8_K;
  default: return ACT_F32;
  }
}

act_format mma_activation_format(int type) {
  return type == LLM_F16 ? ACT_F16 : type == LLM_BF16 ? ACT_BF16X2 : activation_format(type);
}

// From where the tiles (split-K when the grid is small) beat the warp-per-row kernel on a 7B layer's products
// (cuda_kernel_tests --time on the H100, bench/RESULTS.md): f16/bf16 from 8 tokens (4096 x 4096: 21 against 72 us);
// the quantized types from 9: at 8 the warp kernel ties them for q4_0 / q8_0 (36.8 / 36.9 us at 11008 x 4096), and
// at 12 the tiles win for every type (q4_K 20 against 36 us, q4_0 38 against 52 us at 11008 rows).
constexpr int kTensorCoreMinTokensHalves = 8;     // f16, bf16
constexpr int kTensorCoreMinTokensQuantized = 9;  // measured for q8_0, q4_0, q4_K, q6_K; taken for every quantized type
bool matmul_takes_tensor_cores(const cuda_matrix &w, int n_tokens) {
  const int min_tokens = w.type == LLM_F16 || w.type == LLM_BF16 ? kTensorCoreMinTokensHalves : kTensorCoreMinTokensQuantized;
  return n_tokens >= min_tokens && matmul_mma_supports(w.type, w.row_bytes);
}

act_format matmul_activation_format(const cuda_matrix &w, int n_tokens, const matmul_workspace *workspace) {
  if (matmul_takes_cublas(w, n_tokens, workspace)) return ACT_F16;
  return matmul_takes_tensor_cores(w, n_tokens) ? mma_activation_format(w.type) : activation_format(w.type);
}

size_t activation_row_bytes(act_format format, int64_t cols) {
  switch (format) {
  case ACT_Q8_0: return act_row_bytes_q8_0(cols);
  case ACT_Q8_K: return act_row_bytes_q8_K(cols);
  case ACT_F16: return (size_t)cols * 2;
  case ACT_BF16X2: return (size_t)cols * 4;
  default: return (size_t)cols * sizeof(float);
  }
}

cudaError_t launch_matmul(const cuda_matrix *const weights[], float *const outs[], int n_products, const void *x,
                          size_t x_stride, int n_tokens, matmul_mode mode, cudaStream_t stream,
                          const matmul_workspace *workspace) {
  if (n_products < 1 || n_products > MATMUL_MAX_PRODUCTS || (mode == MATMUL_SWIGLU && n_products != 2) || n_tokens < 1)
    return cudaErrorInvalidValue;
  MatmulParams p = {};
  const cuda_matrix &first = *weights[0];
  for (int i = 0; i < n_products; i++) {
    if (weights[i]->type != first.type || weights[i]->cols != first.cols) return cudaErrorInvalidValue;
    p.w[i] = weights[i]->data;
    p.out[i] = outs[i];
    p.rows[i] = weights[i]->rows;
    p.total_rows += weights[i]->rows;
  }
  if (mode == MATMUL_SWIGLU) p.total_rows = first.rows;
  const bool blas = matmul_takes_cublas(first, n_tokens, workspace);
  if (blas || matmul_takes_tensor_cores(first, n_tokens)) {
    const bool add = mode == MATMUL_ADD;
    if (blas && x_stride != activation_row_bytes(ACT_F16, first.cols)) return cudaErrorInvalidValue;
    const cudaError_t e = blas ? launch_matmul_cublas(weights, outs, n_products, static_cast<const __half *>(x), n_tokens, add, workspace, stream)
                               : launch_matmul_mma(weights, outs, n_products, x, x_stride, n_tokens, add, stream, workspace);
    // SwiGLU after gate and up apart: both paths hold one product's results at a time.
    if (e != cudaSuccess || mode != MATMUL_SWIGLU) return e;
    return launch_swiglu(outs[0], outs[0], outs[1], (int64_t)n_tokens * first.rows, stream);
  }
  p.n_products = n_products;
  p.n_units = first.cols;
  p.row_bytes = first.row_bytes;
  p.x = x;
  p.x_stride = x_stride;
  p.n_tokens = n_tokens;
  p.mode = mode;
  // The float formats take 16-byte loads when rows are whole 16-byte runs (tensors are 256-byte aligned).
  const bool vec = first.row_bytes % 16 == 0;
  switch (first.type) {
  case LLM_F32: return vec ? launch_format<FloatFormat<float, 4>>(p, stream) : launch_format<FloatFormat<float, 1>>(p, stream);
  case LLM_F16: return vec ? launch_format<FloatFormat<__half, 8>>(p, stream) : launch_format<FloatFormat<__half, 1>>(p, stream);
  case LLM_BF16:
    return vec ? launch_format<FloatFormat<__nv_bfloat16, 8>>(p, stream) : launch_format<FloatFormat<__nv_bfloat16, 1>>(p, stream);
  case LLM_Q8_0: return launch_format<FormatQ8_0>(p, stream);
  case LLM_Q4_0: return launch_format<FormatQ4_0>(p, stream);
  case LLM_Q4_1: return launch_format<FormatQ4_1>(p, stream);
  case LLM_Q5_0: return launch_format<FormatQ5_0>(p, stream);
  case LLM_Q5_1: return launch_format<FormatQ5_1>(p, stream);
  case LLM_IQ4_NL: return launch_format<FormatIQ4_NL>(p, stream);
  case LLM_Q2_K: return launch_format<FormatQ2_K>(p, stream);
  case LLM_Q3_K: return launch_format<FormatQ3_K>(p, stream);
  case LLM_Q4_K: return launch_format<FormatQ4_K>(p, stream);
  case LLM_Q5_K: return launch_format<FormatQ5_K>(p, stream);
  case LLM_Q6_K: return launch_format<FormatQ6_K>(p, stream);
  case LLM_IQ4_XS: return launch_format<FormatIQ4_XS>(p, stream);
  default: return cudaErrorInvalidValue;
  }
}
