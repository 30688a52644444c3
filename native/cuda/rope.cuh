// One rotated pair of the rotary embedding (llm_rope), shared by the rope kernel and the decode attention that
// rotates its own query and key: the angle and the rotation rounded step by step, as on the CPU (compiled without
// contraction), so both give the CPU's bits.
#pragma once

// Pair i of a head (head_dim / 2 = half pairs; interleaved: values 2i and 2i + 1, else i and i + half), rotated by
// pos * freq: the values for positions 2i and 2i + 1 of the output, which is in interleaved order either way.
__device__ __forceinline__ float2 rope_pair(const float *head, int i, int half, bool interleaved, int pos, float freq) {
  const float x0 = head[interleaved ? 2 * i : i], x1 = head[interleaved ? 2 * i + 1 : i + half];
  const float angle = __fmul_rn((float)pos, freq);
  const float c = cosf(angle), s = sinf(angle);
  return make_float2(__fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)), __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s)));
}

// A whole head rotated by the block's threads into out (shared memory, interleaved order).
__device__ __forceinline__ void rope_head(float *out, const float *head, int head_dim, bool interleaved, int pos, const float *freqs) {
  const int half = head_dim / 2;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float2 rotated = rope_pair(head, i, half, interleaved, pos, freqs[i]);
    out[2 * i] = rotated.x;
    out[2 * i + 1] = rotated.y;
  }
}
