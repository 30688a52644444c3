// The CUDA backend: uploads every tensor once, keeps a pass's activations in device memory, and runs
// llm_forward_batch's passes there, with the same semantics as forward.c: rows (tokens) of several sequences go
// through each weight product together, each row attends to its own cache, and only the logits and top-k ids that
// were asked for are copied back. Keys and values live in the model's paged KV pool (kv_cache.h), allocated
// through this backend's hooks; each pass uploads its rows and its sequences' block ids together. Passes where
// every sequence decodes one token are captured as CUDA graphs (keyed by their shape) and replayed: the kernels
// read each row's token, position and block ids from device memory. Ops a custom op library provides (custom_ops.h)
// run through its launchers in place of the built-in kernels, and of the fusions those kernels take part in.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "kernels.cuh"
#include "llm_cuda.h"

extern "C" {
#include "custom_ops.h"
#include "forward.h"
#include "kv_cache.h"
#include "ops.h"
}

namespace {

// Rows per pass: bounds the activations and attention partials a prompt needs at once (llm_model_pass_tokens).
constexpr int kMaxPassRows = 512;
constexpr size_t kTensorAlignment = 256;
// Decode graphs kept (one per batch shape seen recently).
constexpr size_t kMaxGraphs = 8;
// The pass index (cuda_backend.index): kMaxPassRows rows, then the pass's block table.
constexpr size_t kRowsBytes = kMaxPassRows * sizeof(cuda_row);
static_assert(kRowsBytes % sizeof(int32_t) == 0, "the block table follows the rows");
constexpr int64_t kInitialTableEntries = 1024;

struct cuda_layer {
  cuda_matrix attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down;
};

struct decode_graph {
  int n_rows, n_logit_rows, n_chunks;
  cuda_kv kv; // the pool it was captured over
  cudaGraphExec_t exec;
};

bool same_kv(const cuda_kv &a, const cuda_kv &b) {
  return a.keys == b.keys && a.values == b.values && a.block_table == b.block_table && a.row_bytes == b.row_bytes &&
         a.n_blocks == b.n_blocks && a.type == b.type;
}

// Device memory of a pass, grown on demand (growing drops the graphs, which hold the old addresses).
struct pass_buffers {
  int rows = 0, logit_rows = 0;
  size_t partial_floats = 0;
  float *x = nullptr, *xb = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *attn = nullptr, *hb = nullptr,
        *hb2 = nullptr, *logits = nullptr, *partial = nullptr;
  void *act = nullptr;         // quantized activations of one product group
  int32_t *logit_map = nullptr; // pass row of each logit row
  int32_t *top_ids = nullptr;   // TOP_K_DEVICE_MAX per row
  float *top_logits = nullptr;  // their logits
  unsigned long long *first_non_finite = nullptr; // flat index of the first NaN/inf logit of the pass, or ULLONG_MAX
  int32_t *attn_tiles = nullptr; // the prompt attention's tiles (plan_attention_tiles): 2 per row at most
  uint8_t *row_tiled = nullptr;  // per row: attends in a tile
  int32_t *positions = nullptr;  // per row: its position, for a custom RoPE launcher
};

struct cuda_backend {
  llm_backend base; // first member: the engine's pointer is this object's
  llm_model *model;
  int gpu;
  char device_name[256];
  cudaStream_t stream = nullptr;
  cudaStream_t copy_stream = nullptr; // the KV pool's copies (cache_copy)
  uint8_t *weights = nullptr;
  cuda_matrix token_embd, output_norm, output;
  std::vector<cuda_layer> layers;
  float *rope_freqs = nullptr;
  // A custom op library's launchers (nullptr: the built-in kernel), and for its RMSNorm the norm weights in float32:
  // layer l's attention norm at 2l * dim, its feed-forward norm at (2l + 1) * dim, the output norm last.
  llm_custom_launchers custom = {};
  float *norm_f32 = nullptr;
  pass_buffers buf;
  // The pass index: the rows (kMaxPassRows cuda_row) then the block ids of the pass's sequences, which the rows'
  // `blocks` point into; uploaded in one copy per pass from pinned staging of the same layout. Grown on demand
  // (growing drops the graphs).
  uint8_t *index = nullptr, *index_host = nullptr;
  int64_t index_entries = 0; // block ids the table holds
  // Pinned staging for what else crosses the bus every pass.
  int32_t *logit_map_host = nullptr;
  int32_t *top_ids_host = nullptr;
  float *top_logits_host = nullptr;
  unsigned long long *first_non_finite_host = nullptr;
  int32_t *attn_tiles_host = nullptr;
  uint8_t *row_tiled_host = nullptr;
  std::vector<decode_graph> graphs;
  // The products' workspace (reserve_workspace): one allocation for the tensor-core tiles' split-K partials and a
  // quantized matrix dequantized for cuBLAS (matmul_cublas.cu). workspace.graph_capture: enqueueing a pass into a
  // graph, where cuBLAS stays out (it may allocate).
  matmul_workspace workspace = {};
  int workspace_rows = 0; // the largest pass the partials were sized for
  bool blas_tried = false;
  bool use_graphs = true;
};

bool cuda_fail(llm_error *err, cudaError_t e, const char *what) {
  cudaGetLastError(); // clear a non-sticky error so the next call starts clean
  return llm_fail(err, LLM_ERR_DEVICE, "%s: %s (CUDA error %d)", what, cudaGetErrorString(e), (int)e);
}

#define CUDA_TRY(call, what)                          \
  do {                                                \
    const cudaError_t e_ = (call);                    \
    if (e_ != cudaSuccess) return cuda_fail(err, e_, what); \
  } while (0)

#define LAUNCH(call)                   \
  do {                                 \
    const cudaError_t e_ = (call);     \
    if (e_ != cudaSuccess) return e_;  \
  } while (0)

// cudaMalloc, or LLM_ERR_DEVICE naming the bytes wanted and free.
void *device_alloc(const cuda_backend *b, size_t bytes, const char *what, llm_error *err) {
  void *p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e == cudaSuccess) return p;
  cudaGetLastError();
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  llm_fail(err, LLM_ERR_DEVICE, "out of device memory for %s: %zu bytes (%.1f MiB) needed, %zu bytes (%.1f MiB) free of %.1f MiB on %s (GPU %d): %s",
           what, bytes, bytes / 1048576.0, free_bytes, free_bytes / 1048576.0, total_bytes / 1048576.0, b->device_name,
           b->gpu, cudaGetErrorString(e));
  return nullptr;
}

cuda_matrix matrix_of(const llm_tensor &t, const uint8_t *device_data) {
  return cuda_matrix{ device_data, (int)t.type, t.rows, t.cols, llm_row_bytes(t.type, t.cols) };
}

size_t tensor_bytes(const llm_tensor &t) { return (size_t)t.rows * llm_row_bytes(t.type, t.cols); }

// Every tensor in one allocation, 256-byte aligned (16-byte loads), each followed by slack for the widest
// over-read of a 2-byte aligned block. Tensors sharing bytes (tied embeddings) share the copy.
bool upload_weights(cuda_backend *b, llm_error *err) {
  llm_model *m = b->model;
  std::vector<std::pair<const llm_tensor *, cuda_matrix *>> slots = {
    { &m->token_embd, &b->token_embd }, { &m->output_norm, &b->output_norm }, { &m->output, &b->output }
  };
  b->layers.resize(m->config.n_layers);
  for (int l = 0; l < m->config.n_layers; l++) {
    const llm_layer &src = m->layers[l];
    cuda_layer &dst = b->layers[l];
    slots.insert(slots.end(), { { &src.attn_norm, &dst.attn_norm }, { &src.attn_q, &dst.attn_q }, { &src.attn_k, &dst.attn_k },
                                { &src.attn_v, &dst.attn_v }, { &src.attn_output, &dst.attn_output },
                                { &src.ffn_norm, &dst.ffn_norm }, { &src.ffn_gate, &dst.ffn_gate },
                                { &src.ffn_up, &dst.ffn_up }, { &src.ffn_down, &dst.ffn_down } });
  }
  std::vector<size_t> offsets(slots.size()), first_user(slots.size());
  size_t total = 0;
  for (size_t i = 0; i < slots.size(); i++) {
    size_t j = 0;
    while (j < i && slots[j].first->data != slots[i].first->data) j++;
    first_user[i] = j;
    if (j < i) {
      offsets[i] = offsets[j];
      continue;
    }
    offsets[i] = total;
    total += (tensor_bytes(*slots[i].first) + 16 + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
  }
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes), "reading the free device memory");
  if (total > free_bytes)
    return llm_fail(err, LLM_ERR_DEVICE,
                    "out of device memory: the weights need %zu bytes (%.1f MiB) but %s (GPU %d) has %zu bytes (%.1f MiB) free of %.1f MiB",
                    total, total / 1048576.0, b->device_name, b->gpu, free_bytes, free_bytes / 1048576.0,
                    total_bytes / 1048576.0);
  b->weights = static_cast<uint8_t *>(device_alloc(b, total, "the weights", err));
  if (!b->weights) return false;
  for (size_t i = 0; i < slots.size(); i++) {
    const llm_tensor &t = *slots[i].first;
    *slots[i].second = matrix_of(t, b->weights + offsets[i]);
    if (first_user[i] != i) continue; // shares an earlier tensor's bytes, already copied
    CUDA_TRY(cudaMemcpy(b->weights + offsets[i], t.data, tensor_bytes(t), cudaMemcpyHostToDevice), "copying the weights to the GPU");
  }
  if (b->custom.rmsnorm) {
    const int dim = m->config.dim;
    std::vector<const llm_tensor *> norms;
    for (int l = 0; l < m->config.n_layers; l++) norms.insert(norms.end(), { &m->layers[l].attn_norm, &m->layers[l].ffn_norm });
    norms.push_back(&m->output_norm);
    std::vector<float> values(norms.size() * dim);
    for (size_t n = 0; n < norms.size(); n++)
      for (int i = 0; i < dim; i++) values[n * dim + i] = llm_tensor_get(norms[n]->data, norms[n]->type, i);
    if (!(b->norm_f32 = static_cast<float *>(device_alloc(b, values.size() * sizeof(float), "the norm weights in float32", err)))) return false;
    CUDA_TRY(cudaMemcpy(b->norm_f32, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice), "copying the norm weights");
  }
  const size_t freq_bytes = (size_t)m->config.head_dim / 2 * sizeof(float);
  if (!(b->rope_freqs = static_cast<float *>(device_alloc(b, freq_bytes, "the rope frequencies", err)))) return false;
  CUDA_TRY(cudaMemcpy(b->rope_freqs, m->config.rope_freqs, freq_bytes, cudaMemcpyHostToDevice), "copying the rope frequencies");
  return true;
}

void drop_graphs(cuda_backend *b) {
  for (decode_graph &g : b->graphs) cudaGraphExecDestroy(g.exec);
  b->graphs.clear();
}

void free_pass_buffers(pass_buffers &p) {
  void *all[] = { p.x, p.xb, p.q, p.k, p.v, p.attn, p.hb, p.hb2, p.logits, p.partial, p.act, p.logit_map, p.top_ids,
                  p.top_logits, p.first_non_finite, p.attn_tiles, p.row_tiled, p.positions };
  for (void *ptr : all) cudaFree(ptr);
  p = pass_buffers();
}

// The most split-K partial bytes the tensor-core products of a pass of up to n_rows rows use: over the products
// enqueue_pass launches together, those of one type in one launch as products() makes them.
size_t split_k_bytes(const cuda_backend *b, int n_rows) {
  size_t most = 0;
  const auto launches = [&](std::initializer_list<const cuda_matrix *> together) {
    for (const cuda_matrix *m : together) {
      if (!matmul_takes_tensor_cores(*m, n_rows)) continue;
      const cuda_matrix *same_type[MATMUL_MAX_PRODUCTS];
      int n = 0;
      for (const cuda_matrix *other : together)
        if (other->type == m->type) same_type[n++] = other;
      most = std::max(most, matmul_mma_partial_bytes(same_type, n, n_rows));
    }
  };
  for (const cuda_layer &l : b->layers) {
    launches({ &l.attn_q, &l.attn_k, &l.attn_v });
    launches({ &l.attn_output });
    launches({ &l.ffn_gate, &l.ffn_up });
    launches({ &l.ffn_down });
  }
  launches({ &b->output });
  return most;
}

// Makes the workspace hold the split-K partials of passes of n_rows rows and, from the first pass that cuBLAS may
// take quantized products in, the largest quantized matrix of the layers (tried once: the output matrix meets few
// rows in most passes and stays on the tiles when it does not fit). Growing moves it, so drops the graphs. Without
// the memory the quantized products stay on the tiles, and split less.
bool reserve_workspace(cuda_backend *b, int n_rows, llm_error *err) {
  size_t partials = 0, blas = 0;
  if (n_rows > b->workspace_rows) {
    partials = split_k_bytes(b, n_rows);
    b->workspace_rows = n_rows;
  }
  if (n_rows >= CUBLAS_MIN_TOKENS_QUANTIZED && !b->blas_tried) {
    b->blas_tried = true;
    for (const cuda_layer &l : b->layers)
      for (const cuda_matrix *m : { &l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_gate, &l.ffn_up, &l.ffn_down })
        blas = std::max(blas, cublas_workspace_bytes(*m));
  }
  matmul_workspace &w = b->workspace;
  if (std::max(partials, blas) <= w.partial_bytes) return true;
  CUDA_TRY(cudaStreamSynchronize(b->stream), "waiting for the GPU");
  drop_graphs(b);
  for (const size_t bytes : { std::max(partials, blas), partials }) {
    void *memory = nullptr;
    if (bytes <= w.partial_bytes) break;
    if (cudaMalloc(&memory, bytes) != cudaSuccess) {
      cudaGetLastError(); // not an error of the pass: clear it
      continue;
    }
    cudaFree(w.f16_weights);
    w.f16_weights = static_cast<__half *>(memory);
    w.partials = static_cast<float *>(memory);
    w.f16_weight_bytes = w.partial_bytes = bytes;
    break;
  }
  return true;
}

// Makes the pass buffers hold n_rows rows, n_logit_rows logit rows and the attention partials of n_chunks chunks.
bool reserve(cuda_backend *b, int n_rows, int n_logit_rows, int n_chunks, llm_error *err) {
  const llm_config &c = b->model->config;
  pass_buffers &p = b->buf;
  const size_t partial = attention_partial_floats(n_rows, c.n_heads, c.head_dim, n_chunks);
  if (!reserve_workspace(b, n_rows, err)) return false;
  if (n_rows <= p.rows && n_logit_rows <= p.logit_rows && partial <= p.partial_floats) return true;
  CUDA_TRY(cudaStreamSynchronize(b->stream), "waiting for the GPU");
  drop_graphs(b);
  const int rows = std::max({ p.rows, n_rows, 1 });
  const int logit_rows = std::max({ p.logit_rows, n_logit_rows, 1 });
  const size_t partial_floats = std::max({ p.partial_floats, partial, attention_partial_floats(rows, c.n_heads, c.head_dim, 1) });
  free_pass_buffers(p);
  const size_t r = (size_t)rows, q_dim = (size_t)c.n_heads * c.head_dim, kv_dim = (size_t)c.n_kv_heads * c.head_dim;
  const size_t widest = std::max({ (size_t)c.dim, q_dim, (size_t)c.hidden_dim });
  const struct {
    void **ptr;
    size_t bytes;
  } wanted[] = {
    { (void **)&p.x, r * c.dim * 4 },          { (void **)&p.xb, r * c.dim * 4 },
    { (void **)&p.q, r * q_dim * 4 },          { (void **)&p.k, r * kv_dim * 4 },
    { (void **)&p.v, r * kv_dim * 4 },         { (void **)&p.attn, r * q_dim * 4 },
    { (void **)&p.hb, r * c.hidden_dim * 4 },  { (void **)&p.hb2, r * c.hidden_dim * 4 },
    { (void **)&p.logits, (size_t)logit_rows * c.vocab_size * 4 },
    { (void **)&p.partial, partial_floats * 4 },
    // bf16 x2 is the widest activation layout: 4 bytes per value (q8_0: 48 bytes per 32).
    { (void **)&p.act, r * std::max(widest * 4, (widest / 32 + 1) * sizeof(act_q8_0)) },
    { (void **)&p.logit_map, r * sizeof(int32_t) },
    { (void **)&p.top_ids, r * TOP_K_DEVICE_MAX * sizeof(int32_t) },
    { (void **)&p.top_logits, r * TOP_K_DEVICE_MAX * sizeof(float) },
    { (void **)&p.first_non_finite, sizeof(unsigned long long) },
    { (void **)&p.attn_tiles, r * 2 * sizeof(int32_t) },
    { (void **)&p.row_tiled, r },
    { (void **)&p.positions, r * sizeof(int32_t) },
  };
  for (const auto &w : wanted) {
    if (!(*w.ptr = device_alloc(b, w.bytes, "the activations of a pass", err))) {
      free_pass_buffers(p);
      return false;
    }
  }
  p.rows = rows;
  p.logit_rows = logit_rows;
  p.partial_floats = partial_floats;
  return true;
}

cuda_row *rows_of(uint8_t *index) { return reinterpret_cast<cuda_row *>(index); }
int32_t *table_of(uint8_t *index) { return reinterpret_cast<int32_t *>(index + kRowsBytes); }

// Makes the pass index hold a block table of `entries` ids, at least doubling it when it grows (which moves it and
// so drops the graphs).
bool reserve_index(cuda_backend *b, int64_t entries, llm_error *err) {
  if (entries <= b->index_entries) return true;
  CUDA_TRY(cudaStreamSynchronize(b->stream), "waiting for the GPU");
  drop_graphs(b);
  const int64_t grown = std::max(entries, 2 * b->index_entries);
  const size_t bytes = kRowsBytes + (size_t)grown * sizeof(int32_t);
  cudaFree(b->index);
  cudaFreeHost(b->index_host);
  b->index = b->index_host = nullptr;
  b->index_entries = 0;
  if (!(b->index = static_cast<uint8_t *>(device_alloc(b, bytes, "the rows of a pass", err)))) return false;
  CUDA_TRY(cudaMallocHost(&b->index_host, bytes), "allocating pinned memory for the rows of a pass");
  b->index_entries = grown;
  return true;
}

// The products of one input: grouped by weight type (one launch per group), the input quantized once per
// activation layout the groups need. `held`: the layout b->buf.act already holds x in (ACT_F32: none).
cudaError_t products(cuda_backend *b, const cuda_matrix *const weights[], float *const outs[], int n_products,
                     const float *x, int n_tokens, matmul_mode mode, act_format held = ACT_F32) {
  const int64_t cols = weights[0]->cols;
  bool done[MATMUL_MAX_PRODUCTS] = {};
  for (int i = 0; i < n_products; i++) {
    if (done[i]) continue;
    const cuda_matrix *group[MATMUL_MAX_PRODUCTS];
    float *group_outs[MATMUL_MAX_PRODUCTS];
    int n = 0;
    for (int j = i; j < n_products; j++) {
      if (done[j] || weights[j]->type != weights[i]->type) continue;
      group[n] = weights[j];
      group_outs[n++] = outs[j];
      done[j] = true;
    }
    const act_format format = matmul_activation_format(*weights[i], n_tokens, &b->workspace);
    const void *input = x;
    if (format != ACT_F32) {
      if (format != held) LAUNCH(launch_quantize(format, x, b->buf.act, n_tokens, cols, b->stream));
      held = format;
      input = b->buf.act;
    }
    LAUNCH(launch_matmul(group, group_outs, n, input, activation_row_bytes(format, cols), n_tokens, mode, b->stream, &b->workspace));
  }
  return cudaSuccess;
}

// RMSNorm of n_rows rows of x (x row row_map[i] with a row_map) into out: the built-in kernel, which also quantizes
// the rows when given `quantized`, or the custom library's launcher with norm `index` of norm_f32 (which never
// quantizes: callers pass `quantized` only without one).
cudaError_t norm(cuda_backend *b, float *out, const float *x, const cuda_matrix *weight, int index, const int32_t *row_map, int n_rows,
                 act_q8_0 *quantized) {
  const llm_config &c = b->model->config;
  if (!b->custom.rmsnorm) return launch_rmsnorm(out, x, weight, row_map, n_rows, c.dim, c.norm_eps, b->stream, quantized);
  if (n_rows == 0) return cudaSuccess;
  if (row_map) {
    LAUNCH(launch_gather_rows(out, x, row_map, n_rows, c.dim, b->stream));
    x = out;
  }
  return (cudaError_t)b->custom.rmsnorm(out, x, b->norm_f32 + (int64_t)index * c.dim, n_rows, c.dim, c.norm_eps, b->stream);
}

cudaError_t swiglu(cuda_backend *b, float *out, const float *gate, const float *up, int64_t n) {
  return b->custom.swiglu ? (cudaError_t)b->custom.swiglu(out, gate, up, n, b->stream) : launch_swiglu(out, gate, up, n, b->stream);
}

// Enqueues one pass over the rows in the pass index, keys and values in kv: the Llama blocks, then the final norm
// and the vocabulary product of the rows in buf.logit_map. n_tiles tiles in buf.attn_tiles, of n_tiled_rows rows,
// attend as prompts. decode: each row is its own sequence's one token, so attention may rotate and store the rows'
// keys itself (unless a custom RoPE rotates them first).
cudaError_t enqueue_pass(cuda_backend *b, int n, int n_logit_rows, int n_chunks, int n_tiles, int n_tiled_rows, bool decode,
                         const cuda_kv &kv) {
  const llm_config &c = b->model->config;
  pass_buffers &p = b->buf;
  cudaStream_t s = b->stream;
  const cuda_row *rows_info = rows_of(b->index);
  LAUNCH(launch_embedding(p.x, &b->token_embd, rows_info, n, s));
  const bool custom_rope = b->custom.rope != nullptr;
  if (custom_rope) LAUNCH(launch_row_positions(p.positions, rows_info, n, s));
  // Decode attention rotates and stores the keys itself, unless a custom RoPE has rotated them.
  const bool fused_rope = decode && !custom_rope;
  for (const cuda_layer &layer : b->layers) {
    const int l = (int)(&layer - b->layers.data());
    // The built-in norms quantize their rows themselves when the products after them take q8_0 activations.
    const act_format qkv_format = matmul_activation_format(layer.attn_q, n, &b->workspace);
    const act_format qkv_held = qkv_format == ACT_Q8_0 && !b->custom.rmsnorm ? ACT_Q8_0 : ACT_F32;
    LAUNCH(norm(b, p.xb, p.x, &layer.attn_norm, 2 * l, nullptr, n, qkv_held == ACT_Q8_0 ? static_cast<act_q8_0 *>(p.act) : nullptr));
    const cuda_matrix *qkv[] = { &layer.attn_q, &layer.attn_k, &layer.attn_v };
    float *const qkv_out[] = { p.q, p.k, p.v };
    LAUNCH(products(b, qkv, qkv_out, 3, p.xb, n, MATMUL_STORE, qkv_held));
    if (custom_rope)
      LAUNCH((cudaError_t)b->custom.rope(p.q, p.k, p.positions, n, c.n_heads, c.n_kv_heads, c.head_dim, b->rope_freqs,
                                         c.rope_interleaved, s));
    const attention_rope rope = { p.k, p.v, b->rope_freqs, c.rope_interleaved };
    if (!fused_rope)
      LAUNCH(launch_rope_store(p.q, p.k, p.v, rows_info, n, kv, l, c.n_heads, c.n_kv_heads, c.head_dim,
                               custom_rope ? nullptr : rope.freqs, rope.interleaved, s));
    LAUNCH(launch_attention_tiles(p.attn, p.q, rows_info, p.attn_tiles, n_tiles, kv, l, c.n_heads, c.n_kv_heads, c.head_dim, s));
    // Without tiles (every decode pass) attention quantizes its rows for the output product itself.
    const bool attn_quantized = n_tiles == 0 && c.head_dim % 32 == 0 && matmul_activation_format(layer.attn_output, n, &b->workspace) == ACT_Q8_0;
    if (n_tiled_rows < n)
      LAUNCH(launch_attention(p.attn, p.q, rows_info, n, kv, l, c.n_heads, c.n_kv_heads, c.head_dim, n_chunks, p.partial,
                              n_tiles > 0 ? p.row_tiled : nullptr, s, attn_quantized ? static_cast<act_q8_0 *>(p.act) : nullptr,
                              fused_rope ? rope : attention_rope{}));
    const cuda_matrix *o[] = { &layer.attn_output };
    float *const residual[] = { p.x };
    LAUNCH(products(b, o, residual, 1, p.attn, n, MATMUL_ADD, attn_quantized ? ACT_Q8_0 : ACT_F32));

    const act_format ffn_format = matmul_activation_format(layer.ffn_gate, n, &b->workspace);
    const act_format ffn_held = ffn_format == ACT_Q8_0 && !b->custom.rmsnorm ? ACT_Q8_0 : ACT_F32;
    LAUNCH(norm(b, p.xb, p.x, &layer.ffn_norm, 2 * l + 1, nullptr, n, ffn_held == ACT_Q8_0 ? static_cast<act_q8_0 *>(p.act) : nullptr));
    const cuda_matrix *gate_up[] = { &layer.ffn_gate, &layer.ffn_up };
    float *const gate_up_out[] = { p.hb, p.hb2 };
    if (layer.ffn_gate.type == layer.ffn_up.type && !b->custom.swiglu) {
      LAUNCH(products(b, gate_up, gate_up_out, 2, p.xb, n, MATMUL_SWIGLU, ffn_held));
    } else {
      LAUNCH(products(b, gate_up, gate_up_out, 2, p.xb, n, MATMUL_STORE, ffn_held));
      LAUNCH(swiglu(b, p.hb, p.hb, p.hb2, (int64_t)n * c.hidden_dim));
    }
    const cuda_matrix *down[] = { &layer.ffn_down };
    LAUNCH(products(b, down, residual, 1, p.hb, n, MATMUL_ADD));
  }
  if (n_logit_rows == 0) return cudaSuccess;
  LAUNCH(norm(b, p.xb, p.x, &b->output_norm, 2 * c.n_layers, p.logit_map, n_logit_rows, nullptr));
  const cuda_matrix *output[] = { &b->output };
  float *const logits[] = { p.logits };
  LAUNCH(products(b, output, logits, 1, p.xb, n_logit_rows, MATMUL_STORE));
  return launch_first_non_finite(p.logits, (int64_t)n_logit_rows * c.vocab_size, p.first_non_finite, s);
}

// A decode pass through its graph: replayed when one of this shape exists, else captured first.
bool run_graph(cuda_backend *b, int n, int n_logit_rows, int n_chunks, const cuda_kv &kv, llm_error *err) {
  for (const decode_graph &g : b->graphs) {
    if (g.n_rows == n && g.n_logit_rows == n_logit_rows && g.n_chunks == n_chunks && same_kv(g.kv, kv)) {
      CUDA_TRY(cudaGraphLaunch(g.exec, b->stream), "replaying a decode graph");
      return true;
    }
  }
  // Thread-local capture: the JS thread may allocate or copy KV cache blocks meanwhile.
  CUDA_TRY(cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal), "capturing a decode graph");
  b->workspace.graph_capture = true;
  const cudaError_t enqueued = enqueue_pass(b, n, n_logit_rows, n_chunks, 0, 0, true, kv);
  b->workspace.graph_capture = false;
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(b->stream, &graph);
  CUDA_TRY(enqueued, "launching the kernels of a decode pass");
  CUDA_TRY(ended, "capturing a decode graph");
  decode_graph g = { n, n_logit_rows, n_chunks, kv, nullptr };
  const cudaError_t made = cudaGraphInstantiate(&g.exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_TRY(made, "instantiating a decode graph");
  if (b->graphs.size() == kMaxGraphs) {
    cudaGraphExecDestroy(b->graphs.front().exec);
    b->graphs.erase(b->graphs.begin());
  }
  b->graphs.push_back(g);
  CUDA_TRY(cudaGraphLaunch(g.exec, b->stream), "replaying a decode graph");
  return true;
}

// Where a pass's logit row goes: its sequence and token.
struct logit_owner {
  int seq, token, logit_row;
};

// Copies back what each sequence asked for: its logits rows and, for its last token, the top k ids and their logits
// (ranked on the device; on the host from the logits when k is above what the device kernel takes). The device ranks
// the span of logit rows that want it in one launch, at the largest k asked (a larger k's ranking starts with the
// smaller one's), so that a pass of many sampled sequences costs one ranking, not one per sequence.
bool deliver(cuda_backend *b, const llm_batch_sequence *seqs, const std::vector<logit_owner> &owners, llm_error *err) {
  const int vocab = b->model->config.vocab_size;
  struct host_top_k {
    const llm_batch_sequence *seq;
    const float *logits;
  };
  std::vector<host_top_k> host_ranked;
  std::vector<std::vector<float>> host_rows;
  std::vector<std::pair<int, const llm_batch_sequence *>> device_ranked; // (logit row, sequence)
  int first_ranked = 0, last_ranked = -1, k_ranked = 0;
  for (const logit_owner &o : owners) {
    const llm_batch_sequence &s = seqs[o.seq];
    const float *row = b->buf.logits + (int64_t)o.logit_row * vocab;
    float *host_row = nullptr;
    if (s.logits_mode != LLM_LOGITS_NONE) {
      host_row = s.logits + (s.logits_mode == LLM_LOGITS_ALL ? (int64_t)o.token * vocab : 0);
      CUDA_TRY(cudaMemcpyAsync(host_row, row, (size_t)vocab * sizeof(float), cudaMemcpyDeviceToHost, b->stream), "copying logits");
    }
    if (s.top_k == 0 || o.token != s.n_tokens - 1) continue;
    if (s.top_k <= TOP_K_DEVICE_MAX) {
      if (device_ranked.empty()) first_ranked = o.logit_row;
      last_ranked = o.logit_row;
      k_ranked = std::max(k_ranked, s.top_k);
      device_ranked.push_back({ o.logit_row, &s });
    } else {
      if (!host_row) {
        host_rows.emplace_back((size_t)vocab);
        host_row = host_rows.back().data();
        CUDA_TRY(cudaMemcpyAsync(host_row, row, (size_t)vocab * sizeof(float), cudaMemcpyDeviceToHost, b->stream), "copying logits");
      }
      host_ranked.push_back({ &s, host_row });
    }
  }
  if (!device_ranked.empty()) {
    const int n_rows = last_ranked - first_ranked + 1;
    CUDA_TRY(launch_top_k(b->buf.logits + (int64_t)first_ranked * vocab, n_rows, vocab, k_ranked, b->buf.top_ids,
                          b->buf.top_logits, b->stream), "ranking the top k");
    CUDA_TRY(cudaMemcpyAsync(b->top_ids_host, b->buf.top_ids, (size_t)n_rows * k_ranked * sizeof(int32_t), cudaMemcpyDeviceToHost,
                             b->stream), "copying the top k");
    CUDA_TRY(cudaMemcpyAsync(b->top_logits_host, b->buf.top_logits, (size_t)n_rows * k_ranked * sizeof(float), cudaMemcpyDeviceToHost,
                             b->stream), "copying the top k");
  }
  if (!owners.empty())
    CUDA_TRY(cudaMemcpyAsync(b->first_non_finite_host, b->buf.first_non_finite, sizeof(unsigned long long), cudaMemcpyDeviceToHost,
                             b->stream), "copying the logits check");
  CUDA_TRY(cudaStreamSynchronize(b->stream), "running a forward pass");
  if (!owners.empty() && *b->first_non_finite_host != ULLONG_MAX) {
    const int64_t bad = (int64_t)*b->first_non_finite_host;
    for (const logit_owner &o : owners) {
      if (o.logit_row != bad / vocab) continue;
      return llm_fail(err, LLM_ERR_NUMERICAL,
                      "the logits at position %d are not finite (token %lld): the weights hold NaN or infinity, or the "
                      "activations overflow", seqs[o.seq].pos + o.token, (long long)(bad % vocab));
    }
  }
  for (const auto &d : device_ranked) {
    const int64_t slot = (int64_t)(d.first - first_ranked) * k_ranked;
    const llm_batch_sequence &s = *d.second;
    memcpy(s.top_ids, b->top_ids_host + slot, (size_t)s.top_k * sizeof(int32_t));
    if (s.top_logits) memcpy(s.top_logits, b->top_logits_host + slot, (size_t)s.top_k * sizeof(float));
  }
  for (const host_top_k &h : host_ranked) {
    const llm_batch_sequence &s = *h.seq;
    llm_top_k(h.logits, vocab, s.top_k, s.top_ids);
    if (s.top_logits)
      for (int i = 0; i < s.top_k; i++) s.top_logits[i] = h.logits[s.top_ids[i]];
  }
  return true;
}

int chunks_for(int positions) { return (positions + ATTENTION_CHUNK - 1) / ATTENTION_CHUNK; }
int blocks_for(int positions) { return (positions + LLM_KV_BLOCK_TOKENS - 1) / LLM_KV_BLOCK_TOKENS; }

// The pool the sequences' blocks are in, as the kernels see it (its block table the pass index's), after checking
// that it is this device's and fits the model; and the block table's room for any pass of the batch (each
// sequence's ids up to its context size, which llm_forward_batch has checked its positions against, so that
// decode steps reuse their graphs as sequences grow).
bool pass_pool(cuda_backend *b, const llm_batch_sequence *seqs, int n_seqs, cuda_kv *kv, llm_error *err) {
  const llm_config &c = b->model->config;
  const llm_kv_pool *pool = seqs[0].cache->pool;
  int64_t table_entries = 0;
  for (int i = 0; i < n_seqs; i++) {
    const llm_kv_cache *cache = seqs[i].cache;
    if (cache->pool != pool) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "the sequences of a batch are in different KV cache pools");
    table_entries += blocks_for(cache->context_size);
  }
  const struct llm_kv_pool_layout *layout = llm_kv_pool_layout(pool);
  if (layout->backend != &b->base)
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "the KV cache pool is not in the memory of %s (GPU %d)", b->device_name, b->gpu);
  if (!reserve_index(b, table_entries, err)) return false;
  *kv = cuda_kv{ layout->keys, layout->values, table_of(b->index), layout->row_bytes, layout->n_blocks, (int)layout->type };
  if (layout->n_layers != c.n_layers || !cuda_kv_supported(*kv, c.n_kv_heads, c.head_dim))
    return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "a %s KV cache pool of %d layers and rows of %zu bytes does not fit this model",
                    llm_kv_type_name(layout->type) ? llm_kv_type_name(layout->type) : "unknown", layout->n_layers, layout->row_bytes);
  return true;
}

// Appends the block ids of positions [0, positions) of a cache to the pass's table at *n_table; false when one has
// none or is outside the pool (the engine prepares every position a pass writes: a kernel must never see such an id).
bool append_blocks(const llm_kv_cache *cache, int positions, int n_pool_blocks, int32_t *table, int *n_table, llm_error *err) {
  for (int i = 0; i < blocks_for(positions); i++) {
    const int32_t id = cache->blocks[i];
    if (id < 0 || id >= n_pool_blocks)
      return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "positions %d to %d of a sequence have no block in the KV cache pool (block id %d)",
                      i * LLM_KV_BLOCK_TOKENS, (i + 1) * LLM_KV_BLOCK_TOKENS - 1, (int)id);
    table[(*n_table)++] = id;
  }
  return true;
}

bool forward_batch(llm_backend *base, const llm_batch_sequence *seqs, int n_seqs, llm_error *err) {
  cuda_backend *b = reinterpret_cast<cuda_backend *>(base);
  CUDA_TRY(cudaSetDevice(b->gpu), "selecting the GPU");
  if (n_seqs == 0) return true;
  cuda_kv kv;
  if (!pass_pool(b, seqs, n_seqs, &kv, err)) return false;
  cuda_row *rows_host = rows_of(b->index_host);
  int32_t *table_host = table_of(b->index_host);
  std::vector<logit_owner> owners;
  for (int seq = 0, token = 0; seq < n_seqs;) {
    int n = 0, n_logit_rows = 0, max_visible = 0, max_context = 0, n_table = 0, seq_blocks = 0;
    bool decode = true; // every sequence of the pass runs one token: the graph's case
    owners.clear();
    while (seq < n_seqs && n < kMaxPassRows) {
      const llm_batch_sequence &s = seqs[seq];
      const llm_kv_cache *cache = s.cache;
      if (token == 0 || n == 0) { // the sequence's first row in this pass: its block ids join the pass's table
        seq_blocks = n_table;
        if (!append_blocks(cache, s.pos + s.n_tokens, kv.n_blocks, table_host, &n_table, err)) return false;
      }
      rows_host[n] = cuda_row{ s.pos + token, s.tokens[token], seq_blocks };
      const bool last = token == s.n_tokens - 1;
      if (s.logits_mode == LLM_LOGITS_ALL || (last && (s.logits_mode == LLM_LOGITS_LAST || s.top_k > 0))) {
        b->logit_map_host[n_logit_rows] = n;
        owners.push_back({ seq, token, n_logit_rows++ });
      }
      decode = decode && s.n_tokens == 1;
      max_visible = std::max(max_visible, s.pos + token + 1);
      max_context = std::max(max_context, cache->context_size);
      n++;
      if (++token == s.n_tokens) {
        seq++;
        token = 0;
      }
    }
    // Prompt runs attend in tiles (never in a decode pass, whose rows are of different sequences).
    int n_tiled_rows = 0;
    const int n_tiles = plan_attention_tiles(rows_host, n, b->model->config.head_dim, b->attn_tiles_host, b->row_tiled_host, &n_tiled_rows);
    // A graph must serve every later position: its chunks cover the whole context.
    const bool graph = decode && b->use_graphs && n_tiles == 0;
    const int n_chunks = chunks_for(graph ? max_context : max_visible);
    if (n_chunks > 65535) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "a context of %d positions is too long for the CUDA backend", max_context);
    if (!reserve(b, n, n_logit_rows, n_chunks, err)) return false;
    // The rows and the block table in one copy (the rows' region whole: a few KB).
    CUDA_TRY(cudaMemcpyAsync(b->index, b->index_host, kRowsBytes + (size_t)n_table * sizeof(int32_t), cudaMemcpyHostToDevice, b->stream),
             "copying the pass's rows");
    if (n_logit_rows > 0)
      CUDA_TRY(cudaMemcpyAsync(b->buf.logit_map, b->logit_map_host, n_logit_rows * sizeof(int32_t), cudaMemcpyHostToDevice, b->stream),
               "copying the pass's rows");
    if (n_tiles > 0) {
      CUDA_TRY(cudaMemcpyAsync(b->buf.attn_tiles, b->attn_tiles_host, 2 * n_tiles * sizeof(int32_t), cudaMemcpyHostToDevice, b->stream),
               "copying the pass's rows");
      CUDA_TRY(cudaMemcpyAsync(b->buf.row_tiled, b->row_tiled_host, n, cudaMemcpyHostToDevice, b->stream), "copying the pass's rows");
    }
    if (graph) {
      if (!run_graph(b, n, n_logit_rows, n_chunks, kv, err)) return false;
    } else {
      CUDA_TRY(enqueue_pass(b, n, n_logit_rows, n_chunks, n_tiles, n_tiled_rows, decode && n_tiles == 0, kv),
               "launching the kernels of a forward pass");
    }
    if (!deliver(b, seqs, owners, err)) return false;
  }
  return true;
}

// The KV pool's memory and copies (kv_cache.c calls these through llm_backend).
void *cache_alloc(llm_backend *base, size_t bytes, llm_error *err) {
  cuda_backend *b = reinterpret_cast<cuda_backend *>(base);
  const cudaError_t e = cudaSetDevice(b->gpu);
  if (e != cudaSuccess) {
    cuda_fail(err, e, "selecting the GPU");
    return nullptr;
  }
  return device_alloc(b, bytes, "the KV cache pool", err);
}

void cache_free(llm_backend *base, void *memory) {
  cudaSetDevice(reinterpret_cast<cuda_backend *>(base)->gpu);
  cudaFree(memory);
}

// On a stream of its own, waited for: cudaMemcpy would issue on the legacy default stream, which does not order
// itself with the passes' non-blocking stream, and returns before a device-to-device copy (or the DMA of a
// pageable host-to-device one) is done, so the next pass could read a block being copied.
bool cache_copy(llm_backend *base, void *dst, const void *src, size_t bytes, llm_copy_direction direction, llm_error *err) {
  cuda_backend *b = reinterpret_cast<cuda_backend *>(base);
  CUDA_TRY(cudaSetDevice(b->gpu), "selecting the GPU");
  const cudaMemcpyKind kind = direction == LLM_COPY_DEVICE_TO_DEVICE ? cudaMemcpyDeviceToDevice
                              : direction == LLM_COPY_DEVICE_TO_HOST ? cudaMemcpyDeviceToHost
                                                                     : cudaMemcpyHostToDevice;
  CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, kind, b->copy_stream), "copying KV cache blocks");
  CUDA_TRY(cudaStreamSynchronize(b->copy_stream), "copying KV cache blocks");
  return true;
}

void destroy(llm_backend *base) {
  cuda_backend *b = reinterpret_cast<cuda_backend *>(base);
  cudaSetDevice(b->gpu);
  if (b->stream) cudaStreamSynchronize(b->stream);
  drop_graphs(b);
  free_pass_buffers(b->buf);
  cudaFree(b->index);
  cudaFreeHost(b->index_host);
  cudaFree(b->weights);
  cudaFree(b->workspace.f16_weights);
  cudaFree(b->rope_freqs);
  cudaFree(b->norm_f32);
  cudaFreeHost(b->logit_map_host);
  cudaFreeHost(b->top_ids_host);
  cudaFreeHost(b->top_logits_host);
  cudaFreeHost(b->first_non_finite_host);
  cudaFreeHost(b->attn_tiles_host);
  cudaFreeHost(b->row_tiled_host);
  if (b->stream) cudaStreamDestroy(b->stream);
  if (b->copy_stream) cudaStreamDestroy(b->copy_stream);
  delete b;
}

} // namespace

extern "C" int llm_cuda_device_count(char *why, size_t why_size) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why_size) snprintf(why, why_size, "%s", cudaGetErrorString(e));
    return 0;
  }
  if (n == 0 && why_size) snprintf(why, why_size, "no CUDA device found");
  return n;
}

extern "C" bool llm_cuda_attach(llm_model *model, int gpu, llm_error *err) {
  char why[256];
  const int count = llm_cuda_device_count(why, sizeof why);
  if (count == 0) return llm_fail(err, LLM_ERR_DEVICE, "CUDA is not available: %s", why);
  if (gpu < 0 || gpu >= count)
    return llm_fail_argument(err, "gpu", "gpu %d does not exist: this machine has %d CUDA device(s)", gpu, count);
  if (model->backend) return llm_fail(err, LLM_ERR_INVALID_ARGUMENT, "the model is already on %s", model->backend->device);
  CUDA_TRY(cudaSetDevice(gpu), "selecting the GPU");
  cudaDeviceProp props;
  CUDA_TRY(cudaGetDeviceProperties(&props, gpu), "reading the GPU's properties");
  if (props.major < 8)
    return llm_fail(err, LLM_ERR_DEVICE, "%s (GPU %d) has compute capability %d.%d; the CUDA backend needs 8.0 or newer",
                    props.name, gpu, props.major, props.minor);
  cuda_backend *b = new cuda_backend();
  b->model = model;
  b->gpu = gpu;
  snprintf(b->device_name, sizeof b->device_name, "%s", props.name);
  b->base = llm_backend{ "cuda", b->device_name, kMaxPassRows, forward_batch, cache_alloc, cache_free, cache_copy, destroy };
  const char *graphs = getenv("LLAMA_NAPI_CUDA_GRAPHS");
  b->use_graphs = !(graphs && strcmp(graphs, "0") == 0);
  if (model->custom_ops) b->custom = *llm_custom_ops_launchers(model->custom_ops); // before the upload, which reads it
  bool ok = true;
  cudaError_t e = cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&b->copy_stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaMallocHost(&b->logit_map_host, kMaxPassRows * sizeof(int32_t));
  if (e == cudaSuccess) e = cudaMallocHost(&b->top_ids_host, (size_t)kMaxPassRows * TOP_K_DEVICE_MAX * sizeof(int32_t));
  if (e == cudaSuccess) e = cudaMallocHost(&b->top_logits_host, (size_t)kMaxPassRows * TOP_K_DEVICE_MAX * sizeof(float));
  if (e == cudaSuccess) e = cudaMallocHost(&b->first_non_finite_host, sizeof(unsigned long long));
  if (e == cudaSuccess) e = cudaMallocHost(&b->attn_tiles_host, (size_t)kMaxPassRows * 2 * sizeof(int32_t));
  if (e == cudaSuccess) e = cudaMallocHost(&b->row_tiled_host, kMaxPassRows);
  if (e != cudaSuccess) ok = cuda_fail(err, e, "setting up the GPU");
  if (ok) ok = reserve_index(b, kInitialTableEntries, err) && upload_weights(b, err);
  if (!ok) {
    destroy(&b->base);
    return false;
  }
  model->backend = &b->base;
  return true;
}
