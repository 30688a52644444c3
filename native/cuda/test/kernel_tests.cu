// The CUDA kernels against the engine's CPU functions on random data at awkward sizes (rows and columns that are
// not multiples of the warp or of a vector width, where the format allows), then a whole tiny model on the GPU
// against the CPU, the out-of-memory error at load, and the process going on after it. One line per check; exits
// non-zero if any fails. Run by test/cuda.test.js on a machine with a GPU.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels.cuh"
#include "llm_cuda.h"

extern "C" {
#include "forward.h"
#include "kv_cache.h"
#include "matmul.h"
#include "ops.h"
#include "quant.h"
}
#include "../../test/report.h"

namespace {


void check_cuda(cudaError_t e, const char *what) {
  if (e != cudaSuccess) {
    printf("FAIL %s: %s\n", what, cudaGetErrorString(e));
    exit(1);
  }
}

uint64_t rng_state = 0x9e3779b97f4a7c15ull;
float uniform() { // [-1, 1)
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

std::vector<float> random_floats(size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (float &x : v) x = uniform() * scale;
  return v;
}

// Device memory holding a copy of a host vector; poisoned (NaN bytes) when made empty, to catch unwritten output.
template <typename T> struct device_array {
  T *ptr = nullptr;
  size_t n = 0;
  explicit device_array(size_t count) : n(count) {
    check_cuda(cudaMalloc(&ptr, count * sizeof(T) + 64), "cudaMalloc");
    check_cuda(cudaMemset(ptr, 0xff, count * sizeof(T) + 64), "cudaMemset");
  }
  explicit device_array(const std::vector<T> &host) : device_array(host.size()) {
    check_cuda(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  ~device_array() { cudaFree(ptr); }
  std::vector<T> read() const {
    std::vector<T> host(n);
    check_cuda(cudaDeviceSynchronize(), "kernel");
    check_cuda(cudaMemcpy(host.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return host;
  }
};

// Largest |a - b| relative to the largest |b| (1 when the sizes differ or a value is NaN where b's is not).
double relative_error(const std::vector<float> &a, const std::vector<float> &b) {
  if (a.size() != b.size()) return 1;
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size(); i++) {
    if (isnan(a[i]) != isnan(b[i])) return 1;
    if (isnan(b[i])) continue;
    diff = fmax(diff, fabs((double)a[i] - b[i]));
    scale = fmax(scale, fabs((double)b[i]));
  }
  return diff / scale;
}

// Two sets of q8_0 activation blocks hold the same values (their padding aside).
bool same_q8_0_blocks(const device_array<act_q8_0> &a, const device_array<act_q8_0> &b) {
  const std::vector<act_q8_0> x = a.read(), y = b.read();
  for (size_t i = 0; i < x.size(); i++)
    if (memcmp(x[i].qs, y[i].qs, 32) != 0 || x[i].d != y[i].d || x[i].sum != y[i].sum) return false;
  return x.size() == y.size();
}

// A random weight matrix of a type, made by the engine's own quantizers (or, for timing alone, random bytes: the
// quantizers take seconds for a 7B layer's matrices); its device copy.
struct test_matrix {
  std::vector<uint8_t> bytes;
  llm_tensor host;
  device_array<uint8_t> device;
  cuda_matrix matrix;
  test_matrix(llm_type type, int64_t rows, int64_t cols, bool random_bytes = false)
      : bytes((size_t)rows * llm_row_bytes(type, cols)), device(bytes.size() + 16) {
    if (random_bytes) {
      for (uint8_t &b : bytes) b = (uint8_t)(uniform() * 127.0f);
    } else {
      std::vector<float> values = random_floats((size_t)(rows * cols));
      for (int64_t r = 0; r < rows; r++)
        llm_quantize_row(type, values.data() + r * cols, bytes.data() + r * llm_row_bytes(type, cols), cols);
    }
    check_cuda(cudaMemcpy(device.ptr, bytes.data(), bytes.size(), cudaMemcpyHostToDevice), "upload");
    host = llm_tensor{ bytes.data(), type, rows, cols };
    matrix = cuda_matrix{ device.ptr, (int)type, rows, cols, llm_row_bytes(type, cols) };
  }
};

// x in an activation format on the device (quantized or converted into scratch); the f32 rows themselves for
// ACT_F32. Scratch for n rows: activation_scratch(n, cols).
size_t activation_scratch(int n_tokens, int64_t cols) { return (size_t)n_tokens * cols * 4 + 256; } // bf16 x2 is the widest
const void *device_activations(act_format format, const device_array<float> &x, int n_tokens, int64_t cols, device_array<uint8_t> &scratch) {
  if (format == ACT_F32) return x.ptr;
  check_cuda(launch_quantize(format, x.ptr, scratch.ptr, n_tokens, cols, 0), "launch_quantize");
  return scratch.ptr;
}

void test_quantize(llm_threadpool *) {
  const int64_t cols = 768;
  const int n_rows = 3;
  std::vector<float> x = random_floats(n_rows * cols, 3.0f);
  for (int i = 0; i < 256; i++) x[i] = 0.0f;      // an all-zero q8_K block
  x[cols + 5] = 2.5f, x[cols + 9] = -2.5f;        // equal magnitudes: the first one decides the sign
  x[2 * cols + 7] = 1e-30f;                       // a tiny value next to normal ones
  device_array<float> dx(x);
  {
    device_array<act_q8_0> out(n_rows * cols / 32);
    check_cuda(launch_quantize(ACT_Q8_0, dx.ptr, out.ptr, n_rows, cols, 0), "quantize q8_0");
    std::vector<act_q8_0> got = out.read();
    std::vector<llm_block_q8_0> ref(n_rows * cols / 32);
    llm_quantize_row_q8_0_ref(x.data(), ref.data(), n_rows * cols);
    bool ok = true;
    for (size_t b = 0; b < ref.size(); b++) {
      int sum = 0;
      for (int j = 0; j < 32; j++) sum += ref[b].qs[j];
      ok = ok && memcmp(ref[b].qs, got[b].qs, 32) == 0 && llm_f16_to_f32(ref[b].d) == got[b].d && sum == got[b].sum;
    }
    report(ok, "quantize q8_0 activations: bit-identical to llm_quantize_row_q8_0_ref (%d x %lld)", n_rows, (long long)cols);
  }
  {
    device_array<act_q8_K> out(n_rows * cols / 256);
    check_cuda(launch_quantize(ACT_Q8_K, dx.ptr, out.ptr, n_rows, cols, 0), "quantize q8_K");
    std::vector<act_q8_K> got = out.read();
    std::vector<llm_block_q8_K> ref(n_rows * cols / 256);
    llm_quantize_row_q8_K(x.data(), ref.data(), n_rows * cols);
    bool ok = true;
    for (size_t b = 0; b < ref.size(); b++)
      ok = ok && memcmp(ref[b].qs, got[b].qs, 256) == 0 && ref[b].d == got[b].d && memcmp(ref[b].bsums, got[b].bsums, 32) == 0;
    report(ok, "quantize q8_K activations: bit-identical to llm_quantize_row_q8_K (%d x %lld)", n_rows, (long long)cols);
  }
}

// Largest relative error a product may show against llm_matmul. The quantized types form the CPU's integers, so
// only the order of float sums differs. On the tensor cores f16 weights meet activations rounded to f16 (2^-11 of
// each value, llama.cpp's choice too); bf16 weights meet activations split into two bf16 terms (2^-16 left over).
double product_tolerance(llm_type type, bool tensor_cores) {
  if (!tensor_cores) return 2e-5;
  return type == LLM_F16 ? 1e-3 : type == LLM_BF16 ? 5e-5 : 2e-5;
}

void test_matmul(llm_threadpool *pool) {
  struct shape {
    llm_type type;
    int64_t cols;
  };
  const shape shapes[] = {
    { LLM_F32, 37 }, { LLM_F32, 260 }, { LLM_F16, 36 }, { LLM_F16, 264 }, { LLM_BF16, 36 }, { LLM_BF16, 264 },
    { LLM_Q8_0, 32 }, { LLM_Q8_0, 352 }, { LLM_Q4_0, 32 }, { LLM_Q4_0, 352 }, { LLM_Q4_K, 256 }, { LLM_Q4_K, 768 },
    { LLM_Q6_K, 256 }, { LLM_Q6_K, 768 },
  };
  const int row_counts[] = { 1, 67 };
  const int token_counts[] = { 1, 2, 3, 8, 13, 20 }; // 20: f16 and bf16 on the tensor cores, the others not yet
  for (const shape &s : shapes) {
    for (int rows : row_counts) {
      test_matrix w(s.type, rows, s.cols);
      for (int n_tokens : token_counts) {
        std::vector<float> x = random_floats((size_t)n_tokens * s.cols);
        std::vector<float> ref((size_t)n_tokens * rows);
        llm_matmul(pool, ref.data(), &w.host, x.data(), n_tokens);
        device_array<float> dx(x), out((size_t)n_tokens * rows);
        device_array<uint8_t> act(activation_scratch(n_tokens, s.cols));
        const act_format format = matmul_activation_format(w.matrix, n_tokens);
        const void *input = device_activations(format, dx, n_tokens, s.cols, act);
        const cuda_matrix *weights[] = { &w.matrix };
        float *const outs[] = { out.ptr };
        check_cuda(launch_matmul(weights, outs, 1, input, activation_row_bytes(format, s.cols), n_tokens,
                                 MATMUL_STORE, 0), "launch_matmul");
        const double e = relative_error(out.read(), ref);
        const bool mma = matmul_takes_tensor_cores(w.matrix, n_tokens);
        report(e < product_tolerance(s.type, mma), "matmul %s %d x %lld, %d tokens (%s): relative error %.2e vs llm_matmul",
               llm_type_name(s.type), rows, (long long)s.cols, n_tokens, mma ? "tensor cores" : "CUDA cores", e);
      }
    }
  }
  // Three products of one input in one launch, the residual add, and the fused SwiGLU: on the CUDA cores (5
  // tokens) and on the tensor cores (40 tokens).
  for (llm_type type : { LLM_F16, LLM_BF16, LLM_Q8_0, LLM_Q4_0, LLM_Q4_K, LLM_Q6_K })
  for (int n_tokens : { 5, 40 }) {
    if (n_tokens == 5 && (type == LLM_BF16 || type == LLM_Q8_0 || type == LLM_Q6_K)) continue; // as before
    const int64_t cols = 512;
    test_matrix a(type, 70, cols), b(type, 33, cols), c(type, 70, cols);
    const bool mma = matmul_takes_tensor_cores(a.matrix, n_tokens);
    const double tolerance = product_tolerance(type, mma);
    const char *path = mma ? "tensor cores" : "CUDA cores";
    std::vector<float> x = random_floats(n_tokens * cols);
    std::vector<float> ra(n_tokens * 70), rb(n_tokens * 33), rc(n_tokens * 70);
    llm_matmul(pool, ra.data(), &a.host, x.data(), n_tokens);
    llm_matmul(pool, rb.data(), &b.host, x.data(), n_tokens);
    llm_matmul(pool, rc.data(), &c.host, x.data(), n_tokens);
    device_array<float> dx(x), oa(ra.size()), ob(rb.size()), oc(rc.size());
    device_array<uint8_t> act(activation_scratch(n_tokens, cols));
    const act_format format = matmul_activation_format(a.matrix, n_tokens);
    const void *input = device_activations(format, dx, n_tokens, cols, act);
    const size_t stride = activation_row_bytes(format, cols);
    const cuda_matrix *three[] = { &a.matrix, &b.matrix, &c.matrix };
    float *const three_out[] = { oa.ptr, ob.ptr, oc.ptr };
    check_cuda(launch_matmul(three, three_out, 3, input, stride, n_tokens, MATMUL_STORE, 0), "launch_matmul x3");
    const double e3 = std::max(relative_error(oa.read(), ra), std::max(relative_error(ob.read(), rb), relative_error(oc.read(), rc)));
    report(e3 < tolerance, "matmul %s, %d tokens (%s): three products in one launch, relative error %.2e", llm_type_name(type),
           n_tokens, path, e3);

    std::vector<float> residual = random_floats(ra.size()), added(ra.size());
    for (size_t i = 0; i < ra.size(); i++) added[i] = residual[i] + ra[i];
    device_array<float> dres(residual);
    const cuda_matrix *one[] = { &a.matrix };
    float *const res_out[] = { dres.ptr };
    check_cuda(launch_matmul(one, res_out, 1, input, stride, n_tokens, MATMUL_ADD, 0), "launch_matmul add");
    const double ea = relative_error(dres.read(), added);
    report(ea < tolerance, "matmul %s, %d tokens (%s): accumulate into the residual, relative error %.2e", llm_type_name(type),
           n_tokens, path, ea);

    std::vector<float> swiglu(ra.size());
    llm_swiglu(swiglu.data(), ra.data(), rc.data(), (int64_t)ra.size());
    device_array<float> dswiglu(ra.size());
    const cuda_matrix *pair[] = { &a.matrix, &c.matrix };
    float *const pair_out[] = { dswiglu.ptr, oc.ptr };
    check_cuda(launch_matmul(pair, pair_out, 2, input, stride, n_tokens, MATMUL_SWIGLU, 0), "launch_matmul swiglu");
    const double es = relative_error(dswiglu.read(), swiglu);
    report(es < 2.5 * tolerance, "matmul %s, %d tokens (%s): gate and up with SwiGLU, relative error %.2e", llm_type_name(type),
           n_tokens, path, es);
  }
}

// The tensor-core tiles (launch_matmul_mma) at sizes that are not multiples of theirs: 128 rows, 64 tokens, 256
// (quantized) or 128 (f16/bf16) columns; a single token too, although launch_matmul sends so few elsewhere.
void test_matmul_mma(llm_threadpool *pool) {
  struct shape {
    llm_type type;
    int64_t cols;
  };
  const shape shapes[] = { { LLM_Q8_0, 352 }, { LLM_Q8_0, 1024 }, { LLM_Q4_0, 352 }, { LLM_Q4_0, 1056 }, { LLM_Q4_K, 768 },
                           { LLM_Q6_K, 768 }, { LLM_F16, 264 }, { LLM_F16, 520 }, { LLM_BF16, 264 }, { LLM_BF16, 520 } };
  for (const shape &s : shapes) {
    for (int rows : { 67, 200 }) {
      test_matrix w(s.type, rows, s.cols);
      for (int n_tokens : { 1, 33, 77, 130 }) {
        std::vector<float> x = random_floats((size_t)n_tokens * s.cols);
        std::vector<float> ref((size_t)n_tokens * rows);
        llm_matmul(pool, ref.data(), &w.host, x.data(), n_tokens);
        device_array<float> dx(x), out((size_t)n_tokens * rows);
        device_array<uint8_t> act(activation_scratch(n_tokens, s.cols));
        const act_format format = mma_activation_format(s.type);
        const void *input = device_activations(format, dx, n_tokens, s.cols, act);
        const cuda_matrix *weights[] = { &w.matrix };
        float *const outs[] = { out.ptr };
        check_cuda(launch_matmul_mma(weights, outs, 1, input, activation_row_bytes(format, s.cols), n_tokens,
                                     false, 0), "launch_matmul_mma");
        const double e = relative_error(out.read(), ref);
        report(e < product_tolerance(s.type, true), "matmul on the tensor cores %s %d x %lld, %d tokens: relative error %.2e vs llm_matmul",
               llm_type_name(s.type), rows, (long long)s.cols, n_tokens, e);
      }
    }
  }
}

// The weights of a test matrix dequantized, as an f32 tensor.
struct dequantized_matrix {
  std::vector<float> values;
  llm_tensor host;
  explicit dequantized_matrix(const test_matrix &m) : values((size_t)(m.host.rows * m.host.cols)) {
    for (int64_t r = 0; r < m.host.rows; r++)
      llm_dequantize_row(m.host.type, m.bytes.data() + r * m.matrix.row_bytes, values.data() + r * m.host.cols, m.host.cols);
    host = llm_tensor{ values.data(), LLM_F32, m.host.rows, m.host.cols };
  }
};

// The cuBLAS path (launch_matmul with a workspace, where the library loads): quantized weights dequantized to f16,
// f16 weights as they are, against f16 activations; one product, the residual add and SwiGLU. The reference is the
// weights' own values times the f32 activations (llm_matmul's q8 activations would differ from it by ~4e-3).
// Without cuBLAS on the machine this is a failure only where LLAMA_NAPI_EXPECT_CUBLAS=1 says it should be there
// (bench/cuda/run.sh).
void test_matmul_cublas(llm_threadpool *pool) {
  const char *expect = getenv("LLAMA_NAPI_EXPECT_CUBLAS");
  if (!cublas_loaded()) {
    const bool expected = expect && strcmp(expect, "1") == 0;
    report(!expected, "cuBLAS %s: its products not tested", expected ? "expected but not loaded" : "not on this machine");
    return;
  }
  struct shape {
    llm_type type;
    int64_t cols;
  };
  const shape shapes[] = { { LLM_Q8_0, 352 }, { LLM_Q4_0, 1056 }, { LLM_Q4_K, 768 }, { LLM_Q6_K, 768 }, { LLM_F16, 264 } };
  for (const shape &s : shapes) {
    for (int rows : { 67, 200 }) {
      test_matrix w(s.type, rows, s.cols), up(s.type, rows, s.cols);
      device_array<__half> dequantized((size_t)rows * s.cols);
      const matmul_workspace workspace = { dequantized.ptr, dequantized.n * sizeof(__half) };
      for (int n_tokens : { cublas_min_tokens(s.type), cublas_min_tokens(s.type) + 37 }) {
        std::vector<float> x = random_floats((size_t)n_tokens * s.cols);
        std::vector<float> ref((size_t)n_tokens * rows), ref_up(ref.size());
        const dequantized_matrix w32(w), up32(up);
        llm_matmul(pool, ref.data(), &w32.host, x.data(), n_tokens);
        llm_matmul(pool, ref_up.data(), &up32.host, x.data(), n_tokens);
        device_array<float> dx(x), out(ref.size()), out_up(ref.size());
        device_array<uint8_t> act(activation_scratch(n_tokens, s.cols));
        const act_format format = matmul_activation_format(w.matrix, n_tokens, &workspace);
        const void *input = device_activations(format, dx, n_tokens, s.cols, act);
        const size_t stride = activation_row_bytes(format, s.cols);
        const cuda_matrix *one[] = { &w.matrix };
        float *const outs[] = { out.ptr };
        check_cuda(launch_matmul(one, outs, 1, input, stride, n_tokens, MATMUL_STORE, 0, &workspace), "launch_matmul (cuBLAS)");
        const bool blas = matmul_takes_cublas(w.matrix, n_tokens, &workspace) && format == ACT_F16;
        const double e = relative_error(out.read(), ref);
        report(blas && e < 1e-3, "matmul through cuBLAS %s %d x %lld, %d tokens: relative error %.2e vs the f32 product",
               llm_type_name(s.type), rows, (long long)s.cols, n_tokens, e);

        std::vector<float> residual = random_floats(ref.size()), added(ref.size());
        for (size_t i = 0; i < ref.size(); i++) added[i] = residual[i] + ref[i];
        device_array<float> dres(residual);
        float *const res_out[] = { dres.ptr };
        check_cuda(launch_matmul(one, res_out, 1, input, stride, n_tokens, MATMUL_ADD, 0, &workspace), "launch_matmul (cuBLAS) add");
        const double ea = relative_error(dres.read(), added);
        report(ea < 1e-3, "matmul through cuBLAS %s, %d tokens: accumulate into the residual, relative error %.2e",
               llm_type_name(s.type), n_tokens, ea);

        std::vector<float> swiglu(ref.size());
        llm_swiglu(swiglu.data(), ref.data(), ref_up.data(), (int64_t)ref.size());
        const cuda_matrix *pair[] = { &w.matrix, &up.matrix };
        float *const pair_out[] = { out.ptr, out_up.ptr };
        check_cuda(launch_matmul(pair, pair_out, 2, input, stride, n_tokens, MATMUL_SWIGLU, 0, &workspace), "launch_matmul (cuBLAS) swiglu");
        const double es = relative_error(out.read(), swiglu);
        report(es < 2.5e-3, "matmul through cuBLAS %s, %d tokens: gate and up with SwiGLU, relative error %.2e",
               llm_type_name(s.type), n_tokens, es);
      }
    }
  }
}

// With --time: the products of a 7B layer's shapes at several token counts, launch_matmul (whichever path it
// takes, with a workspace for cuBLAS: its times include the dequantization) against the tensor-core tiles, median of 9 event-timed runs, in TOPS (2 rows cols tokens per second).
// --time TYPE: that type's 4096 x 4096 product of 512 tokens alone (for a profiler).
void time_products(const char *only) {
  for (llm_type type : { LLM_Q4_0, LLM_Q8_0, LLM_Q4_K, LLM_Q6_K, LLM_F16, LLM_BF16 }) {
    if (only && strcmp(only, llm_type_name(type)) != 0) continue;
    for (int64_t rows : { 4096, 11008 }) {
      if (only && rows != 4096) continue;
      const int64_t cols = 4096;
      test_matrix w(type, rows, cols, true);
      const int max_tokens = 512;
      device_array<float> dx(random_floats((size_t)max_tokens * cols)), out((size_t)max_tokens * rows);
      // The activations in the CUDA cores' format and in the tensor cores' (they differ for f16 and bf16).
      device_array<uint8_t> act_warp(activation_scratch(max_tokens, cols)), act_mma(activation_scratch(max_tokens, cols));
      device_array<uint8_t> act_f16(activation_scratch(max_tokens, cols));
      const void *input_warp = device_activations(activation_format(type), dx, max_tokens, cols, act_warp);
      const void *input_mma = device_activations(mma_activation_format(type), dx, max_tokens, cols, act_mma);
      const void *input_f16 = device_activations(ACT_F16, dx, max_tokens, cols, act_f16);
      device_array<__half> dequantized(cublas_workspace_bytes(w.matrix) / sizeof(__half) + 1);
      const matmul_workspace workspace = { dequantized.ptr, cublas_workspace_bytes(w.matrix) };
      const cuda_matrix *weights[] = { &w.matrix };
      float *const outs[] = { out.ptr };
      for (int n_tokens : { 8, 16, 24, 31, 32, 64, 128, 256, 512 }) {
        if (only && n_tokens != 512) continue;
        double ms[2];
        for (int path = 0; path < 2; path++) {
          cudaEvent_t start, stop;
          cudaEventCreate(&start);
          cudaEventCreate(&stop);
          std::vector<float> runs;
          for (int r = 0; r < 10; r++) {
            cudaEventRecord(start);
            const act_format format = path == 0 ? matmul_activation_format(w.matrix, n_tokens, &workspace) : mma_activation_format(type);
            const void *input = format == activation_format(type) ? input_warp : format == mma_activation_format(type) ? input_mma : input_f16;
            const size_t stride = activation_row_bytes(format, cols);
            check_cuda(path == 0 ? launch_matmul(weights, outs, 1, input, stride, n_tokens, MATMUL_STORE, 0, &workspace)
                                 : launch_matmul_mma(weights, outs, 1, input, stride, n_tokens, false, 0), "timed product");
            cudaEventRecord(stop);
            check_cuda(cudaEventSynchronize(stop), "timed product");
            float t = 0;
            cudaEventElapsedTime(&t, start, stop);
            if (r > 0) runs.push_back(t);
          }
          std::sort(runs.begin(), runs.end());
          ms[path] = runs[runs.size() / 2];
          cudaEventDestroy(start);
          cudaEventDestroy(stop);
        }
        const double ops = 2.0 * rows * cols * n_tokens;
        printf("time %-5s %5lld x %lld, %3d tokens: launch_matmul (%-6s) %8.1f us %6.1f TOPS | tensor cores %8.1f us %6.1f TOPS\n",
               llm_type_name(type), (long long)rows, (long long)cols, n_tokens,
               matmul_takes_cublas(w.matrix, n_tokens, &workspace) ? "cublas" : matmul_takes_tensor_cores(w.matrix, n_tokens) ? "mma" : "warp",
               1e3 * ms[0], ops / ms[0] * 1e-9, 1e3 * ms[1], ops / ms[1] * 1e-9);
      }
    }
  }
}

void test_rmsnorm_embedding_swiglu() {
  for (llm_type type : { LLM_F32, LLM_F16, LLM_BF16 }) {
    for (int dim : { 37, 4096 }) {
      test_matrix w(type, 1, dim);
      const int n_rows = 3;
      std::vector<float> x = random_floats((size_t)n_rows * dim, 4.0f), ref((size_t)n_rows * dim);
      // Rows in reverse through the row map, as the logits' final norm gathers them.
      std::vector<int32_t> map = { 2, 1, 0 };
      for (int r = 0; r < n_rows; r++) llm_rmsnorm(ref.data() + r * dim, x.data() + map[r] * dim, &w.host, 1, dim, 1e-5f);
      device_array<float> dx(x), out(ref.size());
      device_array<int32_t> dmap(map);
      check_cuda(launch_rmsnorm(out.ptr, dx.ptr, &w.matrix, dmap.ptr, n_rows, dim, 1e-5f, 0), "launch_rmsnorm");
      const std::vector<float> normed = out.read();
      const double e = relative_error(normed, ref);
      report(e < 1e-6, "rmsnorm %s weights, dim %d, gathered rows: relative error %.2e", llm_type_name(type), dim, e);
      if (dim % 32 == 0) {
        // Fused with the q8_0 quantization: the same rows, and the bytes launch_quantize makes of them.
        device_array<float> fused_out(ref.size());
        device_array<act_q8_0> fused_act((size_t)n_rows * dim / 32), act((size_t)n_rows * dim / 32);
        check_cuda(launch_rmsnorm(fused_out.ptr, dx.ptr, &w.matrix, dmap.ptr, n_rows, dim, 1e-5f, 0, fused_act.ptr), "launch_rmsnorm q8_0");
        check_cuda(launch_quantize(ACT_Q8_0, fused_out.ptr, act.ptr, n_rows, dim, 0), "launch_quantize");
        const bool same = fused_out.read() == normed && same_q8_0_blocks(fused_act, act);
        report(same, "rmsnorm %s weights, dim %d, fused with the q8_0 quantization: bit-identical to rmsnorm then launch_quantize",
               llm_type_name(type), dim);
      }
    }
  }
  for (int t = 0; t < LLM_TYPE_COUNT; t++) {
    if (!llm_cuda_supports_type(t)) continue;  // gaps in ggml's numbering, and types without CUDA kernels yet
    const llm_type type = (llm_type)t;
    const int64_t cols = llm_type_block_size(type) == 256 ? 512 : llm_type_block_size(type) == 32 ? 96 : 41;
    test_matrix table(type, 50, cols);
    std::vector<cuda_row> rows(4);
    const int tokens[] = { 49, 0, 17, 17 };
    std::vector<float> ref(4 * cols);
    for (int r = 0; r < 4; r++) {
      rows[r] = cuda_row{ nullptr, nullptr, 0, 0, tokens[r] };
      llm_embedding(ref.data() + r * cols, &table.host, tokens[r]);
    }
    device_array<cuda_row> drows(rows);
    device_array<float> out(ref.size());
    check_cuda(launch_embedding(out.ptr, &table.matrix, drows.ptr, 4, 0), "launch_embedding");
    std::vector<float> got = out.read();
    report(memcmp(got.data(), ref.data(), ref.size() * sizeof(float)) == 0,
           "embedding %s: bit-identical to llm_embedding (the engine's dequantizer)", llm_type_name(type));
  }
  std::vector<float> gate = random_floats(1000, 8.0f), up = random_floats(1000), ref(1000);
  llm_swiglu(ref.data(), gate.data(), up.data(), 1000);
  device_array<float> dg(gate), du(up), out(1000);
  check_cuda(launch_swiglu(out.ptr, dg.ptr, du.ptr, 1000, 0), "launch_swiglu");
  const double e = relative_error(out.read(), ref);
  report(e < 1e-6, "swiglu: relative error %.2e vs llm_swiglu", e);
}

// Rope and the cache store, then attention over those caches, for several sequences at once: a prompt of 5 tokens
// late in a context that spans three chunks, single decoded tokens, and prompts of 45 and 40 tokens (tiles of 32 +
// 13 and 32 + 8 rows for launch_attention_tiles).
void test_rope_attention(llm_threadpool *pool) {
  struct seq_case {
    int pos, n_tokens;
  };
  const seq_case cases[] = { { 600, 5 }, { 300, 1 }, { 0, 1 }, { 100, 45 }, { 0, 40 } };
  const size_t n_cases = sizeof cases / sizeof cases[0];
  for (int head_dim : { 10, 40, 128 }) {
    for (bool interleaved : { true, false }) {
      const int n_heads = 4, n_kv_heads = 2, context = 700, n_layers = 2, layer = 1;
      const int64_t q_dim = (int64_t)n_heads * head_dim, kv_dim = (int64_t)n_kv_heads * head_dim;
      const int64_t layer_stride = (int64_t)context * kv_dim;
      std::vector<float> freqs(head_dim / 2);
      for (int i = 0; i < head_dim / 2; i++) freqs[i] = powf(10000.0f, -2.0f * i / head_dim);
      device_array<float> dfreqs(freqs);
      int n_rows = 0;
      for (const seq_case &c : cases) n_rows += c.n_tokens;
      std::vector<float> q = random_floats(n_rows * q_dim), k = random_floats(n_rows * kv_dim), v = random_floats(n_rows * kv_dim);
      // Caches full of random history; the rows' own positions are written by the store.
      std::vector<std::vector<float>> keys, values;
      std::vector<device_array<float> *> dkeys, dvalues;
      std::vector<cuda_row> rows;
      for (const seq_case &c : cases) {
        keys.push_back(random_floats(n_layers * layer_stride));
        values.push_back(random_floats(n_layers * layer_stride));
        dkeys.push_back(new device_array<float>(keys.back()));
        dvalues.push_back(new device_array<float>(values.back()));
        for (int t = 0; t < c.n_tokens; t++)
          rows.push_back(cuda_row{ dkeys.back()->ptr, dvalues.back()->ptr, layer_stride, c.pos + t, 0 });
      }
      // The CPU: rope each row, store k and v, then attention.
      std::vector<float> q_cpu = q, k_cpu = k;
      std::vector<llm_attention_seq> seqs;
      std::vector<float> out_cpu(n_rows * q_dim);
      int row = 0;
      for (size_t s = 0; s < n_cases; s++) {
        for (int t = 0; t < cases[s].n_tokens; t++, row++) {
          llm_rope(q_cpu.data() + row * q_dim, n_heads, head_dim, cases[s].pos + t, freqs.data(), interleaved);
          llm_rope(k_cpu.data() + row * kv_dim, n_kv_heads, head_dim, cases[s].pos + t, freqs.data(), interleaved);
          memcpy(keys[s].data() + layer * layer_stride + (cases[s].pos + t) * kv_dim, k_cpu.data() + row * kv_dim, kv_dim * 4);
          memcpy(values[s].data() + layer * layer_stride + (cases[s].pos + t) * kv_dim, v.data() + row * kv_dim, kv_dim * 4);
        }
        const int first = row - cases[s].n_tokens;
        seqs.push_back(llm_attention_seq{ out_cpu.data() + first * q_dim, q_cpu.data() + first * q_dim,
                                          keys[s].data() + layer * layer_stride, values[s].data() + layer * layer_stride,
                                          cases[s].n_tokens, cases[s].pos });
      }
      std::vector<float> scores((size_t)llm_threadpool_size(pool) * context);
      const llm_attention_args args = { seqs.data(), (int)n_cases, scores.data(), context, n_heads, n_kv_heads, head_dim };
      llm_attention(pool, &args);

      device_array<float> dq(q), dk(k), dv(v), out(n_rows * q_dim);
      device_array<cuda_row> drows(rows);
      check_cuda(launch_rope_store(dq.ptr, dk.ptr, dv.ptr, drows.ptr, n_rows, layer, n_heads, n_kv_heads, head_dim, dfreqs.ptr,
                                   interleaved, 0), "launch_rope_store");
      const double eq = relative_error(dq.read(), q_cpu);
      double ec = 0;
      for (size_t s = 0; s < n_cases; s++)
        ec = std::max(ec, std::max(relative_error(dkeys[s]->read(), keys[s]), relative_error(dvalues[s]->read(), values[s])));
      report(eq < 1e-5 && ec < 1e-5, "rope (%s, head_dim %d) and the cache store: relative error q %.2e, caches %.2e",
             interleaved ? "interleaved" : "half", head_dim, eq, ec);
      const int n_chunks = (context + ATTENTION_CHUNK - 1) / ATTENTION_CHUNK;
      device_array<float> partial(attention_partial_floats(n_rows, n_heads, head_dim, n_chunks));
      check_cuda(launch_attention(out.ptr, dq.ptr, drows.ptr, n_rows, layer, n_heads, n_kv_heads, head_dim, n_chunks, partial.ptr,
                                  nullptr, 0), "launch_attention");
      const double ea = relative_error(out.read(), out_cpu);
      report(ea < 1e-5, "attention (head_dim %d, GQA 4/2, %d chunks, prompts and two decodes): relative error %.2e vs llm_attention",
             head_dim, n_chunks, ea);
      if (head_dim % 32 == 0) {
        // The merge quantizing its rows for the output product: the bytes launch_quantize makes of them.
        const std::vector<float> split = out.read();
        device_array<float> out_q(n_rows * q_dim);
        device_array<act_q8_0> fused(n_rows * q_dim / 32), want(n_rows * q_dim / 32);
        check_cuda(launch_attention(out_q.ptr, dq.ptr, drows.ptr, n_rows, layer, n_heads, n_kv_heads, head_dim, n_chunks, partial.ptr,
                                    nullptr, 0, fused.ptr), "launch_attention q8_0");
        check_cuda(launch_quantize(ACT_Q8_0, out_q.ptr, want.ptr, n_rows, q_dim, 0), "launch_quantize");
        const bool same = out_q.read() == split && same_q8_0_blocks(fused, want);
        report(same, "attention (head_dim %d) quantizing its rows to q8_0 in the merge: bit-identical to launch_quantize", head_dim);
      }
      // The prompts' runs in tiles, the other rows split-K, as a pass runs them.
      std::vector<int32_t> tiles(2 * n_rows);
      std::vector<uint8_t> row_tiled(n_rows);
      int n_tiled_rows = 0;
      const int n_tiles = plan_attention_tiles(rows.data(), n_rows, head_dim, tiles.data(), row_tiled.data(), &n_tiled_rows);
      device_array<int32_t> dtiles(tiles);
      device_array<uint8_t> drow_tiled(row_tiled);
      device_array<float> out_tiled(n_rows * q_dim);
      check_cuda(launch_attention_tiles(out_tiled.ptr, dq.ptr, drows.ptr, dtiles.ptr, n_tiles, layer, n_heads, n_kv_heads, head_dim, 0),
                 "launch_attention_tiles");
      check_cuda(launch_attention(out_tiled.ptr, dq.ptr, drows.ptr, n_rows, layer, n_heads, n_kv_heads, head_dim, n_chunks, partial.ptr,
                                  drow_tiled.ptr, 0), "launch_attention");
      const double et = relative_error(out_tiled.read(), out_cpu);
      const int expected_tiles = head_dim % 4 == 0 ? 4 : 0; // 32 + 13 and 32 + 8 rows
      report(et < 1e-5 && n_tiles == expected_tiles,
             "attention (head_dim %d) with %d prompt tiles (%d rows) and the rest split-K: relative error %.2e vs llm_attention",
             head_dim, n_tiles, n_tiled_rows, et);
      for (size_t s = 0; s < n_cases; s++) {
        delete dkeys[s];
        delete dvalues[s];
      }
    }
  }
}

// A decode pass's attention rotating its rows' queries and keys and storing keys and values itself (each row its
// own sequence): the same bits as launch_rope_store then launch_attention, in the output, its q8_0 rows and the
// caches, with one chunk (the block writes the output, no merge) and with three.
void test_attention_with_rope() {
  for (int head_dim : { 40, 64, 128 }) {
    for (bool interleaved : { true, false }) {
      for (int n_chunks : { 1, 3 }) {
        const int positions[] = { 0, 37, 255, n_chunks == 1 ? 200 : 699, n_chunks == 1 ? 1 : 256 };
        const int n_rows = 5, n_heads = 4, n_kv_heads = 2, n_layers = 2, layer = 1, context = n_chunks * ATTENTION_CHUNK;
        const int64_t q_dim = (int64_t)n_heads * head_dim, kv_dim = (int64_t)n_kv_heads * head_dim;
        const int64_t layer_stride = (int64_t)context * kv_dim, cache_floats = n_layers * layer_stride;
        std::vector<float> freqs(head_dim / 2);
        for (int i = 0; i < head_dim / 2; i++) freqs[i] = powf(10000.0f, -2.0f * i / head_dim);
        const std::vector<float> q = random_floats(n_rows * q_dim), k = random_floats(n_rows * kv_dim), v = random_floats(n_rows * kv_dim);
        const std::vector<float> key_history = random_floats(n_rows * cache_floats), value_history = random_floats(n_rows * cache_floats);
        device_array<float> dfreqs(freqs), dk(k), dv(v), q_separate(q), q_fused(q);
        device_array<float> keys_separate(key_history), values_separate(value_history), keys_fused(key_history), values_fused(value_history);
        std::vector<cuda_row> rows_separate, rows_fused;
        for (int r = 0; r < n_rows; r++) {
          rows_separate.push_back(cuda_row{ keys_separate.ptr + r * cache_floats, values_separate.ptr + r * cache_floats, layer_stride, positions[r], 0 });
          rows_fused.push_back(cuda_row{ keys_fused.ptr + r * cache_floats, values_fused.ptr + r * cache_floats, layer_stride, positions[r], 0 });
        }
        device_array<cuda_row> drows_separate(rows_separate), drows_fused(rows_fused);
        device_array<float> partial(attention_partial_floats(n_rows, n_heads, head_dim, n_chunks)), out_separate(n_rows * q_dim),
            out_fused(n_rows * q_dim);
        const bool quantize = head_dim % 32 == 0;
        device_array<act_q8_0> q8_separate(n_rows * q_dim / 32), q8_fused(n_rows * q_dim / 32);
        check_cuda(launch_rope_store(q_separate.ptr, dk.ptr, dv.ptr, drows_separate.ptr, n_rows, layer, n_heads, n_kv_heads, head_dim,
                                     dfreqs.ptr, interleaved, 0), "launch_rope_store");
        check_cuda(launch_attention(out_separate.ptr, q_separate.ptr, drows_separate.ptr, n_rows, layer, n_heads, n_kv_heads, head_dim,
                                    n_chunks, partial.ptr, nullptr, 0, quantize ? q8_separate.ptr : nullptr), "launch_attention");
        check_cuda(launch_attention(out_fused.ptr, q_fused.ptr, drows_fused.ptr, n_rows, layer, n_heads, n_kv_heads, head_dim, n_chunks,
                                    partial.ptr, nullptr, 0, quantize ? q8_fused.ptr : nullptr,
                                    attention_rope{ dk.ptr, dv.ptr, dfreqs.ptr, interleaved }),
                   "launch_attention with rope");
        const bool same = out_fused.read() == out_separate.read() && keys_fused.read() == keys_separate.read() &&
                          values_fused.read() == values_separate.read() && q_fused.read() == q &&
                          (!quantize || same_q8_0_blocks(q8_fused, q8_separate));
        report(same, "attention rotating and storing its decode rows (%s, head_dim %d, %d chunk%s%s): bit-identical to rope, then attention",
               interleaved ? "interleaved" : "half", head_dim, n_chunks, n_chunks == 1 ? "" : "s", quantize ? ", q8_0 rows" : "");
      }
    }
  }
}

void test_top_k() {
  struct top_case {
    const char *what;
    int n, k;
    int levels; // 0: continuous values; else values drawn from this many levels (many ties)
  };
  const top_case cases[] = { { "random", 32000, 1, 0 }, { "random", 32000, 40, 0 }, { "random", 128256, 64, 0 },
                             { "ties", 32000, 40, 5 }, { "ties", 1000, 64, 3 }, { "small n", 70, 64, 0 },
                             // k = 1 has a kernel of its own (the argmax of greedy decoding)
                             { "ties", 32000, 1, 5 }, { "one level", 1000, 1, 1 }, { "small n", 70, 1, 0 } };
  for (const top_case &c : cases) {
    std::vector<float> values = random_floats(c.n, 10.0f);
    if (c.levels)
      for (float &v : values) v = floorf((v + 10.0f) / 20.0f * c.levels);
    values[c.n / 3] = NAN;
    values[c.n / 2] = -0.0f;
    values[c.n / 2 + 1] = 0.0f;
    std::vector<int32_t> ref(c.k);
    llm_top_k(values.data(), c.n, c.k, ref.data());
    device_array<float> dv(values);
    device_array<int32_t> out(c.k);
    check_cuda(launch_top_k(dv.ptr, 1, c.n, c.k, out.ptr, 0), "launch_top_k");
    report(out.read() == ref, "top-k %s: n %d, k %d identical to llm_top_k", c.what, c.n, c.k);
  }
}

// ---- A whole model: GPU against CPU, and the out-of-memory error at load ----

struct tiny_model {
  std::string path;
  std::vector<std::string> names;
  std::vector<llm_tensor_spec> tensors;
  std::vector<float> freqs;
  llm_model_spec spec{};
  const char *file = nullptr;
};

// A random model in one file: f32 tensors except the given type for the matrices of layer 0 (the rest stay f32 so
// that a quantized type's block size only constrains the matrices it is used for).
void write_tiny_model(tiny_model &m, llm_type matrix_type, int vocab) {
  llm_config c = {};
  c.dim = 256, c.hidden_dim = 512, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64, c.vocab_size = vocab;
  c.norm_eps = 1e-5f;
  c.rope_interleaved = false;
  m.freqs.resize(c.head_dim / 2);
  for (int i = 0; i < c.head_dim / 2; i++) m.freqs[i] = powf(10000.0f, -2.0f * i / c.head_dim);
  c.rope_freqs = m.freqs.data();
  char path[] = "/tmp/llama-napi-cuda-XXXXXX";
  const int fd = mkstemp(path);
  FILE *f = fdopen(fd, "wb");
  m.path = path;
  uint64_t offset = 0;
  auto add = [&](const std::string &name, llm_type type, int64_t rows, int64_t cols, float around) {
    std::vector<float> values = random_floats((size_t)(rows * cols), 0.1f);
    for (float &v : values) v += around;
    std::vector<uint8_t> bytes((size_t)rows * llm_row_bytes(type, cols));
    for (int64_t r = 0; r < rows; r++)
      llm_quantize_row(type, values.data() + r * cols, bytes.data() + r * llm_row_bytes(type, cols), cols);
    fwrite(bytes.data(), 1, bytes.size(), f);
    m.names.push_back(name);
    llm_tensor_spec t = {};
    t.file = 0, t.offset = offset, t.type = type, t.n_dims = rows == 1 ? 1 : 2;
    if (rows == 1) t.shape[0] = cols;
    else t.shape[0] = rows, t.shape[1] = cols;
    m.tensors.push_back(t);
    offset += bytes.size();
  };
  add("token_embd.weight", LLM_F32, vocab, c.dim, 0);
  for (int l = 0; l < c.n_layers; l++) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const llm_type t = l == 0 ? matrix_type : LLM_F32;
    const int q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
    add(p + "attn_norm.weight", LLM_F32, 1, c.dim, 1);
    add(p + "attn_q.weight", t, q_dim, c.dim, 0);
    add(p + "attn_k.weight", t, kv_dim, c.dim, 0);
    add(p + "attn_v.weight", t, kv_dim, c.dim, 0);
    add(p + "attn_output.weight", t, c.dim, q_dim, 0);
    add(p + "ffn_norm.weight", LLM_F32, 1, c.dim, 1);
    add(p + "ffn_gate.weight", t, c.hidden_dim, c.dim, 0);
    add(p + "ffn_up.weight", t, c.hidden_dim, c.dim, 0);
    add(p + "ffn_down.weight", t, c.dim, c.hidden_dim, 0);
  }
  add("output_norm.weight", LLM_F32, 1, c.dim, 1);
  add("output.weight", matrix_type, vocab, c.dim, 0);
  fclose(f);
  for (size_t i = 0; i < m.tensors.size(); i++) m.tensors[i].name = m.names[i].c_str();
  m.file = m.path.c_str();
  m.spec.files = &m.file;
  m.spec.n_files = 1;
  m.spec.tensors = m.tensors.data();
  m.spec.n_tensors = (int)m.tensors.size();
  m.spec.config = c;
  m.spec.n_threads = 2;
}

// Logits of a prompt (9 tokens: the products on the CUDA cores; 70: on the tensor cores), evaluated in passes of
// up to pass_tokens, and two decoded tokens, and the top 5 of the last, on one model.
std::vector<float> run_model(llm_model *model, std::vector<int32_t> &top, int n_prompt = 9, int pass_tokens = 1 << 30) {
  const int vocab = model->config.vocab_size;
  llm_error err{};
  llm_kv_cache *cache = llm_kv_cache_create(model, 128, &err);
  std::vector<float> logits((n_prompt + 2) * (size_t)vocab, NAN);
  std::vector<int32_t> prompt = { 1, 5, 9, 200, 7, 3, 3, 60, 11 };
  while ((int)prompt.size() < n_prompt) prompt.push_back((int32_t)(prompt.size() * 37 % 1000));
  top.assign(5, -1);
  bool ok = cache != nullptr;
  for (int first = 0; ok && first < n_prompt; first += pass_tokens)
    ok = llm_forward(model, cache, prompt.data() + first, std::min(pass_tokens, n_prompt - first), first,
                     logits.data() + (size_t)first * vocab, LLM_LOGITS_ALL, &err);
  for (int step = 0; ok && step < 2; step++) {
    const int32_t token = 40 + step;
    llm_batch_sequence seq = { cache, &token, 1, n_prompt + step, logits.data() + (n_prompt + step) * (size_t)vocab, LLM_LOGITS_LAST, 5, top.data() };
    ok = llm_forward_batch(model, &seq, 1, &err);
  }
  if (!ok) printf("     forward failed: %s\n", err.message);
  llm_kv_cache_free(cache);
  return logits;
}

void test_model() {
  for (llm_type type : { LLM_F16, LLM_BF16, LLM_Q8_0, LLM_Q4_0, LLM_Q4_K, LLM_Q6_K }) {
    tiny_model m;
    write_tiny_model(m, type, 1000);
    llm_error err{};
    llm_model *cpu = llm_model_open(&m.spec, &err), *gpu = llm_model_open(&m.spec, &err);
    if (!cpu || !gpu || !llm_cuda_attach(gpu, 0, &err)) {
      report(false, "model with %s matrices: %s", llm_type_name(type), err.message);
    } else {
      for (int n_prompt : { 9, 70 }) {
        std::vector<int32_t> top_cpu, top_gpu, top_passes;
        const std::vector<float> a = run_model(cpu, top_cpu, n_prompt), b = run_model(gpu, top_gpu, n_prompt);
        const double e = relative_error(b, a);
        // The same prompt on the GPU in passes of 10 tokens (the CUDA cores), for comparison.
        const double e_passes = n_prompt > 10 ? relative_error(run_model(gpu, top_passes, n_prompt, 10), a) : 0.0;
        // The quantized types quantize every activation to q8: a float difference of 1e-7 (the order of a sum) that
        // puts one of them on the other side of a rounding step moves it by 1/127 of its block's largest value,
        // and the logits of this random model by up to ~1e-2 (seen as much on the CUDA cores as on the tensor
        // cores; the products alone are held to 2e-5 above). f16 prompts on the tensor cores round the
        // activations to f16 (product_tolerance). The float types otherwise agree to rounding.
        const bool quantized = activation_format(type) != ACT_F32;
        const double tolerance = quantized ? 3e-2 : type == LLM_F16 && n_prompt >= 16 ? 2e-3 : 1e-4;
        char passes[64] = "";
        if (n_prompt > 10) snprintf(passes, sizeof passes, " (in passes of 10 tokens: %.2e)", e_passes);
        report(e < tolerance && top_cpu == top_gpu, "model with %s matrices on %s: %d-token prompt + 2 decodes, logits relative error %.2e%s, top-5 %s",
               llm_type_name(type), gpu->backend->device, n_prompt, e, passes, top_cpu == top_gpu ? "identical" : "DIFFERENT");
      }
    }
    llm_model_close(cpu);
    llm_model_close(gpu);
    unlink(m.path.c_str());
  }
}

void test_out_of_memory() {
  tiny_model m;
  write_tiny_model(m, LLM_F32, 80000); // ~160 MB of weights
  size_t free_bytes = 0, total = 0;
  check_cuda(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
  // Hold all but ~64 MB of the device (in pieces: one allocation of nearly everything can fail on fragmentation).
  std::vector<void *> hog;
  const size_t piece = 256u << 20, keep = 64u << 20;
  for (size_t left = free_bytes; left > keep;) {
    void *p = nullptr;
    const size_t want = std::min(piece, left - keep);
    if (cudaMalloc(&p, want) != cudaSuccess) {
      cudaGetLastError();
      break;
    }
    hog.push_back(p);
    left -= want;
  }
  llm_error err{};
  llm_model *model = llm_model_open(&m.spec, &err);
  const bool refused = model && !llm_cuda_attach(model, 0, &err);
  report(refused && err.kind == LLM_ERR_DEVICE && strstr(err.message, "bytes") && strstr(err.message, "free"),
         "out of device memory at load: \"%s\"", err.message);
  for (void *p : hog) cudaFree(p);
  const bool attached = model && !model->backend && llm_cuda_attach(model, 0, &err);
  std::vector<int32_t> top;
  const std::vector<float> logits = attached ? run_model(model, top) : std::vector<float>();
  bool finite = attached;
  for (float v : logits) finite = finite && isfinite(v);
  report(finite, "after the refusal the process goes on: the same model loads and runs once memory is free");
  llm_model_close(model);
  unlink(m.path.c_str());
}

} // namespace

int main(int argc, char **argv) {
  char why[256] = "";
  const int devices = llm_cuda_device_count(why, sizeof why);
  if (devices == 0) {
    printf("FAIL no CUDA device: %s\n", why);
    return 1;
  }
  cudaDeviceProp props;
  check_cuda(cudaGetDeviceProperties(&props, 0), "cudaGetDeviceProperties");
  printf("device: %s, compute capability %d.%d, %d SMs, %.1f GiB\n", props.name, props.major, props.minor,
         props.multiProcessorCount, props.totalGlobalMem / 1073741824.0);
  if (argc > 1 && strcmp(argv[1], "--time") == 0) {
    time_products(argc > 2 ? argv[2] : nullptr);
    return 0;
  }
  llm_threadpool *pool = llm_threadpool_create(2);
  test_quantize(pool);
  test_matmul(pool);
  test_matmul_mma(pool);
  test_matmul_cublas(pool);
  test_rmsnorm_embedding_swiglu();
  test_rope_attention(pool);
  test_attention_with_rope();
  test_top_k();
  test_model();
  test_out_of_memory();
  llm_threadpool_free(pool);
  printf("%d passed, %d failed\n", passes, failures);
  return failures ? 1 : 0;
}
