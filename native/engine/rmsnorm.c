#include <math.h>

#include "ops.h"

/* One row: x += add (when add is not NULL), then out = x / sqrt(mean(x^2) + eps) * weight. */
static void norm_row(float *out, float *x, const float *add, const struct llm_tensor *weight, int dim, float eps) {
  /* Accumulated in double: at least as accurate as torch's float32 reduction, so agreement stays ~1 ulp. */
  double sum_sq = 0.0;
  for (int i = 0; i < dim; i++) {
    if (add) x[i] += add[i];
    sum_sq += (double)x[i] * x[i];
  }
  float scale = 1.0f / sqrtf((float)(sum_sq / dim) + eps);
  for (int i = 0; i < dim; i++) out[i] = llm_tensor_get(weight->data, weight->type, i) * (x[i] * scale);
}

void llm_rmsnorm(float *out, const float *x, const struct llm_tensor *weight, int n_rows, int dim, float eps) {
  for (int t = 0; t < n_rows; t++)
    norm_row(out + (int64_t)t * dim, (float *)(x + (int64_t)t * dim), NULL, weight, dim, eps);
}

struct add_rmsnorm_job {
  float *x, *out;
  const float *add;
  const struct llm_tensor *weight;
  int dim;
  float eps;
};

static void add_rmsnorm_task(void *ctx, size_t begin, size_t end, int worker) {
  (void)worker;
  const struct add_rmsnorm_job *job = ctx;
  for (size_t t = begin; t < end; t++)
    norm_row(job->out + t * job->dim, job->x + t * job->dim, job->add + t * job->dim, job->weight, job->dim, job->eps);
}

void llm_add_rmsnorm(struct llm_threadpool *pool, float *x, const float *add, float *out, const struct llm_tensor *weight,
                     int n_rows, int dim, float eps) {
  struct add_rmsnorm_job job = { x, out, add, weight, dim, eps };
  llm_parallel_for_work(pool, (size_t)n_rows, (int64_t)n_rows * dim * 4, add_rmsnorm_task, &job);
}
