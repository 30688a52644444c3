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

// Whether two runs' top-5 lists agree: each list holds the top 5 of one of the last top.size() / 5 rows of `vocab`
// logits, in order. They agree when identical, or when they part only where the reference's logits of the two ids
// lie within the largest difference between the two runs' logits on that row: a near-tie that rounding may order
// either way (a random tiny model's top logits can sit 1e-4 apart).
bool rankings_agree(const std::vector<int32_t> &top_a, const std::vector<int32_t> &top_b, const std::vector<float> &a,
                    const std::vector<float> &b, int vocab) {
  if (top_a == top_b) return true;
  if (top_a.size() != top_b.size() || top_a.size() % 5 != 0) return false;
  const size_t n_rows = top_a.size() / 5, first_row = a.size() / (size_t)vocab - n_rows;
  for (size_t row = 0; row < n_rows; row++) {
    const size_t base = (first_row + row) * (size_t)vocab;
    double noise = 0;
    for (int i = 0; i < vocab; i++) noise = std::max(noise, (double)std::fabs(a[base + i] - b[base + i]));
    for (size_t r = row * 5; r < row * 5 + 5; r++) {
      if (top_a[r] == top_b[r]) continue;
      if (top_a[r] < 0 || top_b[r] < 0 || top_a[r] >= vocab || top_b[r] >= vocab) return false;
      if (std::fabs(a[base + top_a[r]] - a[base + top_b[r]]) > 2 * noise) return false;
    }
  }
  return true;
}

const char *top_label(const std::vector<int32_t> &top_a, const std::vector<int32_t> &top_b, bool agree) {
  return top_a == top_b ? "identical" : agree ? "apart only at near-ties" : "DIFFERENT";
}

// Every value is a number (a forward pass that failed leaves NaN, which relative_error would let pass on both sides).
bool all_finite(const std::vector<float> &v) {
  for (float x : v)
    if (!isfinite(x)) return false;
  return !v.empty();
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
    { LLM_Q6_K, 256 }, { LLM_Q6_K, 768 }, { LLM_Q4_1, 32 }, { LLM_Q4_1, 352 }, { LLM_Q5_0, 32 }, { LLM_Q5_0, 352 },
    { LLM_Q5_1, 32 }, { LLM_Q5_1, 352 }, { LLM_IQ4_NL, 32 }, { LLM_IQ4_NL, 352 }, { LLM_Q2_K, 256 }, { LLM_Q2_K, 768 },
    { LLM_Q3_K, 256 }, { LLM_Q3_K, 768 }, { LLM_Q5_K, 256 }, { LLM_Q5_K, 768 }, { LLM_IQ4_XS, 256 }, { LLM_IQ4_XS, 768 },
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
  // tokens) and on the tensor cores (40 tokens), there split-K through a workspace of partials as a captured
  // graph's (no cuBLAS).
  for (llm_type type : { LLM_F16, LLM_BF16, LLM_Q8_0, LLM_Q4_0, LLM_Q4_K, LLM_Q6_K, LLM_Q4_1, LLM_Q5_0, LLM_Q5_1, LLM_IQ4_NL,
                         LLM_Q2_K, LLM_Q3_K, LLM_Q5_K, LLM_IQ4_XS })
  for (int n_tokens : { 5, 40 }) {
    if (n_tokens == 5 && (type == LLM_BF16 || type == LLM_Q8_0 || type == LLM_Q6_K)) continue; // as before
    const int64_t cols = 1024;
    test_matrix a(type, 70, cols), b(type, 33, cols), c(type, 70, cols);
    const bool mma = matmul_takes_tensor_cores(a.matrix, n_tokens);
    const double tolerance = product_tolerance(type, mma);
    const cuda_matrix *three[] = { &a.matrix, &b.matrix, &c.matrix };
    device_array<float> partials(matmul_mma_partial_bytes(three, 3, n_tokens) / sizeof(float) + 1);
    const matmul_workspace workspace = { nullptr, 0, partials.ptr, partials.n * sizeof(float), true };
    char path[64] = "CUDA cores";
    if (mma) snprintf(path, sizeof path, "tensor cores, split %d", matmul_mma_split(three, 3, n_tokens, &workspace));
    std::vector<float> x = random_floats(n_tokens * cols);
    std::vector<float> ra(n_tokens * 70), rb(n_tokens * 33), rc(n_tokens * 70);
    llm_matmul(pool, ra.data(), &a.host, x.data(), n_tokens);
    llm_matmul(pool, rb.data(), &b.host, x.data(), n_tokens);
    llm_matmul(pool, rc.data(), &c.host, x.data(), n_tokens);
    device_array<float> dx(x), oa(ra.size()), ob(rb.size()), oc(rc.size());
    device_array<uint8_t> act(activation_scratch(n_tokens, cols));
    const act_format format = matmul_activation_format(a.matrix, n_tokens, &workspace);
    const void *input = device_activations(format, dx, n_tokens, cols, act);
    const size_t stride = activation_row_bytes(format, cols);
    float *const three_out[] = { oa.ptr, ob.ptr, oc.ptr };
    check_cuda(launch_matmul(three, three_out, 3, input, stride, n_tokens, MATMUL_STORE, 0, &workspace), "launch_matmul x3");
    const double e3 = std::max(relative_error(oa.read(), ra), std::max(relative_error(ob.read(), rb), relative_error(oc.read(), rc)));
    report(e3 < tolerance, "matmul %s, %d tokens (%s): three products in one launch, relative error %.2e", llm_type_name(type),
           n_tokens, path, e3);

    std::vector<float> residual = random_floats(ra.size()), added(ra.size());
    for (size_t i = 0; i < ra.size(); i++) added[i] = residual[i] + ra[i];
    device_array<float> dres(residual);
    const cuda_matrix *one[] = { &a.matrix };
    float *const res_out[] = { dres.ptr };
    check_cuda(launch_matmul(one, res_out, 1, input, stride, n_tokens, MATMUL_ADD, 0, &workspace), "launch_matmul add");
    const double ea = relative_error(dres.read(), added);
    report(ea < tolerance, "matmul %s, %d tokens (%s): accumulate into the residual, relative error %.2e", llm_type_name(type),
           n_tokens, path, ea);

    std::vector<float> swiglu(ra.size());
    llm_swiglu(swiglu.data(), ra.data(), rc.data(), (int64_t)ra.size());
    device_array<float> dswiglu(ra.size());
    const cuda_matrix *pair[] = { &a.matrix, &c.matrix };
    float *const pair_out[] = { dswiglu.ptr, oc.ptr };
    check_cuda(launch_matmul(pair, pair_out, 2, input, stride, n_tokens, MATMUL_SWIGLU, 0, &workspace), "launch_matmul swiglu");
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
                           { LLM_Q6_K, 768 }, { LLM_F16, 264 }, { LLM_F16, 520 }, { LLM_BF16, 264 }, { LLM_BF16, 520 },
                           { LLM_Q4_1, 352 }, { LLM_Q4_1, 1056 }, { LLM_Q5_0, 352 }, { LLM_Q5_0, 1056 }, { LLM_Q5_1, 352 },
                           { LLM_Q5_1, 1056 }, { LLM_IQ4_NL, 352 }, { LLM_IQ4_NL, 1056 }, { LLM_Q2_K, 768 }, { LLM_Q3_K, 768 },
                           { LLM_Q5_K, 768 }, { LLM_IQ4_XS, 768 } };
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

// Split-K on the tensor cores (launch_matmul_mma with a workspace for the partial sums): one to three products
// (rows not multiples of the tile) of 4096 columns and of a width whose last k-tile is part-filled, at token counts
// around and below the token tile, with the k-tiles in 1 (no split), 2, 3 and one range per k-tile and in the split
// the launch picks (several ranges for these few row tiles of 4096 columns), storing and adding to a residual;
// the picked split twice gives the same bits (the ranges are added in a fixed order).
void test_matmul_split_k(llm_threadpool *pool) {
  struct shape {
    llm_type type;
    int64_t cols;
  };
  const shape shapes[] = { { LLM_Q8_0, 4096 }, { LLM_Q8_0, 1056 }, { LLM_Q4_0, 4096 }, { LLM_Q4_0, 1056 },
                           { LLM_Q4_K, 4096 }, { LLM_Q4_K, 1280 }, { LLM_Q6_K, 4096 }, { LLM_Q6_K, 1280 },
                           { LLM_F16, 4096 },  { LLM_F16, 520 },   { LLM_BF16, 4096 }, { LLM_BF16, 520 },
                           { LLM_Q4_1, 4096 }, { LLM_Q4_1, 1056 }, { LLM_Q5_0, 4096 }, { LLM_Q5_0, 1056 },
                           { LLM_Q5_1, 4096 }, { LLM_Q5_1, 1056 }, { LLM_IQ4_NL, 4096 }, { LLM_IQ4_NL, 1056 },
                           { LLM_Q2_K, 4096 }, { LLM_Q2_K, 1280 }, { LLM_Q3_K, 4096 }, { LLM_Q3_K, 1280 },
                           { LLM_Q5_K, 4096 }, { LLM_Q5_K, 1280 }, { LLM_IQ4_XS, 4096 }, { LLM_IQ4_XS, 1280 } };
  const int64_t rows[] = { 200, 67, 130 };
  const int max_tokens = 64;
  for (const shape &s : shapes) {
    const int64_t k_tile_values = s.type == LLM_F16 || s.type == LLM_BF16 ? 128 : 256; // 256 bytes of the MMA form
    const int k_tiles = (int)((s.cols + k_tile_values - 1) / k_tile_values);
    test_matrix m0(s.type, rows[0], s.cols), m1(s.type, rows[1], s.cols), m2(s.type, rows[2], s.cols);
    const test_matrix *matrices[] = { &m0, &m1, &m2 };
    const cuda_matrix *weights[] = { &m0.matrix, &m1.matrix, &m2.matrix };
    device_array<float> partials((size_t)k_tiles * max_tokens * (rows[0] + rows[1] + rows[2]));
    const matmul_workspace workspace = { nullptr, 0, partials.ptr, partials.n * sizeof(float), false };
    for (int n_tokens : { 8, 16, 24, 32, 33, 64 }) {
      std::vector<float> x = random_floats((size_t)n_tokens * s.cols);
      std::vector<float> ref[3], residual[3];
      for (int i = 0; i < 3; i++) {
        ref[i].resize((size_t)n_tokens * rows[i]);
        llm_matmul(pool, ref[i].data(), &matrices[i]->host, x.data(), n_tokens);
        residual[i] = random_floats(ref[i].size());
      }
      device_array<float> dx(x);
      device_array<uint8_t> act(activation_scratch(n_tokens, s.cols));
      const act_format format = mma_activation_format(s.type);
      const void *input = device_activations(format, dx, n_tokens, s.cols, act);
      const size_t stride = activation_row_bytes(format, s.cols);
      for (int n_products = 1; n_products <= 3; n_products++) {
        const int picked = matmul_mma_split(weights, n_products, n_tokens, &workspace);
        double worst = 0;
        for (int split : { 1, 2, 3, k_tiles, 0 }) {
          if (split > k_tiles) continue;
          for (bool add : { false, true }) {
            device_array<float> o0(ref[0].size()), o1(ref[1].size()), o2(ref[2].size()); // poisoned
            const device_array<float> *got[] = { &o0, &o1, &o2 };
            if (add)
              for (int i = 0; i < 3; i++)
                check_cuda(cudaMemcpy(got[i]->ptr, residual[i].data(), residual[i].size() * sizeof(float), cudaMemcpyHostToDevice), "upload");
            float *const outs[] = { o0.ptr, o1.ptr, o2.ptr };
            check_cuda(launch_matmul_mma(weights, outs, n_products, input, stride, n_tokens, add, 0, &workspace, split),
                       "launch_matmul_mma (split-K)");
            for (int i = 0; i < n_products; i++) {
              std::vector<float> want = ref[i];
              if (add)
                for (size_t j = 0; j < want.size(); j++) want[j] += residual[i][j];
              worst = std::max(worst, relative_error(got[i]->read(), want));
            }
          }
        }
        device_array<float> first(ref[0].size()), second(ref[0].size());
        for (const device_array<float> *o : { &first, &second }) {
          float *const outs[] = { o->ptr, nullptr, nullptr };
          check_cuda(launch_matmul_mma(weights, outs, 1, input, stride, n_tokens, false, 0, &workspace), "launch_matmul_mma (picked split)");
        }
        const std::vector<float> a = first.read(), b = second.read();
        const bool same_bits = memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
        const bool splits = s.cols != 4096 || picked > 1;
        report(worst < product_tolerance(s.type, true) && same_bits && splits,
               "matmul split-K %s %lld cols, %d product(s), %d tokens: 1, 2, 3, %d ranges and the picked %d, store and add: "
               "worst relative error %.2e vs llm_matmul; picked split %s bits",
               llm_type_name(s.type), (long long)s.cols, n_products, n_tokens, k_tiles, picked, worst,
               same_bits ? "twice the same" : "DIFFERENT");
      }
    }
  }

  // The workspace decides: room for two ranges splits in two; none (or no workspace) splits not; a forced split
  // that does not fit, or of more ranges than k-tiles, is refused before any launch. Inside a graph capture the
  // split launch records and replays.
  const int64_t cols = 4096;
  const int n_tokens = 8;
  test_matrix w(LLM_Q4_0, 200, cols);
  const cuda_matrix *one[] = { &w.matrix };
  std::vector<float> x = random_floats((size_t)n_tokens * cols), ref((size_t)n_tokens * 200);
  llm_matmul(pool, ref.data(), &w.host, x.data(), n_tokens);
  device_array<float> dx(x), out(ref.size()), partials(2 * ref.size());
  device_array<uint8_t> act(activation_scratch(n_tokens, cols));
  const void *input = device_activations(ACT_Q8_0, dx, n_tokens, cols, act);
  const size_t stride = activation_row_bytes(ACT_Q8_0, cols);
  float *const outs[] = { out.ptr };
  const matmul_workspace two = { nullptr, 0, partials.ptr, partials.n * sizeof(float), false };
  const matmul_workspace none = { nullptr, 0, nullptr, 0, false };
  const int split_two = matmul_mma_split(one, 1, n_tokens, &two);
  check_cuda(launch_matmul_mma(one, outs, 1, input, stride, n_tokens, false, 0, &two), "launch_matmul_mma (room for two)");
  const double e_two = relative_error(out.read(), ref);
  report(split_two == 2 && e_two < 2e-5, "matmul split-K with room for two ranges: split %d, relative error %.2e", split_two, e_two);
  report(matmul_mma_split(one, 1, n_tokens, &none) == 1 && matmul_mma_split(one, 1, n_tokens, nullptr) == 1,
         "matmul split-K without partials: no split");
  const cudaError_t too_many = launch_matmul_mma(one, outs, 1, input, stride, n_tokens, false, 0, &two, 3);
  const cudaError_t past_k_tiles = launch_matmul_mma(one, outs, 1, input, stride, n_tokens, false, 0, &two, 17);
  const cudaError_t without = launch_matmul_mma(one, outs, 1, input, stride, n_tokens, false, 0, nullptr, 2);
  report(too_many == cudaErrorInvalidValue && past_k_tiles == cudaErrorInvalidValue && without == cudaErrorInvalidValue &&
             cudaGetLastError() == cudaSuccess,
         "matmul split-K refuses a forced split past the partials' room (%d), past the k-tiles (%d), without a workspace (%d)",
         (int)too_many, (int)past_k_tiles, (int)without);

  device_array<float> big_partials(16 * ref.size()), captured(ref.size());
  const matmul_workspace workspace = { nullptr, 0, big_partials.ptr, big_partials.n * sizeof(float), true };
  float *const captured_outs[] = { captured.ptr };
  cudaStream_t stream;
  check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  check_cuda(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  const cudaError_t launched = launch_matmul_mma(one, captured_outs, 1, input, stride, n_tokens, false, stream, &workspace);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = launched == cudaSuccess && ended == cudaSuccess ? cudaGraphInstantiate(&exec, graph, 0) : ended;
  if (made == cudaSuccess) check_cuda(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
  check_cuda(cudaStreamSynchronize(stream), "replaying the split-K graph");
  const double e_graph = made == cudaSuccess ? relative_error(captured.read(), ref) : 1;
  report(launched == cudaSuccess && made == cudaSuccess && e_graph < 2e-5,
         "matmul split-K in a captured graph (split %d): launch %d, capture %d, replay relative error %.2e",
         matmul_mma_split(one, 1, n_tokens, &workspace), (int)launched, (int)made, e_graph);
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
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
  const shape shapes[] = { { LLM_Q8_0, 352 }, { LLM_Q4_0, 1056 }, { LLM_Q4_K, 768 }, { LLM_Q6_K, 768 }, { LLM_F16, 264 },
                           { LLM_Q4_1, 352 }, { LLM_Q5_0, 352 }, { LLM_Q5_1, 1056 }, { LLM_IQ4_NL, 352 }, { LLM_Q2_K, 768 },
                           { LLM_Q3_K, 768 }, { LLM_Q5_K, 768 }, { LLM_IQ4_XS, 768 } };
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
// takes, with a workspace for cuBLAS: its times include the dequantization) against the tensor-core tiles (both
// with room for split-K's partials; the split they pick is printed) and the tiles unsplit, median of 9 event-timed
// runs, in TOPS (2 rows cols tokens per second).
// --time TYPE: that type's 4096 x 4096 product of 512 tokens alone (for a profiler).
void time_products(const char *only) {
  for (llm_type type : { LLM_Q4_0, LLM_Q8_0, LLM_Q4_K, LLM_Q6_K, LLM_F16, LLM_BF16, LLM_Q5_K, LLM_IQ4_XS }) {
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
      const cuda_matrix *weights[] = { &w.matrix };
      device_array<__half> dequantized(cublas_workspace_bytes(w.matrix) / sizeof(__half) + 1);
      device_array<float> partials(matmul_mma_partial_bytes(weights, 1, max_tokens) / sizeof(float) + 1);
      const matmul_workspace workspace = { dequantized.ptr, cublas_workspace_bytes(w.matrix), partials.ptr, partials.n * sizeof(float), false };
      float *const outs[] = { out.ptr };
      for (int n_tokens : { 1, 2, 4, 8, 12, 16, 24, 31, 32, 48, 64, 128, 512 }) {
        if (only && n_tokens != 512) continue;
        double ms[3]; // launch_matmul, the tiles with the split they pick, the tiles unsplit
        for (int path = 0; path < 3; path++) {
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
                                 : launch_matmul_mma(weights, outs, 1, input, stride, n_tokens, false, 0, &workspace, path == 2 ? 1 : 0),
                       "timed product");
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
        printf("time %-5s %5lld x %lld, %3d tokens: launch_matmul (%-6s) %8.1f us %6.1f TOPS | tensor cores (split %2d) %8.1f us %6.1f TOPS | unsplit %8.1f us\n",
               llm_type_name(type), (long long)rows, (long long)cols, n_tokens,
               matmul_takes_cublas(w.matrix, n_tokens, &workspace) ? "cublas" : matmul_takes_tensor_cores(w.matrix, n_tokens) ? "mma" : "warp",
               1e3 * ms[0], ops / ms[0] * 1e-9, matmul_mma_split(weights, 1, n_tokens, &workspace), 1e3 * ms[1], ops / ms[1] * 1e-9, 1e3 * ms[2]);
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
    if (llm_type_block_size(t) == 0) continue; // gaps in ggml's numbering
    const llm_type type = (llm_type)t;
    const int64_t cols = llm_type_block_size(type) == 256 ? 512 : llm_type_block_size(type) == 32 ? 96 : 41;
    test_matrix table(type, 50, cols);
    std::vector<cuda_row> rows(4);
    const int tokens[] = { 49, 0, 17, 17 };
    std::vector<float> ref(4 * cols);
    for (int r = 0; r < 4; r++) {
      rows[r] = cuda_row{ 0, tokens[r], 0 };
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

// ---- The paged KV pool: rope and the store into it, attention over it ----

uint32_t random_below(uint32_t n) {
  uniform();
  return (uint32_t)(rng_state >> 33) % n;
}

// A pool as kv_cache.h lays it out, full of random rows of `type` as the CPU engine encodes them
// (llm_kv_store_row): the bytes the test expects (host) and the device's copy.
struct test_pool {
  llm_kv_type type;
  int n_layers, n_blocks;
  int64_t kv_dim;
  size_t row_bytes;
  std::vector<uint8_t> keys, values;
  device_array<uint8_t> dkeys, dvalues;
  test_pool(llm_kv_type t, int layers, int blocks, int64_t dim)
      : type(t), n_layers(layers), n_blocks(blocks), kv_dim(dim), row_bytes(llm_kv_row_bytes(t, dim)),
        keys(bytes()), values(bytes()), dkeys(bytes()), dvalues(bytes()) {
    for (std::vector<uint8_t> *side : { &keys, &values })
      for (size_t row = 0; row < side->size() / row_bytes; row++)
        llm_kv_store_row(type, random_floats(kv_dim).data(), side->data() + row * row_bytes, kv_dim);
    check_cuda(cudaMemcpy(dkeys.ptr, keys.data(), keys.size(), cudaMemcpyHostToDevice), "upload");
    check_cuda(cudaMemcpy(dvalues.ptr, values.data(), values.size(), cudaMemcpyHostToDevice), "upload");
  }
  size_t bytes() const { return (size_t)n_layers * n_blocks * LLM_KV_BLOCK_TOKENS * row_bytes; }
  size_t offset(const std::vector<int32_t> &ids, int layer, int pos) const {
    return (((size_t)layer * n_blocks + ids[pos / LLM_KV_BLOCK_TOKENS]) * LLM_KV_BLOCK_TOKENS + pos % LLM_KV_BLOCK_TOKENS) * row_bytes;
  }
  cuda_kv device(const int32_t *table) const { return cuda_kv{ dkeys.ptr, dvalues.ptr, table, row_bytes, n_blocks, (int)type }; }
  // Positions [0, n) of a sequence in one layer, widened to f32.
  std::vector<float> rows(const std::vector<uint8_t> &side, const std::vector<int32_t> &ids, int layer, int n) const {
    std::vector<float> out((size_t)n * kv_dim);
    for (int p = 0; p < n; p++) llm_kv_load_row(type, side.data() + offset(ids, layer, p), out.data() + p * kv_dim, kv_dim);
    return out;
  }
};

// Every sequence's block ids: ceil(context / LLM_KV_BLOCK_TOKENS) each, drawn without repeats from a shuffled
// pool of n_blocks; and the pass's block table: sequence s's first table_blocks[s] ids at table_offsets[s].
struct test_blocks {
  std::vector<std::vector<int32_t>> ids;
  std::vector<int32_t> table, table_offsets;
  test_blocks(int n_seqs, int context, int n_blocks, const std::vector<int> &table_blocks) {
    std::vector<int32_t> order(n_blocks);
    for (int i = 0; i < n_blocks; i++) order[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) std::swap(order[i], order[random_below(i + 1)]);
    const int per_seq = (context + LLM_KV_BLOCK_TOKENS - 1) / LLM_KV_BLOCK_TOKENS;
    for (int s = 0; s < n_seqs; s++) {
      ids.emplace_back(order.begin() + s * per_seq, order.begin() + (s + 1) * per_seq);
      table_offsets.push_back((int32_t)table.size());
      table.insert(table.end(), ids[s].begin(), ids[s].begin() + table_blocks[s]);
    }
  }
};

// Causal grouped-query attention in double of n_heads query heads (q) over positions [0, n) of keys and values
// (rows of n_kv_heads * head_dim): the reference the kernels' f32 sums are held to.
void reference_attention(float *out, const float *q, const float *keys, const float *values, int n, int n_heads, int n_kv_heads,
                         int head_dim) {
  const int64_t kv_dim = (int64_t)n_kv_heads * head_dim;
  std::vector<double> scores(n);
  for (int h = 0; h < n_heads; h++) {
    const int64_t kv_offset = (int64_t)(h / (n_heads / n_kv_heads)) * head_dim;
    const float *qh = q + (int64_t)h * head_dim;
    double max = -INFINITY, sum = 0;
    for (int p = 0; p < n; p++) {
      double dot = 0;
      for (int i = 0; i < head_dim; i++) dot += (double)qh[i] * keys[p * kv_dim + kv_offset + i];
      scores[p] = dot / sqrt((double)head_dim);
      max = fmax(max, scores[p]);
    }
    for (int p = 0; p < n; p++) sum += scores[p] = exp(scores[p] - max);
    for (int i = 0; i < head_dim; i++) {
      double acc = 0;
      for (int p = 0; p < n; p++) acc += scores[p] * values[p * kv_dim + kv_offset + i];
      out[(int64_t)h * head_dim + i] = (float)(acc / sum);
    }
  }
}

std::vector<float> rope_freqs(int head_dim) {
  std::vector<float> freqs(head_dim / 2);
  for (int i = 0; i < head_dim / 2; i++) freqs[i] = powf(10000.0f, -2.0f * i / head_dim);
  return freqs;
}

bool same_bytes(const device_array<uint8_t> &device, const std::vector<uint8_t> &host) {
  const std::vector<uint8_t> got = device.read();
  return got.size() == host.size() && memcmp(got.data(), host.data(), host.size()) == 0;
}

// Rope and the store into a pool of each type, then attention over the pool, for several sequences at once in
// shuffled blocks: a prompt of 5 tokens late in a context that spans three chunks, single decoded tokens, and
// prompts of 45, 40 and 34 tokens (tiles of 32 + 13, 32 + 8 and 32 rows for launch_attention_tiles; the last 2
// rows split-K), at positions inside blocks and across their edges. The f32 pool is held to the CPU's rope and
// the reference; the f16 and q8_0 pools must hold the CPU's encoding of the rotated keys and of the values, bit
// for bit, and attention over them must match the reference over those same widened values.
void test_paged_attention() {
  struct seq_case {
    int pos, n_tokens;
  };
  const seq_case cases[] = { { 600, 5 }, { 300, 1 }, { 0, 1 }, { 100, 45 }, { 0, 40 }, { 31, 34 } };
  const int n_cases = sizeof cases / sizeof cases[0];
  const int n_heads = 4, n_kv_heads = 2, context = 700, n_layers = 2, layer = 1;
  const int n_blocks = n_cases * ((context + LLM_KV_BLOCK_TOKENS - 1) / LLM_KV_BLOCK_TOKENS) + 11;
  for (int head_dim : { 10, 40, 64, 128 }) {
    for (bool interleaved : { true, false }) {
      const int64_t q_dim = (int64_t)n_heads * head_dim, kv_dim = (int64_t)n_kv_heads * head_dim;
      const std::vector<float> freqs = rope_freqs(head_dim);
      device_array<float> dfreqs(freqs);
      std::vector<int> table_blocks;
      int n_rows = 0;
      for (const seq_case &c : cases) {
        n_rows += c.n_tokens;
        table_blocks.push_back((c.pos + c.n_tokens + LLM_KV_BLOCK_TOKENS - 1) / LLM_KV_BLOCK_TOKENS);
      }
      const test_blocks blocks(n_cases, context, n_blocks, table_blocks);
      device_array<int32_t> dtable(blocks.table);
      std::vector<cuda_row> rows;
      std::vector<int> row_seq;
      for (int s = 0; s < n_cases; s++)
        for (int t = 0; t < cases[s].n_tokens; t++) {
          rows.push_back(cuda_row{ cases[s].pos + t, 0, blocks.table_offsets[s] });
          row_seq.push_back(s);
        }
      device_array<cuda_row> drows(rows);
      const std::vector<float> q = random_floats(n_rows * q_dim), k = random_floats(n_rows * kv_dim), v = random_floats(n_rows * kv_dim);
      std::vector<float> q_cpu = q, k_cpu = k;
      for (int r = 0; r < n_rows; r++) {
        llm_rope(q_cpu.data() + r * q_dim, n_heads, head_dim, rows[r].pos, freqs.data(), interleaved);
        llm_rope(k_cpu.data() + r * kv_dim, n_kv_heads, head_dim, rows[r].pos, freqs.data(), interleaved);
      }
      // The rows' query and keys as the GPU rotates them (the f32 pool's turn, first, sets them): the other types
      // are held to the CPU's encoding of these, so that an ulp of sinf between machines cannot flip a rounding.
      std::vector<float> q_gpu, k_gpu(n_rows * kv_dim);
      for (llm_kv_type type : { LLM_KV_F32, LLM_KV_F16, LLM_KV_Q8_0 }) {
        if (type == LLM_KV_Q8_0 && head_dim % 32 != 0) continue;
        const char *type_name = llm_kv_type_name(type);
        test_pool pool(type, n_layers, n_blocks, kv_dim);
        const cuda_kv kv = pool.device(dtable.ptr);
        device_array<float> dq(q), dk(k), dv(v);
        check_cuda(launch_rope_store(dq.ptr, dk.ptr, dv.ptr, drows.ptr, n_rows, kv, layer, n_heads, n_kv_heads, head_dim, dfreqs.ptr,
                                     interleaved, 0), "launch_rope_store");
        if (type == LLM_KV_F32) {
          q_gpu = dq.read();
          const std::vector<uint8_t> stored = pool.dkeys.read();
          for (int r = 0; r < n_rows; r++)
            memcpy(k_gpu.data() + r * kv_dim, stored.data() + pool.offset(blocks.ids[row_seq[r]], layer, rows[r].pos), kv_dim * 4);
          const double eq = relative_error(q_gpu, q_cpu), ek = relative_error(k_gpu, k_cpu);
          report(eq < 1e-5 && ek < 1e-5, "rope (%s, head_dim %d): relative error q %.2e, stored keys %.2e vs llm_rope",
                 interleaved ? "interleaved" : "half", head_dim, eq, ek);
        } else {
          report(dq.read() == q_gpu, "rope (%s, head_dim %d) with a %s pool: q as with an f32 pool", interleaved ? "interleaved" : "half",
                 head_dim, type_name);
        }
        for (int r = 0; r < n_rows; r++) {
          const size_t at = pool.offset(blocks.ids[row_seq[r]], layer, rows[r].pos);
          llm_kv_store_row(type, k_gpu.data() + r * kv_dim, pool.keys.data() + at, kv_dim);
          llm_kv_store_row(type, v.data() + r * kv_dim, pool.values.data() + at, kv_dim);
        }
        report(same_bytes(pool.dkeys, pool.keys) && same_bytes(pool.dvalues, pool.values),
               "the store into a %s pool in shuffled blocks (head_dim %d): each row's key and value encoded as the CPU encodes them, "
               "bit for bit, in its block and slot, every other byte as it was", type_name, head_dim);

        std::vector<float> out_ref(n_rows * q_dim);
        for (int s = 0, r = 0; s < n_cases; s++) {
          const int n_positions = cases[s].pos + cases[s].n_tokens;
          const std::vector<float> keys = pool.rows(pool.keys, blocks.ids[s], layer, n_positions),
                                   values = pool.rows(pool.values, blocks.ids[s], layer, n_positions);
          for (int t = 0; t < cases[s].n_tokens; t++, r++)
            reference_attention(out_ref.data() + r * q_dim, q_gpu.data() + r * q_dim, keys.data(), values.data(), rows[r].pos + 1, n_heads,
                                n_kv_heads, head_dim);
        }
        const int n_chunks = (context + ATTENTION_CHUNK - 1) / ATTENTION_CHUNK;
        device_array<float> partial(attention_partial_floats(n_rows, n_heads, head_dim, n_chunks)), out(n_rows * q_dim);
        check_cuda(launch_attention(out.ptr, dq.ptr, drows.ptr, n_rows, kv, layer, n_heads, n_kv_heads, head_dim, n_chunks, partial.ptr,
                                    nullptr, 0), "launch_attention");
        const std::vector<float> split = out.read();
        const double ea = relative_error(split, out_ref);
        report(ea < 1e-5, "attention over a %s pool (head_dim %d, GQA 4/2, %d chunks, %d sequences: prompts and two decodes): "
               "relative error %.2e vs the reference", type_name, head_dim, n_chunks, n_cases, ea);
        if (head_dim % 32 == 0) {
          // The merge quantizing its rows for the output product: the bytes launch_quantize makes of them.
          device_array<float> out_q(n_rows * q_dim);
          device_array<act_q8_0> fused(n_rows * q_dim / 32), want(n_rows * q_dim / 32);
          check_cuda(launch_attention(out_q.ptr, dq.ptr, drows.ptr, n_rows, kv, layer, n_heads, n_kv_heads, head_dim, n_chunks, partial.ptr,
                                      nullptr, 0, fused.ptr), "launch_attention q8_0");
          check_cuda(launch_quantize(ACT_Q8_0, out_q.ptr, want.ptr, n_rows, q_dim, 0), "launch_quantize");
          const bool same = out_q.read() == split && same_q8_0_blocks(fused, want);
          report(same, "attention over a %s pool (head_dim %d) quantizing its rows to q8_0 in the merge: bit-identical to launch_quantize",
                 type_name, head_dim);
        }
        // The prompts' runs in tiles, the other rows split-K, as a pass runs them.
        std::vector<int32_t> tiles(2 * n_rows);
        std::vector<uint8_t> row_tiled(n_rows);
        int n_tiled_rows = 0;
        const int n_tiles = plan_attention_tiles(rows.data(), n_rows, head_dim, tiles.data(), row_tiled.data(), &n_tiled_rows);
        device_array<int32_t> dtiles(tiles);
        device_array<uint8_t> drow_tiled(row_tiled);
        device_array<float> out_tiled(n_rows * q_dim);
        check_cuda(launch_attention_tiles(out_tiled.ptr, dq.ptr, drows.ptr, dtiles.ptr, n_tiles, kv, layer, n_heads, n_kv_heads, head_dim, 0),
                   "launch_attention_tiles");
        check_cuda(launch_attention(out_tiled.ptr, dq.ptr, drows.ptr, n_rows, kv, layer, n_heads, n_kv_heads, head_dim, n_chunks,
                                    partial.ptr, drow_tiled.ptr, 0), "launch_attention");
        const double et = relative_error(out_tiled.read(), out_ref);
        const int expected_tiles = head_dim % 4 == 0 ? 5 : 0; // 32 + 13, 32 + 8 and 32 (+ 2 split-K) rows
        report(et < 1e-5 && n_tiles == expected_tiles && n_tiled_rows == (expected_tiles ? 117 : 0),
               "attention over a %s pool (head_dim %d) with %d prompt tiles (%d rows) and the rest split-K: relative error %.2e vs the reference",
               type_name, head_dim, n_tiles, n_tiled_rows, et);
      }
    }
  }
}

// A decode pass's attention rotating its rows' queries and keys and storing keys and values into the pool itself
// (each row its own sequence, its blocks shuffled): the same bits as launch_rope_store then launch_attention, in
// the output, its q8_0 rows and the pool, for each pool type, with one chunk (the block writes the output, no
// merge) and with three.
void test_attention_with_rope() {
  const int n_rows = 5, n_heads = 4, n_kv_heads = 2, n_layers = 2, layer = 1;
  for (llm_kv_type type : { LLM_KV_F32, LLM_KV_F16, LLM_KV_Q8_0 }) {
    for (int head_dim : { 40, 64, 128 }) {
      if (type == LLM_KV_Q8_0 && head_dim % 32 != 0) continue;
      for (bool interleaved : { true, false }) {
        for (int n_chunks : { 1, 3 }) {
          const int positions[n_rows] = { 0, 37, 255, n_chunks == 1 ? 200 : 699, n_chunks == 1 ? 1 : 256 };
          const int context = n_chunks * ATTENTION_CHUNK, n_blocks = n_rows * context / LLM_KV_BLOCK_TOKENS + 3;
          const int64_t q_dim = (int64_t)n_heads * head_dim, kv_dim = (int64_t)n_kv_heads * head_dim;
          std::vector<int> table_blocks;
          for (int pos : positions) table_blocks.push_back(pos / LLM_KV_BLOCK_TOKENS + 1);
          const test_blocks blocks(n_rows, context, n_blocks, table_blocks);
          std::vector<cuda_row> rows;
          for (int r = 0; r < n_rows; r++) rows.push_back(cuda_row{ positions[r], 0, blocks.table_offsets[r] });
          const std::vector<float> q = random_floats(n_rows * q_dim), k = random_floats(n_rows * kv_dim), v = random_floats(n_rows * kv_dim);
          device_array<float> dfreqs(rope_freqs(head_dim)), dk(k), dv(v), q_separate(q), q_fused(q);
          device_array<int32_t> dtable(blocks.table);
          device_array<cuda_row> drows(rows);
          test_pool separate(type, n_layers, n_blocks, kv_dim), fused(type, n_layers, n_blocks, kv_dim);
          check_cuda(cudaMemcpy(fused.dkeys.ptr, separate.dkeys.ptr, separate.bytes(), cudaMemcpyDeviceToDevice), "copy");
          check_cuda(cudaMemcpy(fused.dvalues.ptr, separate.dvalues.ptr, separate.bytes(), cudaMemcpyDeviceToDevice), "copy");
          device_array<float> partial(attention_partial_floats(n_rows, n_heads, head_dim, n_chunks)), out_separate(n_rows * q_dim),
              out_fused(n_rows * q_dim);
          const bool quantize = head_dim % 32 == 0;
          device_array<act_q8_0> q8_separate(n_rows * q_dim / 32), q8_fused(n_rows * q_dim / 32);
          check_cuda(launch_rope_store(q_separate.ptr, dk.ptr, dv.ptr, drows.ptr, n_rows, separate.device(dtable.ptr), layer, n_heads,
                                       n_kv_heads, head_dim, dfreqs.ptr, interleaved, 0), "launch_rope_store");
          check_cuda(launch_attention(out_separate.ptr, q_separate.ptr, drows.ptr, n_rows, separate.device(dtable.ptr), layer, n_heads,
                                      n_kv_heads, head_dim, n_chunks, partial.ptr, nullptr, 0, quantize ? q8_separate.ptr : nullptr),
                     "launch_attention");
          check_cuda(launch_attention(out_fused.ptr, q_fused.ptr, drows.ptr, n_rows, fused.device(dtable.ptr), layer, n_heads, n_kv_heads,
                                      head_dim, n_chunks, partial.ptr, nullptr, 0, quantize ? q8_fused.ptr : nullptr,
                                      attention_rope{ dk.ptr, dv.ptr, dfreqs.ptr, interleaved }),
                     "launch_attention with rope");
          const bool same = out_fused.read() == out_separate.read() && fused.dkeys.read() == separate.dkeys.read() &&
                            fused.dvalues.read() == separate.dvalues.read() && q_fused.read() == q &&
                            (!quantize || same_q8_0_blocks(q8_fused, q8_separate));
          report(same, "attention rotating and storing its decode rows into a %s pool (%s, head_dim %d, %d chunk%s%s): bit-identical to "
                 "rope, then attention", llm_kv_type_name(type), interleaved ? "interleaved" : "half", head_dim, n_chunks,
                 n_chunks == 1 ? "" : "s", quantize ? ", q8_0 rows" : "");
        }
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
    // Two rows in one launch (the second the first reversed), as a pass ranks all its sequences at once.
    std::vector<float> rows(values);
    rows.insert(rows.end(), values.rbegin(), values.rend());
    std::vector<int32_t> ref(2 * c.k);
    std::vector<float> ref_values(2 * c.k);
    for (int r = 0; r < 2; r++) {
      llm_top_k(rows.data() + (size_t)r * c.n, c.n, c.k, ref.data() + (size_t)r * c.k);
      for (int i = 0; i < c.k; i++) ref_values[(size_t)r * c.k + i] = rows[(size_t)r * c.n + ref[(size_t)r * c.k + i]];
    }
    device_array<float> dv(rows);
    device_array<int32_t> out(2 * c.k);
    device_array<float> out_values(2 * c.k);
    check_cuda(launch_top_k(dv.ptr, 2, c.n, c.k, out.ptr, out_values.ptr, 0), "launch_top_k");
    const std::vector<float> got_values = out_values.read();
    const bool same_values = memcmp(got_values.data(), ref_values.data(), ref_values.size() * sizeof(float)) == 0;
    report(out.read() == ref && same_values, "top-k %s: n %d, k %d, two rows: ids and logits identical to llm_top_k's", c.what,
           c.n, c.k);
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
  m.freqs = rope_freqs(c.head_dim);
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

// The KV pool a model's caches take their blocks from (on the GPU once attached): room for a few 128-position
// caches unless told more.
bool make_kv_pool(llm_model *model, llm_kv_type type, llm_error *err, int64_t positions = 512) {
  return llm_kv_pool_create(model, type, positions, err);
}

// The tiny model twice, on the CPU and on the GPU, each with a KV pool of `type`; false after reporting why not.
bool open_pair(const tiny_model &m, llm_kv_type type, llm_model **cpu, llm_model **gpu, const char *what, int64_t pool_positions = 512) {
  llm_error err{};
  *cpu = llm_model_open(&m.spec, &err);
  *gpu = *cpu ? llm_model_open(&m.spec, &err) : nullptr;
  if (*cpu && *gpu && llm_cuda_attach(*gpu, 0, &err) && make_kv_pool(*cpu, type, &err, pool_positions) &&
      make_kv_pool(*gpu, type, &err, pool_positions))
    return true;
  report(false, "%s, %s KV pool: %s", what, llm_kv_type_name(type), err.message);
  return false;
}

void test_model() {
  struct model_case {
    llm_type matrices;
    llm_kv_type kv;
  };
  // Every matrix type over an f32 pool (the CPU's results to rounding); f16 and q8_0 pools for two of them.
  const model_case cases[] = { { LLM_F16, LLM_KV_F32 },   { LLM_BF16, LLM_KV_F32 },   { LLM_Q8_0, LLM_KV_F32 }, { LLM_Q4_0, LLM_KV_F32 },
                               { LLM_Q4_K, LLM_KV_F32 },   { LLM_Q6_K, LLM_KV_F32 },   { LLM_Q4_1, LLM_KV_F32 }, { LLM_Q5_0, LLM_KV_F32 },
                               { LLM_Q5_1, LLM_KV_F32 },   { LLM_IQ4_NL, LLM_KV_F32 }, { LLM_Q2_K, LLM_KV_F32 }, { LLM_Q3_K, LLM_KV_F32 },
                               { LLM_Q5_K, LLM_KV_F32 },   { LLM_IQ4_XS, LLM_KV_F32 }, { LLM_F16, LLM_KV_F16 },  { LLM_F16, LLM_KV_Q8_0 },
                               { LLM_Q4_0, LLM_KV_F16 },   { LLM_Q4_0, LLM_KV_Q8_0 } };
  for (const model_case &mc : cases) {
    const llm_type type = mc.matrices;
    tiny_model m;
    write_tiny_model(m, type, 1000);
    char what[64];
    snprintf(what, sizeof what, "model with %s matrices", llm_type_name(type));
    llm_model *cpu = nullptr, *gpu = nullptr;
    if (open_pair(m, mc.kv, &cpu, &gpu, what)) {
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
        // activations to f16 (product_tolerance). The float types otherwise agree to rounding. An f16 or q8_0
        // pool rounds each key and value on both sides alike, but a key that rope left an ulp apart (sinf) can
        // round to the next f16 (2^-11 of it) or q8_0 step (1/127 of its block's largest value).
        const bool quantized = activation_format(type) != ACT_F32 || mc.kv == LLM_KV_Q8_0;
        const double float_tolerance = mc.kv == LLM_KV_F16 ? 1e-3 : 1e-4;
        // An f16 prompt long enough for the tensor cores (the tiny model's rows are whole 16-byte runs, as the
        // probe's) has its activations rounded to f16 there.
        const cuda_matrix f16_rows = { nullptr, LLM_F16, 64, 64, 128 };
        const bool f16_tensor_cores = type == LLM_F16 && matmul_takes_tensor_cores(f16_rows, n_prompt);
        const double tolerance = quantized ? 3e-2 : f16_tensor_cores ? 2e-3 : float_tolerance;
        char passes[64] = "";
        if (n_prompt > 10) snprintf(passes, sizeof passes, " (in passes of 10 tokens: %.2e)", e_passes);
        const bool agree = rankings_agree(top_cpu, top_gpu, a, b, cpu->config.vocab_size);
        report(e < tolerance && agree && all_finite(a),
               "model with %s matrices, %s KV pool, on %s: %d-token prompt + 2 decodes, logits relative error %.2e%s, top-5 %s",
               llm_type_name(type), llm_kv_type_name(mc.kv), gpu->backend->device, n_prompt, e, passes,
               top_label(top_cpu, top_gpu, agree));
      }
    }
    llm_model_close(cpu);
    llm_model_close(gpu);
    unlink(m.path.c_str());
  }
}

// Four sequences in one model's pool: A and B prompts (9 and 40 tokens) in one pass; C taking B's first block from
// the prefix index and evaluating its own last 5 tokens; D a fork of B's 40 positions (its partly filled second
// block shared); then 3 decode steps of all four, one batch each (the graph's case), where B and D both write into
// the block they share (copy-on-write through the backend's copy). Returns every logits row asked for (the
// prompts' last, each decode row) and the top 5 of the decode rows; *adopted: the positions C took.
std::vector<float> run_sequences(llm_model *model, std::vector<int32_t> &top, int *adopted) {
  const int vocab = model->config.vocab_size, n_steps = 3, n_seqs = 4;
  llm_error err{};
  std::vector<int32_t> a = { 1, 5, 9, 200, 7, 3, 3, 60, 11 }, b(40), c(37);
  for (int i = 0; i < 40; i++) b[i] = (i * 37 + 2) % 1000;
  for (int i = 0; i < 37; i++) c[i] = i < 32 ? b[i] : 500 + i;
  llm_kv_cache *caches[n_seqs];
  bool ok = true;
  for (llm_kv_cache *&cache : caches) ok = (cache = llm_kv_cache_create(model, 128, &err)) != nullptr && ok;
  std::vector<float> logits((3 + n_seqs * n_steps) * (size_t)vocab, NAN);
  top.assign(n_seqs * n_steps * 5, -1);
  *adopted = -1;
  if (ok) {
    llm_batch_sequence prompts[2] = { { caches[0], a.data(), 9, 0, logits.data(), LLM_LOGITS_LAST, 0, nullptr },
                                      { caches[1], b.data(), 40, 0, logits.data() + vocab, LLM_LOGITS_LAST, 0, nullptr } };
    ok = llm_forward_batch(model, prompts, 2, &err);
  }
  if (ok) {
    *adopted = llm_kv_cache_adopt_prefix(caches[2], c.data(), 37);
    ok = llm_forward(model, caches[2], c.data() + *adopted, 37 - *adopted, *adopted, logits.data() + 2 * vocab, LLM_LOGITS_LAST, &err) &&
         llm_kv_cache_share(caches[3], caches[1], 40, &err);
  }
  const int positions[n_seqs] = { 9, 40, 37, 40 };
  for (int step = 0; ok && step < n_steps; step++) {
    int32_t tokens[n_seqs];
    llm_batch_sequence seqs[n_seqs];
    for (int s = 0; s < n_seqs; s++) {
      tokens[s] = 100 + 10 * s + step;
      const int row = step * n_seqs + s;
      seqs[s] = { caches[s], &tokens[s], 1, positions[s] + step, logits.data() + (size_t)(3 + row) * vocab, LLM_LOGITS_LAST, 5,
                  top.data() + row * 5 };
    }
    ok = llm_forward_batch(model, seqs, n_seqs, &err);
  }
  if (!ok) printf("     forward failed: %s\n", err.message);
  for (llm_kv_cache *cache : caches) llm_kv_cache_free(cache);
  return logits;
}

// run_sequences on the GPU against the CPU: the pass's block table with several sequences, blocks shared through
// the prefix index and through a fork, and a copy-on-write on the device, in an f32 and an f16 pool.
void test_sequences() {
  tiny_model m;
  write_tiny_model(m, LLM_F16, 1000);
  for (llm_kv_type type : { LLM_KV_F32, LLM_KV_F16 }) {
    llm_model *cpu = nullptr, *gpu = nullptr;
    if (open_pair(m, type, &cpu, &gpu, "four sequences sharing blocks")) {
      std::vector<int32_t> top_cpu, top_gpu;
      int adopted_cpu = 0, adopted_gpu = 0;
      const std::vector<float> want = run_sequences(cpu, top_cpu, &adopted_cpu), got = run_sequences(gpu, top_gpu, &adopted_gpu);
      const double e = relative_error(got, want);
      // The 40-token prompt's products round the activations to f16 on the tensor cores (test_model's 2e-3); an
      // f16 pool may round a key an ulp of rope apart to the next f16.
      const double tolerance = type == LLM_KV_F16 ? 3e-3 : 2e-3;
      const bool agree = rankings_agree(top_cpu, top_gpu, want, got, cpu->config.vocab_size);
      report(e < tolerance && agree && all_finite(want) && adopted_cpu == 32 && adopted_gpu == 32,
             "four sequences sharing blocks (prefix index, fork, copy-on-write) in an %s pool on %s: %d positions adopted, logits "
             "relative error %.2e, top-5 %s", llm_kv_type_name(type), gpu->backend->device, adopted_gpu, e,
             top_label(top_cpu, top_gpu, agree));
    }
    llm_model_close(cpu);
    llm_model_close(gpu);
  }
  unlink(m.path.c_str());
}

// n_seqs sequences of 3-token prompts (one pass), then 3 decode steps of all of them, one batch each (a graph
// captured at the first step, replayed at the next). Returns each prompt's last logits and every decode row's, and
// the decode rows' top 5.
std::vector<float> run_many_sequences(llm_model *model, int n_seqs, std::vector<int32_t> &top) {
  const int vocab = model->config.vocab_size, n_steps = 3, n_prompt = 3;
  llm_error err{};
  std::vector<llm_kv_cache *> caches(n_seqs);
  bool ok = true;
  for (llm_kv_cache *&cache : caches) ok = (cache = llm_kv_cache_create(model, 64, &err)) != nullptr && ok;
  std::vector<float> logits((size_t)n_seqs * (1 + n_steps) * vocab, NAN);
  top.assign((size_t)n_seqs * n_steps * 5, -1);
  std::vector<int32_t> prompts((size_t)n_seqs * n_prompt), tokens(n_seqs);
  std::vector<llm_batch_sequence> seqs(n_seqs);
  for (int s = 0; s < n_seqs; s++) {
    for (int i = 0; i < n_prompt; i++) prompts[s * n_prompt + i] = (s * 31 + i * 7 + 1) % 1000;
    seqs[s] = { caches[s], &prompts[s * n_prompt], n_prompt, 0, logits.data() + (size_t)s * vocab, LLM_LOGITS_LAST, 0, nullptr };
  }
  ok = ok && llm_forward_batch(model, seqs.data(), n_seqs, &err);
  for (int step = 0; ok && step < n_steps; step++) {
    for (int s = 0; s < n_seqs; s++) {
      tokens[s] = (100 + 13 * s + step) % 1000;
      const int row = step * n_seqs + s;
      seqs[s] = { caches[s], &tokens[s], 1, n_prompt + step, logits.data() + (size_t)(n_seqs + row) * vocab, LLM_LOGITS_LAST, 5,
                  top.data() + (size_t)row * 5 };
    }
    ok = llm_forward_batch(model, seqs.data(), n_seqs, &err);
  }
  if (!ok) printf("     forward failed: %s\n", err.message);
  for (llm_kv_cache *cache : caches) llm_kv_cache_free(cache);
  return logits;
}

// run_many_sequences on the GPU against the CPU with 24 sequences: their decode batches put the f16 products on the
// tensor cores, where the 512-column ffn_down splits its k-tiles (split-K, the partials in the backend's workspace)
// inside the captured graph and its replays.
void test_many_sequences() {
  tiny_model m;
  write_tiny_model(m, LLM_F16, 1000);
  const int n_seqs = 24;
  llm_model *cpu = nullptr, *gpu = nullptr;
  if (open_pair(m, LLM_KV_F32, &cpu, &gpu, "24 sequences decoding together", (int64_t)n_seqs * LLM_KV_BLOCK_TOKENS)) {
    std::vector<int32_t> top_cpu, top_gpu;
    const std::vector<float> want = run_many_sequences(cpu, n_seqs, top_cpu), got = run_many_sequences(gpu, n_seqs, top_gpu);
    const double e = relative_error(got, want);
    // f16 products on the tensor cores round the activations to f16 (test_model's 2e-3).
    const bool agree = rankings_agree(top_cpu, top_gpu, want, got, cpu->config.vocab_size);
    report(e < 2e-3 && agree && all_finite(want),
           "24 sequences decoding together (a graph of split-K products) in an f32 pool on %s: logits relative error %.2e, "
           "top-5 %s", gpu->backend->device, e, top_label(top_cpu, top_gpu, agree));
  }
  llm_model_close(cpu);
  llm_model_close(gpu);
  unlink(m.path.c_str());
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
  const bool attached = model && !model->backend && llm_cuda_attach(model, 0, &err) && make_kv_pool(model, LLM_KV_F16, &err);
  std::vector<int32_t> top;
  const std::vector<float> logits = attached ? run_model(model, top) : std::vector<float>();
  report(all_finite(logits), "after the refusal the process goes on: the same model loads and runs once memory is free");
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
  test_matmul_split_k(pool);
  test_matmul_cublas(pool);
  test_rmsnorm_embedding_swiglu();
  test_paged_attention();
  test_attention_with_rope();
  test_top_k();
  test_model();
  test_sequences();
  test_many_sequences();
  test_out_of_memory();
  llm_threadpool_free(pool);
  printf("%d passed, %d failed\n", passes, failures);
  return failures ? 1 : 0;
}
