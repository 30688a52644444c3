// The first NaN or infinity among a pass's logits (llm_first_non_finite_f32's question on the device), so that a
// model whose weights hold such values fails with an error instead of handing garbage to the device's top-k. It
// reads each logit once, beside a vocab x dim output product: a few microseconds a pass.
#include "kernels.cuh"

namespace {

constexpr int kThreads = 256;

// Grid-stride: each thread's indices rise, so its first bad one is its least; the least over the threads is taken
// by atomicMin, which only a bad row ever reaches.
__global__ void __launch_bounds__(kThreads) first_non_finite_kernel(const float *x, int64_t n, unsigned long long *first) {
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += (int64_t)gridDim.x * kThreads) {
    if (!isfinite(x[i])) {
      atomicMin(first, (unsigned long long)i);
      return;
    }
  }
}

} // namespace

cudaError_t launch_first_non_finite(const float *values, int64_t n, unsigned long long *first, cudaStream_t stream) {
  const cudaError_t e = cudaMemsetAsync(first, 0xff, sizeof *first, stream);
  if (e != cudaSuccess) return e;
  const int64_t wanted = (n + kThreads * 8 - 1) / (kThreads * 8); // ~8 values per thread
  const int blocks = (int)(wanted < 1 ? 1 : wanted > 1024 ? 1024 : wanted);
  first_non_finite_kernel<<<blocks, kThreads, 0, stream>>>(values, n, first);
  return cudaGetLastError();
}
