/* The matmul driver: converts the activations to each kernel's format once, then splits the weight rows of
 * all products across the pool and walks each share in register tiles of rows x tokens (dot.h), or, for
 * batches on kernels that have one, packs each 16-row panel into per-thread scratch and multiplies it with the
 * whole batch. Weights repacked at load (repack.h) go group by group to the repacked kernel, every token of the
 * pass against each group: each weight block is unpacked once per pass, however many tokens it holds. */
#include "matmul.h"

#include "dot.h"
#include "quant.h"
#include "repack.h"

/* Rows per parallel task, at least (for kernels whose row tile is larger, one row tile). */
#define TASK_ROWS 4
/* Activation bytes kept hot in L2 while a thread walks its rows: bounds the tokens processed per pass. */
#define ACTIVATION_BLOCK_BYTES (256 * 1024)
/* Token passes of the repacked path are multiples of its widest token tile. */
#define REPACK_PASS_TOKENS 8
/* Alignment of each converted activation matrix in the scratch. */
#define SCRATCH_ALIGN 64

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

size_t llm_activation_row_bytes(enum llm_activation format, int64_t cols) {
  switch (format) {
  case LLM_ACTIVATION_Q8_0: return (size_t)(cols / LLM_QK8_0) * sizeof(struct llm_block_q8_0);
  case LLM_ACTIVATION_Q8_K: return (size_t)(cols / LLM_QK_K) * sizeof(struct llm_block_q8_K);
  case LLM_ACTIVATION_Q8_0_PANEL:
  case LLM_ACTIVATION_Q8_0_PANEL_SIGNED: return round_up((size_t)cols + (size_t)(cols / LLM_QK8_0) * sizeof(float), 64);
  case LLM_ACTIVATION_Q8_0_SUMS:
    return round_up((size_t)cols + (size_t)(cols / LLM_QK8_0) * (sizeof(float) + sizeof(int32_t)), 64);
  case LLM_ACTIVATION_Q8_K_PANEL:
    return round_up((size_t)cols + (size_t)(cols / LLM_QK_K) * sizeof(float) + (size_t)(cols / 32) * sizeof(int16_t), 64);
  default: return (size_t)cols * sizeof(float);
  }
}

typedef void (*quantize_row_fn)(const float *x, void *y, int64_t n);

/* The activation quantizers of a kernel set: every set's give the same bits. */
static void quantizers(enum llm_kernel_set set, quantize_row_fn *q8_0, quantize_row_fn *q8_K) {
  *q8_0 = llm_quantize_row_q8_0_ref;
  *q8_K = llm_quantize_row_q8_K;
#if LLM_HAVE_AVX512_KERNELS
  if (llm_kernel_set_base(set) == LLM_KERNELS_AVX512) {
    *q8_0 = llm_quantize_row_q8_0_avx512;
    *q8_K = llm_quantize_row_q8_K_avx512;
  }
#endif
}

static void quantize_activation_row(enum llm_kernel_set set, enum llm_activation format, const float *x, void *y,
                                    int64_t n) {
  quantize_row_fn quantize_q8_0, quantize_q8_K;
  quantizers(set, &quantize_q8_0, &quantize_q8_K);
  switch (format) {
  case LLM_ACTIVATION_Q8_0: quantize_q8_0(x, y, n); break;
  case LLM_ACTIVATION_Q8_K: quantize_q8_K(x, y, n); break;
  case LLM_ACTIVATION_Q8_0_PANEL:
  case LLM_ACTIVATION_Q8_0_PANEL_SIGNED:
  case LLM_ACTIVATION_Q8_0_SUMS: {
    const int bias = format == LLM_ACTIVATION_Q8_0_PANEL ? 128 : 0;
    uint8_t *qs = y;
    float *d = (float *)(qs + n);
    int32_t *sums = (int32_t *)(d + n / LLM_QK8_0);
    for (int64_t b = 0; b < n / LLM_QK8_0; b++) {
      struct llm_block_q8_0 block;
      quantize_q8_0(x + b * LLM_QK8_0, &block, LLM_QK8_0);
      int32_t sum = 0;
      for (int j = 0; j < LLM_QK8_0; j++) {
        qs[b * LLM_QK8_0 + j] = (uint8_t)(block.qs[j] + bias);
        sum += block.qs[j];
      }
      d[b] = llm_f16_to_f32(block.d);
      if (format == LLM_ACTIVATION_Q8_0_SUMS) sums[b] = sum;
    }
    break;
  }
  case LLM_ACTIVATION_Q8_K_PANEL: {
    uint8_t *qs = y;
    float *d = (float *)(qs + n);
    int16_t *sums = (int16_t *)(d + n / LLM_QK_K);
    for (int64_t b = 0; b < n / LLM_QK_K; b++) {
      struct llm_block_q8_K block;
      quantize_q8_K(x + b * LLM_QK_K, &block, LLM_QK_K);
      for (int j = 0; j < LLM_QK_K; j++) qs[b * LLM_QK_K + j] = (uint8_t)(block.qs[j] + 128);
      d[b] = block.d;
      for (int s = 0; s < LLM_QK_K / 32; s++)
        sums[b * (LLM_QK_K / 32) + s] = (int16_t)(block.bsums[2 * s] + block.bsums[2 * s + 1]);
    }
    break;
  }
  default: memcpy(y, x, (size_t)n * sizeof(float)); break;
  }
}

/* Token t of n_tokens into the interleaved layout (dot.h) that starts at y. */
static void interleave_token(const float *x, float *y, int64_t cols, int t, int n_tokens) {
  const int group = t / 4 * 4, slot = t - group;
  const int k = n_tokens - group < 4 ? n_tokens - group : 4;
  const int64_t body = cols / 4 * 4;
  float *dst = y + group * cols;
  for (int64_t c = 0; c < body; c += 4) memcpy(dst + c * k + 4 * slot, x + c, 4 * sizeof(float));
  memcpy(dst + body * k + slot * (cols - body), x + body, (size_t)(cols - body) * sizeof(float));
}

void llm_quantize_activation_row(enum llm_activation format, const float *x, void *y, int64_t n) {
  quantize_activation_row(LLM_KERNELS_SCALAR, format, x, y, n);
}

const struct llm_dot_kernel *llm_dot_kernel(enum llm_type type, enum llm_kernel_set set) {
  set = llm_kernel_set_base(set); /* the VNNI sets' own kernels are the repacked ones (repack.c) */
  static const struct llm_dot_kernel *const scalar[LLM_TYPE_COUNT] = {
    [LLM_F32] = &llm_dot_f32_scalar, [LLM_F16] = &llm_dot_f16_scalar, [LLM_BF16] = &llm_dot_bf16_scalar,
    [LLM_Q8_0] = &llm_dot_q8_0_scalar, [LLM_Q4_0] = &llm_dot_q4_0_scalar, [LLM_Q4_1] = &llm_dot_q4_1_scalar,
    [LLM_Q5_0] = &llm_dot_q5_0_scalar, [LLM_Q5_1] = &llm_dot_q5_1_scalar, [LLM_Q2_K] = &llm_dot_q2_K_scalar,
    [LLM_Q3_K] = &llm_dot_q3_K_scalar, [LLM_Q4_K] = &llm_dot_q4_K_scalar, [LLM_Q5_K] = &llm_dot_q5_K_scalar,
    [LLM_Q6_K] = &llm_dot_q6_K_scalar, [LLM_IQ4_NL] = &llm_dot_iq4_nl_scalar, [LLM_IQ4_XS] = &llm_dot_iq4_xs_scalar,
  };
#if LLM_HAVE_AVX512_KERNELS
  static const struct llm_dot_kernel *const avx512[LLM_TYPE_COUNT] = {
    [LLM_F32] = &llm_dot_f32_avx512, [LLM_F16] = &llm_dot_f16_avx512, [LLM_BF16] = &llm_dot_bf16_avx512,
    [LLM_Q8_0] = &llm_dot_q8_0_avx512, [LLM_Q4_0] = &llm_dot_q4_0_avx512, [LLM_Q4_1] = &llm_dot_q4_1_avx512,
    [LLM_Q5_0] = &llm_dot_q5_0_avx512, [LLM_Q5_1] = &llm_dot_q5_1_avx512, [LLM_Q2_K] = &llm_dot_q2_K_avx512,
    [LLM_Q3_K] = &llm_dot_q3_K_avx512, [LLM_Q4_K] = &llm_dot_q4_K_avx512, [LLM_Q5_K] = &llm_dot_q5_K_avx512,
    [LLM_Q6_K] = &llm_dot_q6_K_avx512, [LLM_IQ4_NL] = &llm_dot_iq4_nl_avx512, [LLM_IQ4_XS] = &llm_dot_iq4_xs_avx512,
  };
  if (set == LLM_KERNELS_AVX512 && (unsigned)type < LLM_TYPE_COUNT) return avx512[type];
#endif
#if LLM_HAVE_AVX2_KERNELS
  static const struct llm_dot_kernel *const avx2[LLM_TYPE_COUNT] = {
    [LLM_F32] = &llm_dot_f32_avx2, [LLM_F16] = &llm_dot_f16_avx2, [LLM_BF16] = &llm_dot_bf16_avx2,
    [LLM_Q8_0] = &llm_dot_q8_0_avx2, [LLM_Q4_0] = &llm_dot_q4_0_avx2, [LLM_Q4_1] = &llm_dot_q4_1_avx2,
    [LLM_Q5_0] = &llm_dot_q5_0_avx2, [LLM_Q5_1] = &llm_dot_q5_1_avx2, [LLM_Q2_K] = &llm_dot_q2_K_avx2,
    [LLM_Q3_K] = &llm_dot_q3_K_avx2, [LLM_Q4_K] = &llm_dot_q4_K_avx2, [LLM_Q5_K] = &llm_dot_q5_K_avx2,
    [LLM_Q6_K] = &llm_dot_q6_K_avx2, [LLM_IQ4_NL] = &llm_dot_iq4_nl_avx2, [LLM_IQ4_XS] = &llm_dot_iq4_xs_avx2,
  };
  if (set == LLM_KERNELS_AVX2 && (unsigned)type < LLM_TYPE_COUNT) return avx2[type];
#endif
#if LLM_HAVE_NEON_KERNELS
  /* The NEON sets share the float kernels (dot_neon.c); the quantized ones differ in their int8 multiplies. */
#define NEON_KERNELS(set)                                                                                            \
  {                                                                                                                  \
    [LLM_F32] = &llm_dot_f32_neon, [LLM_F16] = &llm_dot_f16_neon, [LLM_BF16] = &llm_dot_bf16_neon,                   \
    [LLM_Q8_0] = &llm_dot_q8_0_##set, [LLM_Q4_0] = &llm_dot_q4_0_##set, [LLM_Q4_1] = &llm_dot_q4_1_##set,            \
    [LLM_Q5_0] = &llm_dot_q5_0_##set, [LLM_Q5_1] = &llm_dot_q5_1_##set, [LLM_Q2_K] = &llm_dot_q2_K_##set,            \
    [LLM_Q3_K] = &llm_dot_q3_K_##set, [LLM_Q4_K] = &llm_dot_q4_K_##set, [LLM_Q5_K] = &llm_dot_q5_K_##set,            \
    [LLM_Q6_K] = &llm_dot_q6_K_##set, [LLM_IQ4_NL] = &llm_dot_iq4_nl_##set, [LLM_IQ4_XS] = &llm_dot_iq4_xs_##set,    \
  }
  static const struct llm_dot_kernel *const neon[LLM_TYPE_COUNT] = NEON_KERNELS(neon);
  static const struct llm_dot_kernel *const neon_dotprod[LLM_TYPE_COUNT] = NEON_KERNELS(neon_dotprod);
  static const struct llm_dot_kernel *const neon_i8mm[LLM_TYPE_COUNT] = NEON_KERNELS(neon_i8mm);
#undef NEON_KERNELS
  if (set == LLM_KERNELS_NEON && (unsigned)type < LLM_TYPE_COUNT) return neon[type];
  if (set == LLM_KERNELS_NEON_DOTPROD && (unsigned)type < LLM_TYPE_COUNT) return neon_dotprod[type];
  if (set == LLM_KERNELS_NEON_I8MM && (unsigned)type < LLM_TYPE_COUNT) return neon_i8mm[type];
#endif
  return (unsigned)type < LLM_TYPE_COUNT ? scalar[type] : NULL;
}

/* One weight matrix with its kernel and the activations converted for it. */
struct product {
  const struct llm_tensor *w;
  const struct llm_dot_kernel *kernel;
  bool panel; /* through kernel->pack and kernel->gemm */
  const struct llm_repacked_kernel *repacked; /* not NULL: through repacked->gemm over w->repacked */
  int task_rows;
  const void *x;
  size_t x_stride;
  float *out;
};

struct matmul_job {
  int n_products;
  struct product products[LLM_MATMUL_MAX_PRODUCTS];
  int n_tokens;
  char *panels; /* panel_stride bytes per worker */
  size_t panel_stride;
};

/* Rows [row_begin, row_end) of one product for every token. */
static void product_rows(const struct product *p, int n_tokens, int64_t row_begin, int64_t row_end) {
  const struct llm_dot_kernel *k = p->kernel;
  const int64_t rows = p->w->rows, cols = p->w->cols;
  const size_t w_stride = llm_row_bytes(p->w->type, cols);
  /* Whole token tiles per pass, so that tiles start at multiples of the tile (the interleaved groups, dot.h). */
  const int64_t fit = ACTIVATION_BLOCK_BYTES / (int64_t)p->x_stride / k->token_tile * k->token_tile;
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
      if (t < pass_end)
        k->tile(cols, w, w_stride, (const char *)p->x + t * p->x_stride, p->x_stride, p->out + t * rows + r, rows,
                n_rows, pass_end - t);
    }
  }
}

/* The panel path: pack panel_rows rows at a time into this worker's panel, then multiply it with every token
 * (the activations of a whole batch stay in L2 while the panel sits in L1/L2). */
static void product_panels(const struct product *p, int n_tokens, int64_t row_begin, int64_t row_end, void *panel) {
  const struct llm_dot_kernel *k = p->kernel;
  const int64_t rows = p->w->rows, cols = p->w->cols;
  const size_t w_stride = llm_row_bytes(p->w->type, cols);
  for (int64_t r = row_begin; r < row_end; r += k->panel_rows) {
    const int n_rows = row_end - r < k->panel_rows ? (int)(row_end - r) : k->panel_rows;
    k->pack(cols, (const char *)p->w->data + r * (int64_t)w_stride, w_stride, n_rows, panel);
    k->gemm(cols, panel, p->x, p->x_stride, p->out + r, rows, n_rows, n_tokens);
  }
}

/* The repacked path: rows [row_begin, row_end) start at a group boundary (task_rows is LLM_REPACK_ROWS). Tokens go
 * in passes whose activations stay in L2 while the share's groups are walked (each token's result does not depend on
 * the pass it falls in). */
static void product_groups(const struct product *p, int n_tokens, int64_t row_begin, int64_t row_end) {
  const int64_t rows = p->w->rows, cols = p->w->cols;
  const size_t group_bytes = llm_repack_group_bytes(p->w->type, cols);
  const int64_t fit = ACTIVATION_BLOCK_BYTES / (int64_t)p->x_stride / REPACK_PASS_TOKENS * REPACK_PASS_TOKENS;
  const int tokens_per_pass = fit < REPACK_PASS_TOKENS ? REPACK_PASS_TOKENS : fit < n_tokens ? (int)fit : n_tokens;
  for (int pass = 0; pass < n_tokens; pass += tokens_per_pass) {
    const int pass_tokens = n_tokens - pass < tokens_per_pass ? n_tokens - pass : tokens_per_pass;
    for (int64_t r = row_begin; r < row_end; r += LLM_REPACK_ROWS) {
      const int n_rows = row_end - r < LLM_REPACK_ROWS ? (int)(row_end - r) : LLM_REPACK_ROWS;
      const char *group = (const char *)p->w->repacked + r / LLM_REPACK_ROWS * (int64_t)group_bytes;
      p->repacked->gemm(cols, group, (const char *)p->x + pass * p->x_stride, p->x_stride, p->out + pass * rows + r,
                        rows, n_rows, pass_tokens);
    }
  }
}

static int64_t row_tasks(const struct product *p) { return (p->w->rows + p->task_rows - 1) / p->task_rows; }

/* Tasks number the row groups of all products back to back; a chunk may span the end of one and the start of
 * the next. */
static void matmul_task(void *ctx, size_t begin, size_t end, int worker) {
  const struct matmul_job *job = ctx;
  int64_t first_task = 0;
  for (int p = 0; p < job->n_products && (size_t)first_task < end; p++) {
    const struct product *product = &job->products[p];
    const int64_t tasks = row_tasks(product);
    const int64_t lo = (int64_t)begin > first_task ? (int64_t)begin - first_task : 0;
    const int64_t hi = (int64_t)end - first_task < tasks ? (int64_t)end - first_task : tasks;
    if (lo < hi) {
      const int64_t task_rows = product->task_rows;
      const int64_t row_end = hi * task_rows < product->w->rows ? hi * task_rows : product->w->rows;
      if (product->repacked) product_groups(product, job->n_tokens, lo * task_rows, row_end);
      else if (product->panel)
        product_panels(product, job->n_tokens, lo * task_rows, row_end, job->panels + (size_t)worker * job->panel_stride);
      else product_rows(product, job->n_tokens, lo * task_rows, row_end);
    }
    first_task += tasks;
  }
}

/* Converting the activations: every token row into every format the products need. */
struct convert_job {
  enum llm_kernel_set set;
  const float *x;
  int64_t cols;
  int n_tokens;
  void *converted[LLM_ACTIVATION_COUNT]; /* by enum llm_activation; NULL where not needed */
};

static void convert_task(void *ctx, size_t begin, size_t end, int worker) {
  const struct convert_job *job = ctx;
  for (size_t t = begin; t < end; t++)
    for (int f = LLM_ACTIVATION_F32 + 1; f < LLM_ACTIVATION_COUNT; f++) {
      if (!job->converted[f]) continue;
      if (f == LLM_ACTIVATION_F32_INTERLEAVED)
        interleave_token(job->x + t * job->cols, job->converted[f], job->cols, (int)t, job->n_tokens);
      else
        quantize_activation_row(job->set, (enum llm_activation)f, job->x + t * job->cols,
                                (char *)job->converted[f] + t * llm_activation_row_bytes(f, job->cols), job->cols);
    }
}

bool llm_matmul_many_on(struct llm_threadpool *pool, enum llm_kernel_set set, int n_products, float *const outs[],
                        const struct llm_tensor *const weights[], const float *x, int n_tokens) {
  const int64_t cols = weights[0]->cols;
  struct matmul_job job = { .n_products = n_products, .n_tokens = n_tokens };
  size_t offsets[LLM_ACTIVATION_COUNT] = { 0 }, scratch_bytes = 0, panel_bytes = 0;
  bool needed[LLM_ACTIVATION_COUNT] = { false };
  enum llm_activation formats[LLM_MATMUL_MAX_PRODUCTS];
  for (int p = 0; p < n_products; p++) {
    const struct llm_dot_kernel *kernel = llm_dot_kernel(weights[p]->type, set);
    const struct llm_repacked_kernel *repacked =
        weights[p]->repacked ? llm_repacked_kernel(weights[p]->type, set) : NULL;
    const bool panel = !repacked && kernel->gemm && n_tokens >= kernel->panel_min_tokens;
    const int task_rows = repacked ? LLM_REPACK_ROWS
                          : panel  ? kernel->panel_rows
                                   : (kernel->row_tile > TASK_ROWS ? kernel->row_tile : TASK_ROWS);
    job.products[p] = (struct product){ weights[p], kernel, panel, repacked, task_rows, x,
                                        (size_t)cols * sizeof(float), outs[p] };
    formats[p] = repacked ? repacked->activation : panel ? kernel->panel_activation : kernel->activation;
    if (formats[p] == LLM_ACTIVATION_F32_INTERLEAVED && n_tokens == 1) formats[p] = LLM_ACTIVATION_F32; /* the same */
    if (panel && kernel->panel_bytes(cols) > panel_bytes) panel_bytes = kernel->panel_bytes(cols);
    if (formats[p] != LLM_ACTIVATION_F32 && !needed[formats[p]]) {
      needed[formats[p]] = true;
      offsets[formats[p]] = scratch_bytes;
      scratch_bytes += round_up((size_t)n_tokens * llm_activation_row_bytes(formats[p], cols), SCRATCH_ALIGN);
    }
  }
  const size_t panels_offset = scratch_bytes;
  job.panel_stride = round_up(panel_bytes, SCRATCH_ALIGN);
  scratch_bytes += job.panel_stride * (size_t)llm_threadpool_size(pool);
  if (scratch_bytes > 0) {
    char *scratch = llm_threadpool_scratch(pool, scratch_bytes);
    if (!scratch) return false;
    job.panels = scratch + panels_offset;
    struct convert_job convert = { set, x, cols, n_tokens, { NULL } };
    int n_formats = 0;
    for (int f = LLM_ACTIVATION_F32 + 1; f < LLM_ACTIVATION_COUNT; f++)
      if (needed[f]) {
        convert.converted[f] = scratch + offsets[f];
        n_formats++;
      }
    /* A few operations per value and format, so one token (any row length) converts on the caller. Float products
     * (a panel scratch only) convert nothing. */
    if (n_formats > 0)
      llm_parallel_for_work(pool, (size_t)n_tokens, (int64_t)n_tokens * cols * n_formats, convert_task, &convert);
    for (int p = 0; p < n_products; p++) {
      if (formats[p] != LLM_ACTIVATION_F32) {
        job.products[p].x = convert.converted[formats[p]];
        job.products[p].x_stride = llm_activation_row_bytes(formats[p], cols);
      }
    }
  }
  int64_t tasks = 0, multiply_adds = 0;
  for (int p = 0; p < n_products; p++) {
    tasks += row_tasks(&job.products[p]);
    multiply_adds += weights[p]->rows * cols * n_tokens;
  }
  llm_parallel_for_work(pool, (size_t)tasks, multiply_adds, matmul_task, &job);
  return true;
}
bool llm_matmul_many(struct llm_threadpool *pool, int n_products, float *const outs[],
                     const struct llm_tensor *const weights[], const float *x, int n_tokens) {
  return llm_matmul_many_on(pool, llm_kernel_set(), n_products, outs, weights, x, n_tokens);
}

bool llm_matmul(struct llm_threadpool *pool, float *out, const struct llm_tensor *w, const float *x, int n_tokens) {
  return llm_matmul_many(pool, 1, &out, &w, x, n_tokens);
}
