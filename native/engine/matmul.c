/* The matmul driver: converts the activations to each kernel's format once, then splits the weight rows of
 * all products across the pool and walks each share in register tiles of rows x tokens (dot.h). */
#include "matmul.h"

#include "dot.h"
#include "quant.h"

/* Rows per parallel task: a multiple of every kernel's row tile. */
#define TASK_ROWS 4
/* Activation bytes kept hot in L2 while a thread walks its rows: bounds the tokens processed per pass. */
#define ACTIVATION_BLOCK_BYTES (256 * 1024)
/* Alignment of each converted activation matrix in the scratch. */
#define SCRATCH_ALIGN 64

size_t llm_activation_row_bytes(enum llm_activation format, int64_t cols) {
  switch (format) {
  case LLM_ACTIVATION_Q8_0: return (size_t)(cols / LLM_QK8_0) * sizeof(struct llm_block_q8_0);
  case LLM_ACTIVATION_Q8_K: return (size_t)(cols / LLM_QK_K) * sizeof(struct llm_block_q8_K);
  default: return (size_t)cols * sizeof(float);
  }
}

void llm_quantize_activation_row(enum llm_activation format, const float *x, void *y, int64_t n) {
  switch (format) {
  case LLM_ACTIVATION_Q8_0: llm_quantize_row_q8_0_ref(x, y, n); break;
  case LLM_ACTIVATION_Q8_K: llm_quantize_row_q8_K(x, y, n); break;
  default: memcpy(y, x, (size_t)n * sizeof(float)); break;
  }
}

const struct llm_dot_kernel *llm_dot_kernel(enum llm_type type, enum llm_kernel_set set) {
  static const struct llm_dot_kernel *const scalar[LLM_TYPE_COUNT] = {
    [LLM_F32] = &llm_dot_f32_scalar,   [LLM_F16] = &llm_dot_f16_scalar,   [LLM_BF16] = &llm_dot_bf16_scalar,
    [LLM_Q8_0] = &llm_dot_q8_0_scalar, [LLM_Q4_0] = &llm_dot_q4_0_scalar, [LLM_Q4_K] = &llm_dot_q4_K_scalar,
    [LLM_Q6_K] = &llm_dot_q6_K_scalar,
  };
#if LLM_HAVE_AVX2_KERNELS
  static const struct llm_dot_kernel *const avx2[LLM_TYPE_COUNT] = {
    [LLM_F32] = &llm_dot_f32_avx2,   [LLM_F16] = &llm_dot_f16_avx2,   [LLM_BF16] = &llm_dot_bf16_avx2,
    [LLM_Q8_0] = &llm_dot_q8_0_avx2, [LLM_Q4_0] = &llm_dot_q4_0_avx2, [LLM_Q4_K] = &llm_dot_q4_K_avx2,
    [LLM_Q6_K] = &llm_dot_q6_K_avx2,
  };
  if (set == LLM_KERNELS_AVX2 && (unsigned)type < LLM_TYPE_COUNT) return avx2[type];
#endif
  return (unsigned)type < LLM_TYPE_COUNT ? scalar[type] : NULL;
}

/* One weight matrix with its kernel and the activations converted for it. */
struct product {
  const struct llm_tensor *w;
  const struct llm_dot_kernel *kernel;
  const void *x;
  size_t x_stride;
  float *out;
};

struct matmul_job {
  int n_products;
  struct product products[LLM_MATMUL_MAX_PRODUCTS];
  int n_tokens;
};

/* Rows [row_begin, row_end) of one product for every token. */
static void product_rows(const struct product *p, int n_tokens, int64_t row_begin, int64_t row_end) {
  const struct llm_dot_kernel *k = p->kernel;
  const int64_t rows = p->w->rows, cols = p->w->cols;
  const size_t w_stride = llm_row_bytes(p->w->type, cols);
  const int64_t fit = ACTIVATION_BLOCK_BYTES / (int64_t)p->x_stride;
  const int tokens_per_pass = fit < k->token_tile ? k->token_tile : (int)(fit < n_tokens ? fit : n_tokens);
  for (int pass = 0; pass < n_tokens; pass += tokens_per_pass) {
    const int pass_end = pass + tokens_per_pass < n_tokens ? pass + tokens_per_pass : n_tokens;
    for (int64_t r = row_begin; r < row_end; r += k->row_tile) {
      const int n_rows = row_end - r < k->row_tile ? (int)(row_end - r) : k->row_tile;
      const char *w = (const char *)p->w->data + r * (int64_t)w_stride;
      int t = pass;
      for (; t + k->token_tile <= pass_end; t += k->token_tile)
        k->tile(cols, w, w_stride, (const char *)p->x + t * p->x_stride, p->x_stride, p->out + t * rows + r, rows,
                n_rows, k->token_tile);
      for (; t < pass_end; t++)
        k->tile(cols, w, w_stride, (const char *)p->x + t * p->x_stride, p->x_stride, p->out + t * rows + r, rows,
                n_rows, 1);
    }
  }
}

static int64_t row_tasks(const struct llm_tensor *w) { return (w->rows + TASK_ROWS - 1) / TASK_ROWS; }

/* Tasks number the row groups of all products back to back; a chunk may span the end of one and the start of
 * the next. */
static void matmul_task(void *ctx, size_t begin, size_t end, int worker) {
  const struct matmul_job *job = ctx;
  int64_t first_task = 0;
  for (int p = 0; p < job->n_products && (size_t)first_task < end; p++) {
    const struct product *product = &job->products[p];
    const int64_t tasks = row_tasks(product->w);
    const int64_t lo = (int64_t)begin > first_task ? (int64_t)begin - first_task : 0;
    const int64_t hi = (int64_t)end - first_task < tasks ? (int64_t)end - first_task : tasks;
    if (lo < hi) {
      const int64_t row_end = hi * TASK_ROWS < product->w->rows ? hi * TASK_ROWS : product->w->rows;
      product_rows(product, job->n_tokens, lo * TASK_ROWS, row_end);
    }
    first_task += tasks;
  }
}

/* Converting the activations: every token row into every format the products need. */
struct convert_job {
  const float *x;
  int64_t cols;
  void *converted[3]; /* by enum llm_activation; NULL where not needed */
};

static void convert_task(void *ctx, size_t begin, size_t end, int worker) {
  const struct convert_job *job = ctx;
  for (size_t t = begin; t < end; t++)
    for (int f = LLM_ACTIVATION_Q8_0; f <= LLM_ACTIVATION_Q8_K; f++)
      if (job->converted[f])
        llm_quantize_activation_row((enum llm_activation)f, job->x + t * job->cols,
                                    (char *)job->converted[f] + t * llm_activation_row_bytes(f, job->cols), job->cols);
}

bool llm_matmul_many_on(struct llm_threadpool *pool, enum llm_kernel_set set, int n_products, float *const outs[],
                        const struct llm_tensor *const weights[], const float *x, int n_tokens) {
  const int64_t cols = weights[0]->cols;
  struct matmul_job job = { .n_products = n_products, .n_tokens = n_tokens };
  size_t offsets[3] = { 0 }, scratch_bytes = 0;
  bool needed[3] = { false };
  for (int p = 0; p < n_products; p++) {
    const struct llm_dot_kernel *kernel = llm_dot_kernel(weights[p]->type, set);
    job.products[p] = (struct product){ weights[p], kernel, x, (size_t)cols * sizeof(float), outs[p] };
    if (kernel->activation != LLM_ACTIVATION_F32 && !needed[kernel->activation]) {
      needed[kernel->activation] = true;
      offsets[kernel->activation] = scratch_bytes;
      size_t bytes = (size_t)n_tokens * llm_activation_row_bytes(kernel->activation, cols);
      scratch_bytes += (bytes + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;
    }
  }
  if (scratch_bytes > 0) {
    char *scratch = llm_threadpool_scratch(pool, scratch_bytes);
    if (!scratch) return false;
    struct convert_job convert = { x, cols, { NULL } };
    for (int f = LLM_ACTIVATION_Q8_0; f <= LLM_ACTIVATION_Q8_K; f++)
      if (needed[f]) convert.converted[f] = scratch + offsets[f];
    /* One token converts faster than the pool wakes up. */
    if (n_tokens == 1) convert_task(&convert, 0, 1, 0);
    else llm_parallel_for(pool, (size_t)n_tokens, convert_task, &convert);
    for (int p = 0; p < n_products; p++) {
      enum llm_activation format = job.products[p].kernel->activation;
      if (format != LLM_ACTIVATION_F32) {
        job.products[p].x = convert.converted[format];
        job.products[p].x_stride = llm_activation_row_bytes(format, cols);
      }
    }
  }
  int64_t tasks = 0;
  for (int p = 0; p < n_products; p++) tasks += row_tasks(weights[p]);
  llm_parallel_for(pool, (size_t)tasks, matmul_task, &job);
  return true;
}

bool llm_matmul_many(struct llm_threadpool *pool, int n_products, float *const outs[],
                     const struct llm_tensor *const weights[], const float *x, int n_tokens) {
  return llm_matmul_many_on(pool, llm_kernel_set(), n_products, outs, weights, x, n_tokens);
}

bool llm_matmul(struct llm_threadpool *pool, float *out, const struct llm_tensor *w, const float *x, int n_tokens) {
  return llm_matmul_many(pool, 1, &out, &w, x, n_tokens);
}
