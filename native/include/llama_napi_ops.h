/* llama_napi_ops.h: the interface of a custom operation library for llama-napi.
 *
 * A library replaces some of the forward pass's operations (RoPE, RMSNorm, SwiGLU) without rebuilding the engine:
 *
 *   npx llama-napi build-op my_rope.c -o my_rope.so
 *   loadModel(path, { customOps: "./my_rope.so", enableCustomOps: ["rope"] })
 *   llama-napi run -m MODEL --custom-ops-path ./my_rope.so --enable-custom-rope-kernel
 *
 * The library exports llama_napi_ops_abi_version() and, for each op it offers, the CPU function named below; for
 * models on a CUDA GPU also the op's CUDA launcher (optional: without it, loading with device "cuda" and that op
 * enabled fails with a DeviceError). Only the enabled ops are looked up; the others stay built in. Include this
 * header in the library: it declares each function with the exact type the engine calls it through, so a
 * mismatched signature is a compile error.
 *
 * Common contract:
 * - Activations are float32 rows, contiguous: row r of a [n_rows][width] array starts at r * width.
 * - A CPU function runs on the thread driving the forward pass, with the engine's worker threads idle; it may use
 *   threads of its own but must be done when it returns. Passes of one model never overlap; passes of different
 *   models (two models loaded with the same library) may run at the same time, so keep no mutable global state.
 * - A CUDA launcher only enqueues work on `stream` (a cudaStream_t, passed as void * so that this header compiles
 *   without CUDA) and returns 0, or a nonzero cudaError_t when a launch failed. Every pointer it gets is device
 *   memory. It must not synchronize, allocate or free: decode passes are captured into CUDA graphs and replayed.
 * - The engine checks every size before calling; nothing here is ever called with n_rows < 1.
 */
#ifndef LLAMA_NAPI_OPS_H
#define LLAMA_NAPI_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Raised on any change to a signature or contract below; the engine refuses a library built for another. */
#define LLAMA_NAPI_OPS_ABI_VERSION 1

/* Returns LLAMA_NAPI_OPS_ABI_VERSION as the library was compiled (define it as `return LLAMA_NAPI_OPS_ABI_VERSION;`). */
typedef uint32_t llama_napi_ops_abi_version_fn(void);
llama_napi_ops_abi_version_fn llama_napi_ops_abi_version;

/* ---- "rope": rotary position embedding of q and k ----
 * Called once per layer per pass, for all the rows (tokens) of the pass, which may belong to several sequences.
 * q: [n_rows][n_heads * head_dim], k: [n_rows][n_kv_heads * head_dim], both rotated in place; positions[r] is row
 * r's position in its sequence (0-based). freqs: head_dim / 2 inverse frequencies, the model's rope theta and any
 * scaling (Llama 3.1, linear) already applied: pair i of every head turns by the angle positions[r] * freqs[i].
 * The input pairs are (2i, 2i + 1) when `interleaved` is nonzero (Meta, GGUF, llama2.c checkpoints) and
 * (i, i + head_dim / 2) otherwise (HF rotate_half). The OUTPUT is always in interleaved order: rotated pair i at
 * (2i, 2i + 1) of its head, (x0 cos - x1 sin, x1 cos + x0 sin). Attention only ever takes q.k, and keeping one
 * order lets a model give the same logits from its HF and its GGUF files. head_dim is even, at most 1024. */
typedef void llama_napi_rope_fn(float *q, float *k, const int32_t *positions, int n_rows, int n_heads, int n_kv_heads,
                                int head_dim, const float *freqs, int interleaved);
llama_napi_rope_fn llama_napi_rope;
/* The same on a GPU; positions has n_rows entries in device memory. */
typedef int llama_napi_rope_cuda_fn(float *q, float *k, const int32_t *positions, int n_rows, int n_heads, int n_kv_heads,
                                    int head_dim, const float *freqs, int interleaved, void *stream);
llama_napi_rope_cuda_fn llama_napi_rope_cuda;

/* ---- "rmsnorm": out = x / sqrt(mean(x^2) + eps) * weight, row by row ----
 * Called twice per layer per pass over all its rows (before attention, before the feed-forward), then for the final
 * norm over the rows whose logits are wanted (on the CPU once per sequence of the pass that wants some, on the GPU
 * once per pass). x and out: [n_rows][dim]; out may be x itself (in place).
 * weight: dim values, converted to float32 by the engine whatever the checkpoint stores. */
typedef void llama_napi_rmsnorm_fn(float *out, const float *x, const float *weight, int n_rows, int dim, float eps);
llama_napi_rmsnorm_fn llama_napi_rmsnorm;
typedef int llama_napi_rmsnorm_cuda_fn(float *out, const float *x, const float *weight, int n_rows, int dim, float eps,
                                       void *stream);
llama_napi_rmsnorm_cuda_fn llama_napi_rmsnorm_cuda;

/* ---- "swiglu": out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i] ----
 * Called once per layer per pass over n = n_rows * hidden_dim values (the gate and up products of every row,
 * contiguous); out may be gate itself. On the GPU, enabling it also turns off the fusion of SwiGLU into the gate
 * and up product. */
typedef void llama_napi_swiglu_fn(float *out, const float *gate, const float *up, int64_t n);
llama_napi_swiglu_fn llama_napi_swiglu;
typedef int llama_napi_swiglu_cuda_fn(float *out, const float *gate, const float *up, int64_t n, void *stream);
llama_napi_swiglu_cuda_fn llama_napi_swiglu_cuda;

#ifdef __cplusplus
}
#endif

#endif
