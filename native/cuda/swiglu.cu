// SwiGLU (llm_swiglu) for feed-forwards whose gate and up have different types; otherwise the product fuses it.
#include "kernels.cuh"

namespace {

__global__ void swiglu_kernel(float *out, const float *gate, const float *up, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

} // namespace

cudaError_t launch_swiglu(float *out, const float *gate, const float *up, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int64_t blocks = (n + 255) / 256;
  swiglu_kernel<<<(unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, stream>>>(out, gate, up, n);
  return cudaGetLastError();
}
