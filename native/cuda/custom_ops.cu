// What the launchers of a custom op library (custom_ops.h) need from a pass in the layouts llama_napi_ops.h gives
// them: the rows' positions as one array, and the rows whose logits are wanted gathered before the final norm.
#include "kernels.cuh"

namespace {

__global__ void row_positions_kernel(int32_t *positions, const cuda_row *rows, int n_rows) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < n_rows) positions[r] = rows[r].pos;
}

__global__ void gather_rows_kernel(float *out, const float *x, const int32_t *row_map, int dim) {
  const float *src = x + (int64_t)row_map[blockIdx.x] * dim;
  float *dst = out + (int64_t)blockIdx.x * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}

} // namespace

cudaError_t launch_row_positions(int32_t *positions, const cuda_row *rows, int n_rows, cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  row_positions_kernel<<<(n_rows + 255) / 256, 256, 0, stream>>>(positions, rows, n_rows);
  return cudaGetLastError();
}

cudaError_t launch_gather_rows(float *out, const float *x, const int32_t *row_map, int n_rows, int dim, cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  gather_rows_kernel<<<n_rows, 256, 0, stream>>>(out, x, row_map, dim);
  return cudaGetLastError();
}
