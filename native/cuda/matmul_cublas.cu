// Prompt products through cuBLAS, where the library can be loaded at run time. It is not linked: the CUDA build
// stays a few MB and runs on machines without it, where matmul_mma.cu's tiles do the work. Where it loads, its
// f16 GEMM (f32 accumulation) is several times faster than those mma.sync tiles on an H100 (bench/RESULTS.md), so
// prompts take it: f16 weights meet the activations rounded to f16 as they are; quantized weights are first
// dequantized to f16 into a workspace, one matrix at a time (a read of the matrix and a write of twice its
// values, which the faster GEMM repays from 128 or 256 tokens: cublas_min_tokens). The activations rounded to
// f16 are finer than the q8_0 / q8_K ones of the other paths; the weights rounded to f16 lose at most 2^-11 of each
// value.
#include <dlfcn.h>
#include <library_types.h>

#include <mutex>

#include "formats.cuh"
#include "kernels.cuh"

namespace {

// The few cuBLAS declarations this file needs (cublas_api.h is not on every machine that builds us; these are
// the library's stable C ABI).
typedef struct cublasContext *cublasHandle_t;
constexpr int kCublasSuccess = 0, kCublasOpN = 0, kCublasOpT = 1, kCublasCompute32F = 68, kCublasGemmDefault = -1;
constexpr int kMaxDevices = 64;

struct Cublas {
  int (*create)(cublasHandle_t *);
  int (*set_stream)(cublasHandle_t, cudaStream_t);
  int (*gemm_ex)(cublasHandle_t, int transa, int transb, int m, int n, int k, const void *alpha, const void *a,
                 cudaDataType a_type, int lda, const void *b, cudaDataType b_type, int ldb, const void *beta, void *c,
                 cudaDataType c_type, int ldc, int compute_type, int algo);
  // One handle per device, made on first use and kept for the process (a handle is bound to its device); the
  // mutex keeps one thread's stream between set_stream and the GEMM it enqueues.
  cublasHandle_t handles[kMaxDevices];
  std::mutex mutex;
};

// The library, or null where none loads (LLAMA_NAPI_CUBLAS=0 turns it off; a path there is tried first).
Cublas *cublas() {
  static Cublas *loaded = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    const char *choice = getenv("LLAMA_NAPI_CUBLAS");
    if (choice && strcmp(choice, "0") == 0) return;
    const char *names[] = { choice, "libcublas.so.13", "libcublas.so.12", "libcublas.so" };
    for (const char *name : names) {
      void *lib = name ? dlopen(name, RTLD_NOW | RTLD_LOCAL) : nullptr;
      if (!lib) continue;
      static Cublas api;
      api.create = reinterpret_cast<decltype(api.create)>(dlsym(lib, "cublasCreate_v2"));
      api.set_stream = reinterpret_cast<decltype(api.set_stream)>(dlsym(lib, "cublasSetStream_v2"));
      api.gemm_ex = reinterpret_cast<decltype(api.gemm_ex)>(dlsym(lib, "cublasGemmEx"));
      if (api.create && api.set_stream && api.gemm_ex) {
        loaded = &api;
        return;
      }
      dlclose(lib);
    }
  });
  return loaded;
}

// out (rows x n_tokens, column-major: out[t * rows + r]) = W x, or += with add. cuBLAS is column-major: the
// row-major weights are their transpose there (cols x rows, ld cols), the tokens' f16 rows a cols x n_tokens matrix.
cudaError_t gemm_f16(const __half *w, int64_t rows, int64_t cols, const __half *x, int n_tokens, float *out, bool add,
                     cudaStream_t stream) {
  Cublas *api = cublas();
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  if (device >= kMaxDevices || rows > INT32_MAX || cols > INT32_MAX) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(api->mutex);
  cublasHandle_t &handle = api->handles[device];
  if (!handle && api->create(&handle) != kCublasSuccess) return cudaErrorInitializationError;
  if (api->set_stream(handle, stream) != kCublasSuccess) return cudaErrorUnknown;
  const float one = 1.0f, beta = add ? 1.0f : 0.0f;
  const int status = api->gemm_ex(handle, kCublasOpT, kCublasOpN, (int)rows, n_tokens, (int)cols, &one, w, CUDA_R_16F,
                                  (int)cols, x, CUDA_R_16F, (int)cols, &beta, out, CUDA_R_32F, (int)rows,
                                  kCublasCompute32F, kCublasGemmDefault);
  return status == kCublasSuccess ? cudaSuccess : cudaErrorUnknown;
}

// 8 consecutive values of a row per thread (cols is a multiple of 32 for the quantized types), as the engine
// dequantizes them, rounded to f16.
template <typename F>
__global__ void dequantize_f16_kernel(const uint8_t *w, size_t row_bytes, int64_t cols, int64_t n_units, __half *out) {
  const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (u >= n_units) return;
  const int64_t units_per_row = cols / 8, r = u / units_per_row, i0 = (u % units_per_row) * 8;
  const uint8_t *row = w + r * row_bytes;
  __align__(16) __half v[8];
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = __float2half_rn(F::value(row, i0 + j));
  *reinterpret_cast<uint4 *>(out + r * cols + i0) = *reinterpret_cast<const uint4 *>(v);
}

cudaError_t dequantize_f16(const cuda_matrix &w, __half *out, cudaStream_t stream) {
  const int64_t n_units = w.rows * (w.cols / 8);
  const unsigned grid = (unsigned)((n_units + 255) / 256);
  switch (w.type) {
  case LLM_Q8_0: dequantize_f16_kernel<FormatQ8_0><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_Q4_0: dequantize_f16_kernel<FormatQ4_0><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_Q4_1: dequantize_f16_kernel<FormatQ4_1><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_Q5_0: dequantize_f16_kernel<FormatQ5_0><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_Q5_1: dequantize_f16_kernel<FormatQ5_1><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_IQ4_NL: dequantize_f16_kernel<FormatIQ4_NL><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_Q2_K: dequantize_f16_kernel<FormatQ2_K><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_Q3_K: dequantize_f16_kernel<FormatQ3_K><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_Q4_K: dequantize_f16_kernel<FormatQ4_K><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_Q5_K: dequantize_f16_kernel<FormatQ5_K><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_Q6_K: dequantize_f16_kernel<FormatQ6_K><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  case LLM_IQ4_XS: dequantize_f16_kernel<FormatIQ4_XS><<<grid, 256, 0, stream>>>(w.data, w.row_bytes, w.cols, n_units, out); break;
  default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

} // namespace

bool cublas_loaded() { return cublas() != nullptr; }

size_t cublas_workspace_bytes(const cuda_matrix &w) {
  return llm_type_is_quantized(w.type) && w.cols % 8 == 0 && cublas_loaded() ? (size_t)w.rows * (size_t)w.cols * sizeof(__half) : 0;
}

// From where cuBLAS beats the tiles on both of a 7B layer's product shapes (4096 and 11008 rows; cuda_kernel_tests
// --time on the H100, bench/RESULTS.md): f16 from the tiles' own threshold; q8_0 and q4_0 from 128 tokens, q4_K and
// q6_K, whose dequantization takes longer, from 256. The other types of 32-value blocks take q4_0's threshold, the
// other super-block types q4_K's (not measured apart).
int cublas_min_tokens(int type) {
  if (type == LLM_F16) return 16;
  if (!llm_type_is_quantized(type)) return INT32_MAX;
  return llm_type_block_size(type) == 32 ? CUBLAS_MIN_TOKENS_QUANTIZED : 256;
}

bool matmul_takes_cublas(const cuda_matrix &w, int n_tokens, const matmul_workspace *workspace) {
  if (!workspace || workspace->graph_capture || w.cols % 8 != 0 || n_tokens < cublas_min_tokens(w.type) || !cublas_loaded()) return false;
  return w.type == LLM_F16 || cublas_workspace_bytes(w) <= workspace->f16_weight_bytes;
}

cudaError_t launch_matmul_cublas(const cuda_matrix *const weights[], float *const outs[], int n_products, const __half *x,
                                 int n_tokens, bool add, const matmul_workspace *workspace, cudaStream_t stream) {
  for (int i = 0; i < n_products; i++) {
    const cuda_matrix &w = *weights[i];
    if (!matmul_takes_cublas(w, n_tokens, workspace)) return cudaErrorInvalidValue;
    const __half *w16 = reinterpret_cast<const __half *>(w.data);
    if (w.type != LLM_F16) {
      // One workspace for every matrix: the stream orders each dequantization after the GEMM before it.
      const cudaError_t e = dequantize_f16(w, workspace->f16_weights, stream);
      if (e != cudaSuccess) return e;
      w16 = workspace->f16_weights;
    }
    const cudaError_t e = gemm_f16(w16, w.rows, w.cols, x, n_tokens, outs[i], add, stream);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}
