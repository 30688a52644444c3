// Activation quantizers: the engine's q8_0 (llm_quantize_row_q8_0_ref) and q8_K (llm_quantize_row_q8_K) to the
// bit, so that the integer dot products of the quantized weights see the same activations as on the CPU; and the
// half-precision forms the tensor cores multiply f16 and bf16 weights with (matmul_mma.cu).
#include "kernels.cuh"

namespace {

constexpr int kWarpsPerBlock = 8;

// One warp per block of 32 values, one value per lane.
__global__ void quantize_q8_0_kernel(const float *x, act_q8_0 *y, int64_t n_blocks) {
  const int64_t b = (int64_t)blockIdx.x * kWarpsPerBlock + threadIdx.x / LLM_CUDA_WARP;
  if (b >= n_blocks) return;
  quantize_warp_q8_0(x[b * 32 + threadIdx.x % LLM_CUDA_WARP], y[b]);
}

// One warp per block of 256 values, 8 consecutive values per lane. The value of largest magnitude (the first
// such) maps to -127; values round half to even; bsums are the sums of each 16 (two lanes).
__global__ void quantize_q8_K_kernel(const float *x, act_q8_K *y, int64_t n_blocks) {
  const int64_t b = (int64_t)blockIdx.x * kWarpsPerBlock + threadIdx.x / LLM_CUDA_WARP;
  if (b >= n_blocks) return;
  const int lane = threadIdx.x % LLM_CUDA_WARP;
  const float4 *src = reinterpret_cast<const float4 *>(x + b * 256 + lane * 8);
  const float4 lo = src[0], hi = src[1];
  const float v[8] = { lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w };
  float amax = 0.0f, max = 0.0f;
  int first = 0x7fffffff;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    if (amax < fabsf(v[i])) {
      amax = fabsf(v[i]);
      max = v[i];
      first = lane * 8 + i;
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other_amax = __shfl_xor_sync(0xffffffffu, amax, offset);
    const float other_max = __shfl_xor_sync(0xffffffffu, max, offset);
    const int other_first = __shfl_xor_sync(0xffffffffu, first, offset);
    if (other_amax > amax || (other_amax == amax && other_first < first)) {
      amax = other_amax;
      max = other_max;
      first = other_first;
    }
  }
  act_q8_K &out = y[b];
  if (amax == 0.0f) {
    reinterpret_cast<int2 *>(out.qs)[lane] = make_int2(0, 0);
    if (lane < 16) out.bsums[lane] = 0;
    if (lane == 0) out.d = 0.0f;
    return;
  }
  const float iscale = -127.0f / max;
  uint32_t packed[2] = { 0, 0 };
  int sum = 0;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const int q = min((int)rintf(__fmul_rn(iscale, v[i])), 127);
    packed[i / 4] |= (uint32_t)(q & 0xff) << (8 * (i % 4));
    sum += q;
  }
  reinterpret_cast<int2 *>(out.qs)[lane] = make_int2((int)packed[0], (int)packed[1]);
  sum += __shfl_xor_sync(0xffffffffu, sum, 1);
  if (lane % 2 == 0) out.bsums[lane / 2] = (int16_t)sum;
  if (lane == 0) out.d = 1.0f / iscale;
}

// 8 values per thread: f16 rounded to nearest; or bf16 x2, hi = bf16(x) and lo = bf16(x - hi) (x - hi is exact in
// f32, and lo leaves 2^-16 of x over), a row's hi values followed by its lo values.
template <bool BF16X2> __global__ void convert_half_kernel(const float *x, uint8_t *out, int64_t n_units, int64_t units_per_row) {
  const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (u >= n_units) return;
  const float4 *src = reinterpret_cast<const float4 *>(x) + 2 * u;
  const float4 a = src[0], b = src[1];
  const float v[8] = { a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w };
  uint32_t hi[4], lo[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    if constexpr (BF16X2) {
      const __nv_bfloat16 h0 = __float2bfloat16_rn(v[2 * i]), h1 = __float2bfloat16_rn(v[2 * i + 1]);
      const __nv_bfloat16 l0 = __float2bfloat16_rn(v[2 * i] - __bfloat162float(h0)), l1 = __float2bfloat16_rn(v[2 * i + 1] - __bfloat162float(h1));
      hi[i] = (uint32_t)__bfloat16_as_ushort(h0) | (uint32_t)__bfloat16_as_ushort(h1) << 16;
      lo[i] = (uint32_t)__bfloat16_as_ushort(l0) | (uint32_t)__bfloat16_as_ushort(l1) << 16;
    } else {
      hi[i] = (uint32_t)__half_as_ushort(__float2half_rn(v[2 * i])) | (uint32_t)__half_as_ushort(__float2half_rn(v[2 * i + 1])) << 16;
    }
  }
  const int64_t row = u / units_per_row, unit = u % units_per_row;
  uint4 *dst = reinterpret_cast<uint4 *>(out + row * units_per_row * 16 * (BF16X2 ? 2 : 1)) + unit;
  *dst = make_uint4(hi[0], hi[1], hi[2], hi[3]);
  if constexpr (BF16X2) dst[units_per_row] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
}

} // namespace

cudaError_t launch_quantize(act_format format, const float *x, void *out, int n_rows, int64_t cols, cudaStream_t stream) {
  if (format == ACT_F32) return cudaErrorInvalidValue;
  if (format == ACT_F16 || format == ACT_BF16X2) {
    if (cols % 8 != 0) return cudaErrorInvalidValue;
    const int64_t n_units = (int64_t)n_rows * (cols / 8);
    const unsigned grid = (unsigned)((n_units + 255) / 256);
    if (grid == 0) return cudaSuccess;
    if (format == ACT_F16) convert_half_kernel<false><<<grid, 256, 0, stream>>>(x, static_cast<uint8_t *>(out), n_units, cols / 8);
    else convert_half_kernel<true><<<grid, 256, 0, stream>>>(x, static_cast<uint8_t *>(out), n_units, cols / 8);
    return cudaGetLastError();
  }
  const int64_t n_blocks = (int64_t)n_rows * (cols / (format == ACT_Q8_0 ? 32 : 256));
  const unsigned grid = (unsigned)((n_blocks + kWarpsPerBlock - 1) / kWarpsPerBlock);
  if (grid == 0) return cudaSuccess;
  if (format == ACT_Q8_0) quantize_q8_0_kernel<<<grid, kWarpsPerBlock * LLM_CUDA_WARP, 0, stream>>>(x, static_cast<act_q8_0 *>(out), n_blocks);
  else quantize_q8_K_kernel<<<grid, kWarpsPerBlock * LLM_CUDA_WARP, 0, stream>>>(x, static_cast<act_q8_K *>(out), n_blocks);
  return cudaGetLastError();
}
