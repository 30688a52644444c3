// Weight-times-activations products of many tokens on the tensor cores (mma.sync), for prompts; matmul.cu's
// warp-per-row kernel stays the path for a few tokens (launch_matmul picks by token count).
//
// A block computes a tile of kTileRows weight rows x kTileTokens tokens (kFewTileTokens for launches of no more
// tokens), walking the columns in k-tiles of 256 bytes per row in the MMA form: 256 int8 values for the quantized
// formats, 128 halves for f16/bf16. Per k-tile it stages the weight rows' file bytes in shared memory (cp.async),
// unpacks them once into signed bytes with their scales (formats.cuh), stages the tokens' activations, then 8
// warps (4 along rows x 2 along tokens, 32 rows x half the tile's tokens each) run 8 k-steps of m16n8k32 int8 (or
// m16n8k16 f16/bf16) products from ldmatrix fragments.
//
// The quantized formats meet the q8 activations of the decode path, so every block's (or 16-value group's)
// integer sum is the CPU's exactly; the scales apply to those integers as on the CPU (quant_*.c), and only the
// order of the float sums differs. f16 weights meet activations rounded to f16; bf16 weights meet activations split
// into two bf16 terms (hi + lo, 16 significant bits), which keeps bf16 models' logits within the float reference.
// The activations arrive in mma_activation_format (quantize.cu converts them once per pass and product group).
//
// Few tokens make a grid of few blocks (rows / 128 of them below 64 tokens: 32 for 4096 rows on 132 SMs), each
// walking every k-tile. Split-K then gives each block (blockIdx.z) one of S contiguous ranges of k-tiles; the
// blocks store their partial sums to the workspace, [S][tokens][rows of all products], and a second kernel adds
// them up in range order into out.
#include <algorithm>
#include <atomic>

#include "formats.cuh"
#include "kernels.cuh"

namespace {

constexpr int kTileRows = 128;
constexpr int kTileTokens = 64;
// The token tile of launches of at most this many tokens: half the products (and activations staged) of a
// 64-token tile that would be mostly empty.
constexpr int kFewTileTokens = 32;
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * LLM_CUDA_WARP;
constexpr int kTileBytes = 256; // a row's k-tile in the MMA form
constexpr int kSteps = 8;       // MMA k-steps of 32 bytes per k-tile
constexpr int kPitch = kTileBytes + 16; // +16: the 8 rows of an ldmatrix fall in 8 different bank groups

// ---- PTX wrappers ----

__device__ __forceinline__ uint32_t shared_address(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared without registers; bytes past src_bytes (0 or 16) are zero-filled.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async4(void *dst, const void *src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(shared_address(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most `pending` of this thread's committed groups are still in flight.
template <int pending> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}

// c = c0 + a b over k = 32 int8 (a: 16 x 32, b: 32 x 8).
__device__ __forceinline__ void mma_s8_k32(int (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, int c0 = 0) {
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%10, %10, %10, %10};\n"
               : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(c0));
}

// The bits of the float 1.5 * 2^23: an int32 s with |s| < 2^22 added to them are the bits of 1.5 * 2^23 + s
// exactly, so a block's integer sum started from these bits becomes a float with one FADD, not an I2F (a
// quarter-rate conversion on the SMs, which bounded these kernels). A block of 32 int8 products is under 2^20.
constexpr int kExactFloatBias = 0x4B400000;
constexpr float kExactFloatBiasValue = 12582912.0f;
// c = a b over k = 16 int8: the first (a0, a1, b0) or second (a2, a3, b1) half of a k = 32 fragment.
__device__ __forceinline__ void mma_s8_k16(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%7, %7, %7, %7};\n"
               : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
               : "r"(a0), "r"(a1), "r"(b), "r"(0));
}
// c += a b over k = 16 halves, f32 accumulators.
template <typename Half>
__device__ __forceinline__ void mma_half_k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same<Half, __half>::value)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void store_words(uint8_t *dst, const int *q, int n_words) {
  for (int i = 0; i < n_words; i += 4) *reinterpret_cast<int4 *>(dst + 4 * i) = make_int4(q[i], q[i + 1], q[i + 2], q[i + 3]);
}

// ---- The formats' tiles. Each gives ----
//   kAccumulation   how the integer sums meet the scales (below)
//   kValues         values of a row per k-tile; kRawBytes: the file's bytes of a row per k-tile (0: the file's
//                   bytes are the MMA form, staged straight into the tile)
//   RowScales, TokenScales: what a k-tile's products need per weight row and per token
//   unpack_row_unit(raw, unit, first_value, cols, a_row, scales): unit u < kRowUnits of a staged row
// and, from its activations' base (Q8_0Activations, Q8_KActivations, FloatActivations), kPlanes and
//   stage(b, scales, ...): the tokens' activations of a k-tile into the B tile(s) and their scales, by cp.async

enum class Accumulation {
  kPerBlock,      // q8_0, q4_0: acc += sum_block * (d_w d_x) for each block of 32
  kPerSuperBlock, // q4_K, q6_K: integer sums scaled per sub-block or group, converted once per 256 values
  kFloat,         // f16, bf16: the MMA accumulates in f32
};

// kSums: each block's sum of the 32 activations too, which the min formats' m multiplies. (Shared memory is
// tight: q8_0's tiles just fit two blocks per SM, so the other formats' scales add nothing they do not use.)
struct BlockScales {
  float d[kSteps];
};
struct BlockScalesSums {
  float d[kSteps];
  int32_t sum[kSteps];
};
template <bool kSums> struct Q8_0Activations {
  static constexpr int kPlanes = 1;
  using TokenScales = typename std::conditional<kSums, BlockScalesSums, BlockScales>::type;
  // Block b of token t: its 32 bytes by cp.async, its d (and sum); blocks past the row's end are zeros with d = 0.
  template <int Tokens>
  static __device__ void stage(uint8_t (*b)[Tokens][kPitch], TokenScales *scales, const void *x, size_t x_stride,
                               int token0, int n_tokens, int kt, int64_t cols) {
    for (int i = threadIdx.x; i < Tokens * kSteps; i += kThreads) {
      const int t = i / kSteps, blk = i % kSteps;
      if (token0 + t >= n_tokens) continue;
      const int64_t block = (int64_t)kt * kSteps + blk;
      uint8_t *dst = b[0][t] + 32 * blk;
      if (block * 32 < cols) {
        const act_q8_0 *src = reinterpret_cast<const act_q8_0 *>(static_cast<const char *>(x) + (size_t)(token0 + t) * x_stride) + block;
        cp_async16(dst, src->qs, 16);
        cp_async16(dst + 16, src->qs + 16, 16);
        cp_async4(&scales[t].d[blk], &src->d);
        if constexpr (kSums) cp_async4(&scales[t].sum[blk], &src->sum);
      } else {
        reinterpret_cast<int4 *>(dst)[0] = make_int4(0, 0, 0, 0);
        reinterpret_cast<int4 *>(dst)[1] = make_int4(0, 0, 0, 0);
        scales[t].d[blk] = 0.0f;
        if constexpr (kSums) scales[t].sum[blk] = 0;
      }
    }
  }
};

// q8_K activations (one super-block per k-tile; K-quant rows are whole super-blocks): the 256 bytes, and the
// block's d and bsums (q4_K's mins multiply them) as act_q8_K lays them out, copied as they are.
struct Q8_KActivations {
  static constexpr int kPlanes = 1;
  struct alignas(16) TokenScales {
    float d;
    int16_t bsums[16]; // read as 8 words of two
    int32_t pad[3];
  };
  static_assert(sizeof(TokenScales) == sizeof(act_q8_K) - 256, "the tail of act_q8_K");
  template <int Tokens>
  static __device__ void stage(uint8_t (*b)[Tokens][kPitch], TokenScales *scales, const void *x, size_t x_stride,
                               int token0, int n_tokens, int kt, int64_t) {
    for (int i = threadIdx.x; i < Tokens * 19; i += kThreads) {
      const int t = i / 19, chunk = i % 19;
      if (token0 + t >= n_tokens) continue;
      const uint8_t *src = static_cast<const uint8_t *>(x) + (size_t)(token0 + t) * x_stride + (size_t)kt * sizeof(act_q8_K);
      uint8_t *dst = chunk < 16 ? b[0][t] + 16 * chunk : reinterpret_cast<uint8_t *>(&scales[t]) + 16 * (chunk - 16);
      cp_async16(dst, src + 16 * chunk, 16);
    }
  }
};

// f16 activations (ACT_F16), or bf16 x2 (ACT_BF16X2: a row's bf16 values, then the bf16 of what they leave over:
// two B planes whose products add up to the f32 activations' within 2^-16, against 2^-8 for one bf16 term).
template <typename Half> struct FloatActivations {
  static constexpr bool kSplit = !std::is_same<Half, __half>::value;
  static constexpr int kPlanes = kSplit ? 2 : 1;
  struct TokenScales {};
  // 16-byte chunks by cp.async, zeros past the row's end (cols is a multiple of 8 on this path).
  template <int Tokens>
  static __device__ void stage(uint8_t (*b)[Tokens][kPitch], TokenScales *, const void *x, size_t x_stride,
                               int token0, int n_tokens, int kt, int64_t cols) {
    const size_t plane_bytes = (size_t)cols * sizeof(Half);
    for (int i = threadIdx.x; i < kPlanes * Tokens * (kTileBytes / 16); i += kThreads) {
      const int plane = i / (Tokens * (kTileBytes / 16)), t = i / (kTileBytes / 16) % Tokens, chunk = i % (kTileBytes / 16);
      if (token0 + t >= n_tokens) continue;
      const uint8_t *row = static_cast<const uint8_t *>(x) + (size_t)(token0 + t) * x_stride + plane * plane_bytes;
      const size_t offset = (size_t)kt * kTileBytes + 16 * chunk;
      cp_async16(b[plane][t] + 16 * chunk, offset < plane_bytes ? row + offset : row, offset < plane_bytes ? 16 : 0);
    }
  }
};

// The formats of 32-value blocks (q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl): a k-tile is 8 blocks, a unit one block.
// The min formats (q4_1, q5_1) keep q unsigned and add m d_x (sum of the block's activations), as quant_b32.h does.
template <typename F> struct BlockTile : Q8_0Activations<F::kHasMin> {
  static constexpr Accumulation kAccumulation = Accumulation::kPerBlock;
  static constexpr bool kMins = F::kHasMin;
  static constexpr int kValues = 256, kRawBytes = kSteps * F::kBlockBytes, kRowUnits = kSteps;
  struct MinScales {
    float d[kSteps], m[kSteps];
  };
  using RowScales = typename std::conditional<kMins, MinScales, BlockScales>::type;
  static __device__ void unpack_row_unit(const uint8_t *raw, int unit, int64_t first_value, int64_t cols, uint8_t *a_row,
                                         RowScales &scales) {
    int q[8] = {};
    float d = 0.0f, m = 0.0f;
    if (first_value + 32 * unit < cols) {
      F::unpack_signed(raw + unit * F::kBlockBytes, q, d);
      if constexpr (kMins) m = F::template min_of<false>(raw + unit * F::kBlockBytes);
    }
    store_words(a_row + 32 * unit, q, 8);
    scales.d[unit] = d;
    if constexpr (kMins) scales.m[unit] = m;
  }
};

// The formats of 8 sub-blocks of 32 with an integer scale each (q4_K, q5_K: and a min; iq4_xs): a k-tile is one
// super-block, a unit one quarter (two sub-blocks).
template <typename F> struct K32Tile : Q8_KActivations {
  static constexpr Accumulation kAccumulation = Accumulation::kPerSuperBlock;
  static constexpr int kValues = 256, kRawBytes = F::kBlockBytes, kRowUnits = 4;
  static constexpr int kScaleValues = 32; // values per integer scale
  static constexpr bool kMins = F::kMins; // value = d sc q - dmin m: the mins meet the activations' sums
  struct RowScales {
    float d, dmin;
    int scale[kSteps];
    uint8_t min[2 * kSteps]; // 0..63, each twice (m0 m0 m1 m1 ..: dp2a pairs them with bsums), read as 4 words
  };
  static __device__ int step_scale(const RowScales &s, int step, int) { return s.scale[step]; }
  static __device__ void unpack_row_unit(const uint8_t *raw, int k, int64_t, int64_t, uint8_t *a_row, RowScales &scales) {
    int q[16];
    F::unpack_quarter(raw, k, q);
    store_words(a_row + 64 * k, q, 16);
    float d, dmin;
    int scale[2], min[2];
    F::quarter_scales(raw, k, d, dmin, scale, min);
#pragma unroll
    for (int h = 0; h < 2; h++) {
      scales.scale[2 * k + h] = scale[h];
      scales.min[4 * k + 2 * h] = scales.min[4 * k + 2 * h + 1] = (uint8_t)min[h];
    }
    if (k == 0) {
      scales.d = d;
      scales.dmin = dmin;
    }
  }
};

// The formats of 16 groups of 16 with an integer scale each (q6_K, q3_K; q2_K with a min each): a k-tile is one
// super-block, a unit one quarter (16 positions of four 16-value groups); a k-step of 32 holds two groups, so its
// products run as two k = 16 halves.
template <typename F> struct K16Tile : Q8_KActivations {
  static constexpr Accumulation kAccumulation = Accumulation::kPerSuperBlock;
  static constexpr int kValues = 256, kRawBytes = F::kBlockBytes, kRowUnits = 4;
  static constexpr int kScaleValues = 16;
  static constexpr bool kMins = F::kMins;
  struct GroupScales {
    float d;
    int scale[16];
  };
  struct GroupScalesMins {
    float d, dmin;
    int scale[16];
    uint8_t min[16]; // q2_K: the min of each group, as the bsums pair with them; read as 4 words
  };
  using RowScales = typename std::conditional<kMins, GroupScalesMins, GroupScales>::type;
  static __device__ int step_scale(const RowScales &s, int step, int half) { return s.scale[2 * step + half]; }
  static __device__ void unpack_row_unit(const uint8_t *raw, int k, int64_t, int64_t, uint8_t *a_row, RowScales &scales) {
    int v[4][4];
    F::unpack_quarter(raw, k, v);
    const int half = k / 2, l0 = 16 * (k % 2);
#pragma unroll
    for (int g = 0; g < 4; g++) store_words(a_row + 128 * half + 32 * g + l0, v[g], 4);
    float d, dmin = 0.0f;
#pragma unroll
    for (int g = 0; g < 4; g++) {
      const int group = 8 * half + k % 2 + 2 * g;
      int scale, min = 0;
      F::group_scale(raw, group, d, dmin, scale, min);
      scales.scale[group] = scale;
      if constexpr (kMins) scales.min[group] = (uint8_t)min;
    }
    if (k == 0) {
      scales.d = d;
      if constexpr (kMins) scales.dmin = dmin;
    }
  }
};

// f16, bf16: the file's rows are the MMA form (rows of 16-byte multiples on this path).
template <typename Half> struct FloatTile : FloatActivations<Half> {
  static constexpr Accumulation kAccumulation = Accumulation::kFloat;
  static constexpr int kValues = 128, kRawBytes = 0;
  struct RowScales {};
  static __device__ void unpack_row_unit(const uint8_t *, int, int64_t, int64_t, uint8_t *, RowScales &) {}
};

// ---- The kernel ----

template <typename T, int Tokens> struct TileSmem {
  // The file's bytes of a k-tile of each row, from a 16-byte aligned address at or before them (up to 15 bytes
  // of shift, and as many over the end).
  static constexpr int kRawPitch = T::kRawBytes ? (T::kRawBytes + 30) / 16 * 16 : 16;
  // K-tile kt + 1 loads while kt is multiplied: the tokens' tiles and the f16/bf16 rows in two buffers; the
  // formats that unpack stage the file's bytes of kt + 1 once kt is unpacked (so one raw and one A tile: with
  // two B tiles q8_0 takes 112 KB, still 2 blocks per SM).
  static constexpr int kAStages = T::kRawBytes ? 1 : 2;
  uint8_t a[kAStages][kTileRows][kPitch];
  uint8_t b[2][T::kPlanes][Tokens][kPitch];
  uint8_t raw[T::kRawBytes ? kTileRows : 1][kRawPitch];
  typename T::RowScales row_scales[kTileRows];
  typename T::TokenScales token_scales[2][Tokens];
};

struct MmaParams {
  const uint8_t *w[MATMUL_MAX_PRODUCTS];
  float *out[MATMUL_MAX_PRODUCTS];
  int64_t rows[MATMUL_MAX_PRODUCTS];
  int first_tile[MATMUL_MAX_PRODUCTS]; // the first row tile (blockIdx.y) of each product
  int64_t first_row[MATMUL_MAX_PRODUCTS]; // where each product's rows start among all products' (the partials)
  int n_products;
  int64_t total_rows;
  int64_t cols;
  size_t row_bytes;
  const void *x;
  size_t x_stride;
  int n_tokens;
  int n_k_tiles;
  float *partials; // split-K (gridDim.z > 1): range z's sums of token t at partials[(z n_tokens + t) total_rows + row]
  bool add; // out += W x (the residual) instead of out = W x
};

// Stages the k-tile kt of the block's weight rows: the file's bytes into raw (formats with an unpack) or straight
// into the A tile, zero-filled past the row's end.
template <typename T, int Tokens>
__device__ void stage_rows(TileSmem<T, Tokens> &s, int buffer, const uint8_t *w, size_t row_bytes, int rows_here, int kt) {
  if constexpr (T::kRawBytes > 0) {
    constexpr int kChunks = TileSmem<T, Tokens>::kRawPitch / 16;
    for (int i = threadIdx.x; i < kTileRows * kChunks; i += kThreads) {
      const int r = i / kChunks, chunk = i % kChunks;
      if (r >= rows_here) continue;
      const uint8_t *start = w + (size_t)r * row_bytes + (size_t)kt * T::kRawBytes;
      const uint8_t *aligned = reinterpret_cast<const uint8_t *>(reinterpret_cast<uintptr_t>(start) & ~(uintptr_t)15);
      const int64_t left = (int64_t)row_bytes - (int64_t)kt * T::kRawBytes + (start - aligned); // from `aligned` to the row's end
      if (16 * chunk < left && 16 * chunk < (start - aligned) + T::kRawBytes) cp_async16(s.raw[r] + 16 * chunk, aligned + 16 * chunk, 16);
    }
  } else {
    for (int i = threadIdx.x; i < kTileRows * (kTileBytes / 16); i += kThreads) {
      const int r = i / (kTileBytes / 16), chunk = i % (kTileBytes / 16);
      if (r >= rows_here) continue;
      const uint8_t *row = w + (size_t)r * row_bytes;
      const size_t offset = (size_t)kt * kTileBytes + 16 * chunk;
      cp_async16(s.a[buffer][r] + 16 * chunk, offset < row_bytes ? row + offset : row, offset < row_bytes ? 16 : 0);
    }
  }
}

// a[i] with i < 3 without indexing the kernel parameter at run time (which copies it to local memory).
template <typename V> __device__ __forceinline__ V pick(const V (&a)[MATMUL_MAX_PRODUCTS], int i) {
  return i == 0 ? a[0] : i == 1 ? a[1] : a[2];
}

template <typename T, int Tokens>
__global__ void __launch_bounds__(kThreads, 2) matmul_mma_kernel(const MmaParams p) {
  extern __shared__ __align__(128) uint8_t smem_bytes[];
  TileSmem<T, Tokens> &s = *reinterpret_cast<TileSmem<T, Tokens> *>(smem_bytes);
  const int lane = threadIdx.x % LLM_CUDA_WARP, warp = threadIdx.x / LLM_CUDA_WARP;
  const int group = lane / 4, in_group = lane % 4; // the MMA fragments' row / column split of the lanes
  constexpr int kWarpTokens = Tokens / 2, kN = kWarpTokens / 8; // a warp's tokens, in MMA columns of 8
  static_assert(kN % 2 == 0, "B fragments load two MMA columns at a time");
  const int warp_row = (warp % 4) * 32, warp_token = (warp / 4) * kWarpTokens;

  int product = 0;
  while (product + 1 < p.n_products && (int)blockIdx.y >= pick(p.first_tile, product + 1)) product++;
  const int64_t row0 = (int64_t)((int)blockIdx.y - pick(p.first_tile, product)) * kTileRows;
  const int64_t rows = pick(p.rows, product);
  const int rows_here = (int)min((int64_t)kTileRows, rows - row0);
  const int token0 = (int)blockIdx.x * Tokens;
  const uint8_t *w = pick(p.w, product) + row0 * p.row_bytes;
  // This block's k-tiles: range blockIdx.z of gridDim.z near-equal contiguous ones.
  const int kt_begin = (int)((int64_t)p.n_k_tiles * blockIdx.z / gridDim.z);
  const int kt_end = (int)((int64_t)p.n_k_tiles * (blockIdx.z + 1) / gridDim.z);

  // acc[m][n][c]: rows warp_row + 16m + group (+ 8 for c >= 2), tokens warp_token + 8n + 2 in_group + c % 2.
  float acc[2][kN][4];
#pragma unroll
  for (int m = 0; m < 2; m++)
#pragma unroll
    for (int n = 0; n < kN; n++)
#pragma unroll
      for (int c = 0; c < 4; c++) acc[m][n][c] = 0.0f;

  constexpr bool kUnpacks = T::kRawBytes > 0;
  stage_rows<T>(s, 0, w, p.row_bytes, rows_here, kt_begin);
  T::stage(s.b[0], s.token_scales[0], p.x, p.x_stride, token0, p.n_tokens, kt_begin, p.cols);
  cp_async_commit();
  for (int kt = kt_begin; kt < kt_end; kt++) {
    const int buffer = (kt - kt_begin) & 1, a_buffer = kUnpacks ? 0 : buffer;
    cp_async_wait<0>();
    __syncthreads(); // k-tile kt has landed for every thread
    if constexpr (kUnpacks) {
      for (int i = threadIdx.x; i < kTileRows * T::kRowUnits; i += kThreads) {
        const int r = i / T::kRowUnits, unit = i % T::kRowUnits;
        if (r >= rows_here) continue;
        const uint8_t *start = w + (size_t)r * p.row_bytes + (size_t)kt * T::kRawBytes;
        const uint8_t *raw = s.raw[r] + (reinterpret_cast<uintptr_t>(start) & 15);
        T::unpack_row_unit(raw, unit, (int64_t)kt * T::kValues, p.cols, s.a[0][r], s.row_scales[r]);
      }
      __syncthreads(); // the raw tile is free again
    }
    if (kt + 1 < kt_end) {
      stage_rows<T>(s, a_buffer ^ (kUnpacks ? 0 : 1), w, p.row_bytes, rows_here, kt + 1);
      T::stage(s.b[buffer ^ 1], s.token_scales[buffer ^ 1], p.x, p.x_stride, token0, p.n_tokens, kt + 1, p.cols);
    }
    cp_async_commit();
    const typename T::TokenScales *token_scales = s.token_scales[buffer];

    int isum[2][kN][4]; // kPerSuperBlock: the k-tile's scaled integer sums
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
      for (int n = 0; n < kN; n++)
#pragma unroll
        for (int c = 0; c < 4; c++) isum[m][n][c] = 0;

    // Fully unrolled the k-steps' fragment loads run ahead of their products; the integer formats, whose
    // epilogues hold more registers, would spill.
#pragma unroll(T::kAccumulation == Accumulation::kFloat ? kSteps : 2)
    for (int step = 0; step < kSteps; step++) {
      uint32_t a[2][4], b[T::kPlanes][kN][2];
#pragma unroll
      for (int m = 0; m < 2; m++)
        ldmatrix_x4(a[m], s.a[a_buffer][warp_row + 16 * m + (lane & 15)] + 32 * step + 16 * (lane >> 4));
#pragma unroll
      for (int plane = 0; plane < T::kPlanes; plane++) {
#pragma unroll
        for (int n = 0; n < kN; n += 2) {
          uint32_t r[4];
          ldmatrix_x4(r, s.b[buffer][plane][warp_token + 8 * n + (lane & 7) + 8 * (lane >> 4)] + 32 * step + 16 * ((lane >> 3) & 1));
          b[plane][n][0] = r[0], b[plane][n][1] = r[1], b[plane][n + 1][0] = r[2], b[plane][n + 1][1] = r[3];
        }
      }
#pragma unroll
      for (int m = 0; m < 2; m++) {
#pragma unroll
        for (int n = 0; n < kN; n++) {
          if constexpr (T::kAccumulation == Accumulation::kFloat) {
#pragma unroll
            for (int plane = 0; plane < T::kPlanes; plane++)
              mma_half_k16<typename std::conditional<T::kSplit, __nv_bfloat16, __half>::type>(acc[m][n], a[m], b[plane][n][0], b[plane][n][1]);
          } else if constexpr (T::kAccumulation == Accumulation::kPerBlock) {
            int c[4];
            mma_s8_k32(c, a[m], b[0][n][0], b[0][n][1], kExactFloatBias);
#pragma unroll
            for (int e = 0; e < 4; e++) {
              const int r = warp_row + 16 * m + group + 8 * (e / 2), t = warp_token + 8 * n + 2 * in_group + e % 2;
              const float sum = __int_as_float(c[e]) - kExactFloatBiasValue;
              acc[m][n][e] = fmaf(sum, s.row_scales[r].d[step] * token_scales[t].d[step], acc[m][n][e]);
              if constexpr (T::kMins) // + m d_x (sum of the block's activations), quant_b32.h's second term
                acc[m][n][e] = fmaf((float)token_scales[t].sum[step], s.row_scales[r].m[step] * token_scales[t].d[step], acc[m][n][e]);
            }
          } else if constexpr (T::kScaleValues == 32) {
            int c[4];
            mma_s8_k32(c, a[m], b[0][n][0], b[0][n][1]);
#pragma unroll
            for (int e = 0; e < 4; e++) isum[m][n][e] += T::step_scale(s.row_scales[warp_row + 16 * m + group + 8 * (e / 2)], step, 0) * c[e];
          } else { // one scale per 16 values: the k-step's two halves apart
            int c0[4], c1[4];
            mma_s8_k16(c0, a[m][0], a[m][1], b[0][n][0]);
            mma_s8_k16(c1, a[m][2], a[m][3], b[0][n][1]);
#pragma unroll
            for (int e = 0; e < 4; e++) {
              const auto &rs = s.row_scales[warp_row + 16 * m + group + 8 * (e / 2)];
              isum[m][n][e] += T::step_scale(rs, step, 0) * c0[e] + T::step_scale(rs, step, 1) * c1[e];
            }
          }
        }
      }
    }

    if constexpr (T::kAccumulation == Accumulation::kPerSuperBlock) {
#pragma unroll
      for (int m = 0; m < 2; m++)
#pragma unroll
        for (int n = 0; n < kN; n++)
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const auto &rs = s.row_scales[warp_row + 16 * m + group + 8 * (e / 2)];
            const auto &ts = token_scales[warp_token + 8 * n + 2 * in_group + e % 2];
            if constexpr (T::kMins) {
              // d_x (d sum_s sc_s isum_s - dmin sum_s m_s (bsum_2s + bsum_2s+1)), as quant_k4.h (q2_K: one min
              // per bsum, quant_k16.h); the min sums by dp2a, two int16 bsums times two byte mins per instruction.
              const int *mins = reinterpret_cast<const int *>(rs.min);
              const int *bsums = reinterpret_cast<const int *>(ts.bsums);
              int sum_mins = 0;
#pragma unroll
              for (int j = 0; j < 4; j++) sum_mins = __dp2a_hi(bsums[2 * j + 1], mins[j], __dp2a_lo(bsums[2 * j], mins[j], sum_mins));
              acc[m][n][e] += ts.d * (rs.d * (float)isum[m][n][e] - rs.dmin * (float)sum_mins);
            } else { // d d_x sum_g sc_g isum_g, as quant_k16.h and quant_iq4_xs.c
              acc[m][n][e] += rs.d * ts.d * (float)isum[m][n][e];
            }
          }
    }
    __syncthreads(); // the A tile and row scales are rewritten next
  }

  float *out = pick(p.out, product);
  float *partials = gridDim.z > 1 ? p.partials + (int64_t)blockIdx.z * p.n_tokens * p.total_rows + pick(p.first_row, product) : nullptr;
#pragma unroll
  for (int m = 0; m < 2; m++)
#pragma unroll
    for (int n = 0; n < kN; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = warp_row + 16 * m + group + 8 * (e / 2), t = token0 + warp_token + 8 * n + 2 * in_group + e % 2;
        if (r >= rows_here || t >= p.n_tokens) continue;
        if (partials) {
          partials[(int64_t)t * p.total_rows + row0 + r] = acc[m][n][e];
          continue;
        }
        float *o = out + (int64_t)t * rows + row0 + r;
        *o = p.add ? *o + acc[m][n][e] : acc[m][n][e];
      }
}

// out (of each product) = the sum of the split ranges' partial sums, range 0 first (out + that sum with add): a
// thread per row of all products (x) and token (y).
constexpr int kSumThreads = 256;
__global__ void split_k_sum_kernel(const MmaParams p, int split) {
  const int64_t plane = (int64_t)p.n_tokens * p.total_rows;
  for (int t = (int)blockIdx.y; t < p.n_tokens; t += (int)gridDim.y) {
    for (int64_t row = (int64_t)blockIdx.x * kSumThreads + threadIdx.x; row < p.total_rows; row += (int64_t)gridDim.x * kSumThreads) {
      int product = 0;
      while (product + 1 < p.n_products && row >= pick(p.first_row, product + 1)) product++;
      const float *partial = p.partials + (int64_t)t * p.total_rows + row;
      float sum = partial[0];
      for (int z = 1; z < split; z++) sum += partial[z * plane];
      float *o = pick(p.out, product) + (int64_t)t * pick(p.rows, product) + (row - pick(p.first_row, product));
      *o = p.add ? *o + sum : sum;
    }
  }
}

// The token tile of a launch of n_tokens.
int tile_tokens(int n_tokens) { return n_tokens <= kFewTileTokens ? kFewTileTokens : kTileTokens; }

template <typename T, int Tokens> cudaError_t launch_tokens(const MmaParams &p, int row_tiles, int split, cudaStream_t stream) {
  const size_t smem = sizeof(TileSmem<T, Tokens>);
  // Blocks take more than the default 48 KB of shared memory (set per launch: the setting is per device).
  const cudaError_t raised = cudaFuncSetAttribute(matmul_mma_kernel<T, Tokens>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (raised != cudaSuccess) return raised;
  const dim3 grid((unsigned)((p.n_tokens + Tokens - 1) / Tokens), (unsigned)row_tiles, (unsigned)split);
  matmul_mma_kernel<T, Tokens><<<grid, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

template <typename T> cudaError_t launch_tile(const MmaParams &p, int row_tiles, int split, cudaStream_t stream) {
  const cudaError_t launched = tile_tokens(p.n_tokens) == kFewTileTokens ? launch_tokens<T, kFewTileTokens>(p, row_tiles, split, stream)
                                                                        : launch_tokens<T, kTileTokens>(p, row_tiles, split, stream);
  if (launched != cudaSuccess || split == 1) return launched;
  const dim3 sum_grid((unsigned)std::min<int64_t>((p.total_rows + kSumThreads - 1) / kSumThreads, 65535), (unsigned)std::min(p.n_tokens, 65535));
  split_k_sum_kernel<<<sum_grid, kSumThreads, 0, stream>>>(p, split);
  return cudaGetLastError();
}

// Split-K fills the grid up to kBlocksPerSm blocks per SM (the kernel's occupancy, __launch_bounds__): one full
// wave of blocks. A range takes at least kMinSplitKTiles k-tiles, so that its block's pipeline (the next k-tile
// loading while one is multiplied) still overlaps.
constexpr int kBlocksPerSm = 2;
constexpr int kMinSplitKTiles = 2;

// The SM count of the current device, read once per device (1 where it cannot be read: no split).
int sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> counts[kMaxDevices]; // 0: not read yet
  int device = 0, count = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0) {
    cudaGetLastError();
    return 1;
  }
  if (device < kMaxDevices && (count = counts[device].load(std::memory_order_relaxed)) > 0) return count;
  if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || count < 1) {
    cudaGetLastError();
    return 1;
  }
  if (device < kMaxDevices) counts[device].store(count, std::memory_order_relaxed);
  return count;
}

// A launch's shape: where each product starts among the row tiles and among the rows of all products, their
// totals, and the k-tiles.
struct LaunchShape {
  int first_tile[MATMUL_MAX_PRODUCTS] = {};
  int64_t first_row[MATMUL_MAX_PRODUCTS] = {};
  int row_tiles = 0;
  int64_t total_rows = 0;
  int n_k_tiles = 0;
};
LaunchShape shape_of(const cuda_matrix *const weights[], int n_products) {
  LaunchShape shape;
  for (int i = 0; i < n_products; i++) {
    shape.first_tile[i] = shape.row_tiles;
    shape.first_row[i] = shape.total_rows;
    shape.row_tiles += (int)((weights[i]->rows + kTileRows - 1) / kTileRows);
    shape.total_rows += weights[i]->rows;
  }
  static_assert(FloatTile<__half>::kValues == FloatTile<__nv_bfloat16>::kValues && BlockTile<FormatQ8_0>::kValues == K32Tile<FormatQ4_K>::kValues &&
                    K16Tile<FormatQ6_K>::kValues == K32Tile<FormatQ4_K>::kValues,
                "one k-tile width for f16 and bf16, one for the quantized types");
  const bool halves = weights[0]->type == LLM_F16 || weights[0]->type == LLM_BF16;
  const int values = halves ? FloatTile<__half>::kValues : K32Tile<FormatQ4_K>::kValues;
  shape.n_k_tiles = (int)((weights[0]->cols + values - 1) / values);
  return shape;
}

// The ranges a launch of n_tokens splits into with room enough for its partials.
int split_wanted(const LaunchShape &shape, int n_tokens) {
  const int64_t blocks = (int64_t)((n_tokens + tile_tokens(n_tokens) - 1) / tile_tokens(n_tokens)) * shape.row_tiles;
  const int64_t fill = kBlocksPerSm * (int64_t)sm_count() / std::max<int64_t>(blocks, 1);
  return (int)std::max<int64_t>(1, std::min<int64_t>(fill, shape.n_k_tiles / kMinSplitKTiles));
}

size_t partial_bytes(const LaunchShape &shape, int n_tokens, int split) {
  return split > 1 ? (size_t)split * (size_t)n_tokens * (size_t)shape.total_rows * sizeof(float) : 0;
}

// split_wanted, as far as the workspace's partials hold it.
int split_with(const LaunchShape &shape, int n_tokens, const matmul_workspace *workspace) {
  const size_t per_range = (size_t)n_tokens * (size_t)shape.total_rows * sizeof(float);
  if (!workspace || !workspace->partials || per_range == 0) return 1;
  return (int)std::min<size_t>(split_wanted(shape, n_tokens), std::max<size_t>(1, workspace->partial_bytes / per_range));
}

} // namespace

int matmul_mma_split(const cuda_matrix *const weights[], int n_products, int n_tokens, const matmul_workspace *workspace) {
  if (n_products < 1 || n_products > MATMUL_MAX_PRODUCTS || n_tokens < 1) return 1;
  return split_with(shape_of(weights, n_products), n_tokens, workspace);
}

// Within one count of token tiles the split is the same, so the most bytes are at its most tokens: counted for
// whole token tiles (kFewTileTokens, then each multiple of kTileTokens), so that a batch growing by a token at a
// time does not grow the workspace each time.
size_t matmul_mma_partial_bytes(const cuda_matrix *const weights[], int n_products, int max_tokens) {
  if (n_products < 1 || n_products > MATMUL_MAX_PRODUCTS || !matmul_mma_supports(weights[0]->type, weights[0]->row_bytes)) return 0;
  const LaunchShape shape = shape_of(weights, n_products);
  size_t most = partial_bytes(shape, kFewTileTokens, split_wanted(shape, kFewTileTokens));
  for (int n_tokens = kTileTokens; max_tokens > kFewTileTokens && n_tokens - kTileTokens < max_tokens; n_tokens += kTileTokens)
    most = std::max(most, partial_bytes(shape, n_tokens, split_wanted(shape, n_tokens)));
  return most;
}

bool matmul_mma_supports(int type, size_t row_bytes) {
  switch (type) {
  case LLM_F16:
  case LLM_BF16: return row_bytes % 16 == 0;
  default: return llm_type_is_quantized(type);
  }
}

cudaError_t launch_matmul_mma(const cuda_matrix *const weights[], float *const outs[], int n_products, const void *x,
                              size_t x_stride, int n_tokens, bool add, cudaStream_t stream,
                              const matmul_workspace *workspace, int split) {
  if (n_products < 1 || n_products > MATMUL_MAX_PRODUCTS || n_tokens < 1 || split < 0) return cudaErrorInvalidValue;
  const cuda_matrix &first = *weights[0];
  if (!matmul_mma_supports(first.type, first.row_bytes)) return cudaErrorInvalidValue;
  const LaunchShape shape = shape_of(weights, n_products);
  MmaParams p = {};
  for (int i = 0; i < n_products; i++) {
    if (weights[i]->type != first.type || weights[i]->cols != first.cols) return cudaErrorInvalidValue;
    p.w[i] = weights[i]->data;
    p.out[i] = outs[i];
    p.rows[i] = weights[i]->rows;
    p.first_tile[i] = shape.first_tile[i];
    p.first_row[i] = shape.first_row[i];
  }
  if (shape.row_tiles > 65535 || (n_tokens + kTileTokens - 1) / kTileTokens > 0x7fffffff / kTileTokens) return cudaErrorInvalidConfiguration;
  if (split == 0) {
    split = split_with(shape, n_tokens, workspace);
  } else if (split > std::max(shape.n_k_tiles, 1) || split > 65535 ||
             (split > 1 && (!workspace || !workspace->partials || partial_bytes(shape, n_tokens, split) > workspace->partial_bytes))) {
    return cudaErrorInvalidValue;
  }
  p.partials = split > 1 ? workspace->partials : nullptr;
  p.total_rows = shape.total_rows;
  p.n_k_tiles = shape.n_k_tiles;
  p.n_products = n_products;
  p.cols = first.cols;
  p.row_bytes = first.row_bytes;
  p.x = x;
  p.x_stride = x_stride;
  p.n_tokens = n_tokens;
  p.add = add;
  switch (first.type) {
  case LLM_Q8_0: return launch_tile<BlockTile<FormatQ8_0>>(p, shape.row_tiles, split, stream);
  case LLM_Q4_0: return launch_tile<BlockTile<FormatQ4_0>>(p, shape.row_tiles, split, stream);
  case LLM_Q4_1: return launch_tile<BlockTile<FormatQ4_1>>(p, shape.row_tiles, split, stream);
  case LLM_Q5_0: return launch_tile<BlockTile<FormatQ5_0>>(p, shape.row_tiles, split, stream);
  case LLM_Q5_1: return launch_tile<BlockTile<FormatQ5_1>>(p, shape.row_tiles, split, stream);
  case LLM_IQ4_NL: return launch_tile<BlockTile<FormatIQ4_NL>>(p, shape.row_tiles, split, stream);
  case LLM_Q2_K: return launch_tile<K16Tile<FormatQ2_K>>(p, shape.row_tiles, split, stream);
  case LLM_Q3_K: return launch_tile<K16Tile<FormatQ3_K>>(p, shape.row_tiles, split, stream);
  case LLM_Q4_K: return launch_tile<K32Tile<FormatQ4_K>>(p, shape.row_tiles, split, stream);
  case LLM_Q5_K: return launch_tile<K32Tile<FormatQ5_K>>(p, shape.row_tiles, split, stream);
  case LLM_Q6_K: return launch_tile<K16Tile<FormatQ6_K>>(p, shape.row_tiles, split, stream);
  case LLM_IQ4_XS: return launch_tile<K32Tile<FormatIQ4_XS>>(p, shape.row_tiles, split, stream);
  case LLM_F16: return launch_tile<FloatTile<__half>>(p, shape.row_tiles, split, stream);
  case LLM_BF16: return launch_tile<FloatTile<__nv_bfloat16>>(p, shape.row_tiles, split, stream);
  default: return cudaErrorInvalidValue;
  }
}
