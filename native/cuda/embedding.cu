// Token embeddings (llm_embedding): each row's table row, dequantized.
#include "formats.cuh"
#include "kernels.cuh"

namespace {

constexpr int kThreads = 1024; // a 4096-wide row in 4 rounds of loads

__global__ void __launch_bounds__(kThreads) embedding_kernel(float *out, const cuda_matrix table, const cuda_row *rows) {
  const int r = blockIdx.x;
  const uint8_t *src = table.data + (size_t)rows[r].token * table.row_bytes;
  float *dst = out + (int64_t)r * table.cols;
  for (int64_t i = threadIdx.x; i < table.cols; i += kThreads) dst[i] = format_value(table.type, src, i);
}

} // namespace

cudaError_t launch_embedding(float *out, const cuda_matrix *table, const cuda_row *rows, int n_rows, cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  embedding_kernel<<<n_rows, kThreads, 0, stream>>>(out, *table, rows);
  return cudaGetLastError();
}
