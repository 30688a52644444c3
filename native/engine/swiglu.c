#include <math.h>

#include "cpu_features.h"
#include "ops.h"
#include "simd_neon.h"

#if LLM_HAVE_AVX2_KERNELS
#include <immintrin.h>

/* e^x for 8 floats: x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, so r is exact to float precision),
 * e^r = 1 + r + r^2 p(r) with Cephes' expf coefficients, 2^n built in the exponent bits; x is clamped to
 * [-87, 88], where 2^n stays a normal float. SwiGLU through it is within 3.6e-7 relative of float64
 * (kernel_tests). The gate of every hidden unit goes through it on the calling thread while the other workers
 * wait: with libm's expf, one value at a time, a TinyLlama prompt ran 8% slower at 2 threads. */
LLM_TARGET_AVX2 static inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 e_r = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(e_r, _mm256_castsi256_ps(two_n));
}

LLM_TARGET_AVX2 static inline __m256 swiglu8_avx2(__m256 gate, __m256 up) {
  const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), gate));
  return _mm256_mul_ps(_mm256_div_ps(gate, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), up);
}

LLM_TARGET_AVX2 static void swiglu_avx2(float *out, const float *gate, const float *up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, swiglu8_avx2(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {
    /* The last few through the same arithmetic, so that a value's result does not depend on where it falls in
     * the batch (a sequence must decode to the same bits alone or beside others). */
    float g[8] = { 0 }, u[8] = { 0 }, o[8];
    for (int64_t j = i; j < n; j++) g[j - i] = gate[j], u[j - i] = up[j];
    _mm256_storeu_ps(o, swiglu8_avx2(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
    for (int64_t j = i; j < n; j++) out[j] = o[j - i];
  }
}
#endif

#if LLM_HAVE_NEON_KERNELS
/* exp_avx2's steps on 4 floats (the same constants, fused steps and rounding, so the same bits). */
LLM_NEON_INLINE float32x4_t exp_neon(float32x4_t x) {
  x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f));
  const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  const float32x4_t e_r = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
  const int32x4_t two_n = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(e_r, vreinterpretq_f32_s32(two_n));
}

LLM_NEON_INLINE float32x4_t swiglu4_neon(float32x4_t gate, float32x4_t up) {
  const float32x4_t e = exp_neon(vnegq_f32(gate));
  return vmulq_f32(vdivq_f32(gate, vaddq_f32(vdupq_n_f32(1.0f), e)), up);
}

static void swiglu_neon(float *out, const float *gate, const float *up, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, swiglu4_neon(vld1q_f32(gate + i), vld1q_f32(up + i)));
  if (i < n) { /* the last few through the same arithmetic, as swiglu_avx2's */
    float g[4] = { 0 }, u[4] = { 0 }, o[4];
    for (int64_t j = i; j < n; j++) g[j - i] = gate[j], u[j - i] = up[j];
    vst1q_f32(o, swiglu4_neon(vld1q_f32(g), vld1q_f32(u)));
    for (int64_t j = i; j < n; j++) out[j] = o[j - i];
  }
}
#endif

void llm_swiglu(float *out, const float *gate, const float *up, int64_t n) {
#if LLM_HAVE_AVX2_KERNELS
  if (llm_kernel_set() >= LLM_KERNELS_AVX2) {
    swiglu_avx2(out, gate, up, n);
    return;
  }
#endif
#if LLM_HAVE_NEON_KERNELS
  if (llm_kernel_set() >= LLM_KERNELS_NEON) {
    swiglu_neon(out, gate, up, n);
    return;
  }
#endif
  for (int64_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

struct swiglu_job {
  float *out;
  const float *gate, *up;
  int64_t hidden;
};

static void swiglu_task(void *ctx, size_t begin, size_t end, int worker) {
  (void)worker;
  const struct swiglu_job *job = ctx;
  const int64_t first = (int64_t)begin * job->hidden, n = (int64_t)(end - begin) * job->hidden;
  llm_swiglu(job->out + first, job->gate + first, job->up + first, n);
}

void llm_swiglu_rows(struct llm_threadpool *pool, float *out, const float *gate, const float *up, int n_rows, int64_t hidden) {
  struct swiglu_job job = { out, gate, up, hidden };
  /* An exponential and a division per value: weighed as 16 multiply-adds. */
  llm_parallel_for_work(pool, (size_t)n_rows, (int64_t)n_rows * hidden * 16, swiglu_task, &job);
}
