/* The standard rotary position embedding (RoPE) as a custom op: the same math as the engine's built-in kernel, so
 * a model gives the same logits with it. A starting point for kernels of your own.
 *
 *   npx llama-napi build-op rope.c -o rope.so
 *   npx llama-napi run -m MODEL --custom-ops-path ./rope.so --enable-custom-rope-kernel -p "Hello" */
#include "rotary.h"

uint32_t llama_napi_ops_abi_version(void) { return LLAMA_NAPI_OPS_ABI_VERSION; }

/* The model's own frequencies (its rope theta and any scaling already applied by the engine). */
void llama_napi_rope(float *q, float *k, const int32_t *positions, int n_rows, int n_heads, int n_kv_heads,
                     int head_dim, const float *freqs, int interleaved) {
  rotate_rows(q, k, positions, n_rows, n_heads, n_kv_heads, head_dim, freqs, interleaved);
}
