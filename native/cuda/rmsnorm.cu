// RMSNorm (llm_rmsnorm): the sum of squares in double as on the CPU, then the same float steps.
#include "formats.cuh"
#include "kernels.cuh"

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) rmsnorm_kernel(float *out, const float *x, const uint8_t *weight, int weight_type,
                                                           const int32_t *row_map, int dim, float eps) {
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
  for (int i = threadIdx.x; i < dim; i += kThreads) orow[i] = format_value(weight_type, weight, i) * (xr[i] * scale);
}

} // namespace

cudaError_t launch_rmsnorm(float *out, const float *x, const cuda_matrix *weight, const int32_t *row_map, int n_rows,
                           int dim, float eps, cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  rmsnorm_kernel<<<n_rows, kThreads, 0, stream>>>(out, x, weight->data, weight->type, row_map, dim, eps);
  return cudaGetLastError();
}
