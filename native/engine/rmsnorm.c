#include <math.h>

#include "ops.h"

void llm_rmsnorm(float *out, const float *x, const struct llm_tensor *weight, int n_rows, int dim, float eps) {
  for (int t = 0; t < n_rows; t++) {
    const float *xt = x + (int64_t)t * dim;
    float *ot = out + (int64_t)t * dim;
    /* Accumulated in double: at least as accurate as torch's float32 reduction, so agreement stays ~1 ulp. */
    double sum_sq = 0.0;
    for (int i = 0; i < dim; i++) sum_sq += (double)xt[i] * xt[i];
    float scale = 1.0f / sqrtf((float)(sum_sq / dim) + eps);
    for (int i = 0; i < dim; i++) ot[i] = llm_tensor_get(weight->data, weight->type, i) * (xt[i] * scale);
  }
}
