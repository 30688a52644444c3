/* NTK-aware scaled RoPE: a custom op that changes the math on purpose. It stretches a model's usable context
 * without fine-tuning by raising the rotary base: base' = base * alpha^(d / (d - 2)), d the head size. The high
 * frequencies (local order) barely move, the low ones slow down so that long distances stay in the range the
 * model was trained on.
 *
 * Pair i's frequency is base^(-2i / d), so the new one is
 *   base'^(-2i / d) = base^(-2i / d) * alpha^(-2i / (d - 2)) = freqs[i] * alpha^(-2i / (d - 2)),
 * which is computed here from the engine's frequencies (in double, rounded once to float). alpha = 1 is the
 * standard RoPE; NTK_ALPHA sets it at build time (4: about 4x the trained context).
 *
 *   npx llama-napi build-op ntk_rope.c -o ntk_rope.so
 *   npx llama-napi run -m MODEL --custom-ops-path ./ntk_rope.so --enable-custom-rope-kernel */
#include "rotary.h"

#ifndef NTK_ALPHA
#define NTK_ALPHA 4.0
#endif

uint32_t llama_napi_ops_abi_version(void) { return LLAMA_NAPI_OPS_ABI_VERSION; }

void llama_napi_rope(float *q, float *k, const int32_t *positions, int n_rows, int n_heads, int n_kv_heads,
                     int head_dim, const float *freqs, int interleaved) {
  float scaled[MAX_HEAD_DIM / 2];
  /* A head of 2 has one pair, of frequency 1 whatever the base. */
  for (int i = 0; i < head_dim / 2; i++)
    scaled[i] = head_dim > 2 ? (float)(freqs[i] * pow(NTK_ALPHA, -2.0 * i / (head_dim - 2))) : freqs[i];
  rotate_rows(q, k, positions, n_rows, n_heads, n_kv_heads, head_dim, scaled, interleaved);
}
