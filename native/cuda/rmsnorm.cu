// RMSNorm (llm_rmsnorm): the sum of squares in double as on the CPU, then the same float steps. Optionally also
// quantizes the rows to q8_0 activations on the way out (one kernel instead of two per norm of a pass).
#include "formats.cuh"
#include "kernels.cuh"

namespace {

// A row per block (a decode pass has one): 1024 threads keep the fused quantization's per-warp reductions to a
// few rounds (with 256 threads, 16 rounds of a 4096-value row made decode 7% slower than a separate quantizer).
constexpr int kThreads = 1024;

__global__ void __launch_bounds__(kThreads) rmsnorm_kernel(float *out, const float *x, const uint8_t *weight, int weight_type,
                                                           const int32_t *row_map, int dim, float eps, act_q8_0 *quantized) {
  const int row = blockIdx.x;
  const float *xr = x + (int64_t)(row_map ? row_map[row] : row) * dim;
  float *orow = out + (int64_t)row * dim;
  double sum_sq = 0.0;
  for (int i = threadIdx.x; i < dim; i += kThreads) sum_sq += (double)xr[i] * xr[i];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, offset);
  __shared__ double warp_sums[kThreads / LLM_CUDA_WARP];
  __shared__ float scale;
  if (threadIdx.x % LLM_CUDA_WARP == 0) warp_sums[threadIdx.x / LLM_CUDA_WARP] = sum_sq;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kThreads / LLM_CUDA_WARP; w++) total += warp_sums[w];
    scale = 1.0f / sqrtf(__fadd_rn((float)(total / dim), eps));
  }
  __syncthreads();
  // Each warp's 32 values of a step are one q8_0 block (dim is a multiple of 32 when quantized).
  act_q8_0 *qrow = quantized ? quantized + (int64_t)row * (dim / 32) : nullptr;
  for (int i = threadIdx.x; i < dim; i += kThreads) {
    const float v = format_value(weight_type, weight, i) * (xr[i] * scale);
    orow[i] = v;
    if (qrow) quantize_warp_q8_0(v, qrow[i / 32]);
  }
}

} // namespace

cudaError_t launch_rmsnorm(float *out, const float *x, const cuda_matrix *weight, const int32_t *row_map, int n_rows,
                           int dim, float eps, cudaStream_t stream, act_q8_0 *quantized) {
  if (n_rows == 0) return cudaSuccess;
  if (quantized && dim % 32 != 0) return cudaErrorInvalidValue;
  rmsnorm_kernel<<<n_rows, kThreads, 0, stream>>>(out, x, weight->data, weight->type, row_map, dim, eps, quantized);
  return cudaGetLastError();
}
