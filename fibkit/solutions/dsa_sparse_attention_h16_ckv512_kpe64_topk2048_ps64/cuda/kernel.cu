// DSA sparse MLA attention in CUDA (mma.sync, cp.async, mbarriers: sm_80 and newer; on sm_90
// and newer the merge launches early, programmatic dependent launch). The Triton solution beside
// this folder is its twin for the CPU tests.
//
// Shapes: q_nope [T, 16, 512], q_pe [T, 16, 64] bf16; ckv_cache [P, 64, 512], kpe_cache
// [P, 64, 64] bf16 (a slot is a row of the flattened [P * 64, .] caches); sparse_indices
// [T, 2048] int32 (-1 = padding, anywhere in the row); output [T, 16, 512] bf16; lse [T, 16]
// fp32 in base 2.
//
// A token's work is 2048 gathered rows of 1152 bytes (2.36 MB) and little arithmetic. One SM
// gathers random rows at only ~20 GB/s (measured on an H200, by cp.async or by one bulk copy
// per row alike), so every token is spread over enough blocks to use every SM: kSplits blocks
// per token, each taking 2048 / kSplits slots in tiles of 32, then a second kernel merges.
//  * a block's four warps gather each tile's rows into shared memory in 16-byte pieces
//    (cp.async, the pieces of a padding slot zero-filled), up to four tiles ahead; each
//    thread's pieces signal the tile's mbarrier when they land;
//  * the warps split the 576 dimensions of q.k four ways (each keeps its q slice in registers),
//    sum their partial scores through shared memory, and then each, holding the same scores,
//    keeps the online softmax (base 2) and 128 of the 512 output columns; a tile of padding
//    only is skipped. The block writes its partial (acc, and per head the max and the sum)
//    to a workspace allocated for the call;
//  * the merge, a block per (token, head, 128 columns), weighs the kSplits partials:
//      m* = max_i m_i,  out = sum_i 2^(m_i - m*) acc_i / sum_i 2^(m_i - m*) l_i,
//      lse = m* + log2(sum_i 2^(m_i - m*) l_i).
// No block waits on another (the merge waits for the first kernel through the launch order
// only), the workspace is the call's own (concurrent calls share nothing), and every result is
// the same bits on every run.
#include <cuda_bf16.h>
#include <cstdint>
#include <cfloat>

namespace dsa {

constexpr int kHeads = 16, kDc = 512, kDp = 64, kTopk = 2048, kTile = 32;
constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kDimsPerWarp = (kDc + kDp) / kWarps;  // 144: 9 k-steps of 16
constexpr int kColsPerWarp = kDc / kWarps;          // 128
constexpr int kPieces = (kDc + kDp) * 2 / 16;       // 16-byte pieces of a slot's two rows
constexpr int kMaxSplits = 64;
// Shared-memory rows padded by 16 bytes: eight rows read at one column by ldmatrix fall in
// eight different bank groups.
constexpr int kCkvStride = kDc + 8, kKpeStride = kDp + 8;

struct Stage {
  __nv_bfloat16 ckv[kTile][kCkvStride];
  __nv_bfloat16 kpe[kTile][kKpeStride];
};

template <int kStages, int kSlots>
struct Shared {
  Stage stage[kStages];
  float4 partial[2][kWarps][4][32];  // the warps' partial scores, double-buffered
  int32_t slot[kSlots];              // the block's slot indices
  uint64_t full[kStages];
};

// ---------------------------------------------------------------- PTX wrappers

__device__ __forceinline__ uint32_t smem(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define DSA_MBAR_WAIT "mbarrier.try_wait.parity.shared::cta.b64"  // may suspend the thread
#else
#define DSA_MBAR_WAIT "mbarrier.test_wait.parity.shared::cta.b64"
#endif
  asm volatile(
      "{\n .reg .pred done;\n WAIT:\n " DSA_MBAR_WAIT " done, [%0], %1;\n"
      " @!done bra WAIT;\n}" ::"r"(smem(bar)),
      "r"(parity)
      : "memory");
#undef DSA_MBAR_WAIT
}
// 16 bytes global -> shared, or 16 zero bytes (fill = false: nothing is read).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool fill) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem(dst)), "l"(src), "r"(fill ? 16 : 0)
               : "memory");
}
// The mbarrier gets this thread's arrival once all its cp.async so far have landed.
__device__ __forceinline__ void cp_async_arrive(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem(bar)) : "memory");
}
__device__ __forceinline__ void block_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kThreads) : "memory"); }
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem(p)));
}
// d += a (16 x 16, row) * b (16 x 8, col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// Programmatic dependent launch (sm_90+; before it, plain stream order): the merge may start
// while the partial kernel runs, and waits here until that kernel has finished and its writes
// are visible.
__device__ __forceinline__ void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void wait_for_primary() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// ---------------------------------------------------------------- the partial kernel

template <int kSplits>
struct Config {
  static constexpr int kSlots = kTopk / kSplits, kTiles = kSlots / kTile;
  static constexpr int kStages = kTiles < 4 ? kTiles : 4;
  static_assert(kSlots % kTile == 0, "splits");
  using Smem = Shared<kStages, kSlots>;
};

// This thread's share of tile `tile`'s pieces, into its stage; then its arrival on the stage's
// mbarrier (every thread arrives once per tile).
template <int kStages, int kSlots>
__device__ __forceinline__ void gather(Shared<kStages, kSlots>& s, int tile, const __nv_bfloat16* ckv,
                                       const __nv_bfloat16* kpe, int64_t num_rows) {
  Stage& st = s.stage[tile % kStages];
  for (int k = threadIdx.x; k < kTile * kPieces; k += kThreads) {
    const int row = k / kPieces, piece = k % kPieces, slot = s.slot[tile * kTile + row];
    // An out-of-range index (the Python API rejects them) reads as padding, never out of bounds.
    const bool valid = slot >= 0 && slot < num_rows;
    const int64_t at = valid ? slot : 0;
    if (piece < kDc / 8)
      cp_async_16(&st.ckv[row][piece * 8], ckv + at * kDc + piece * 8, valid);
    else
      cp_async_16(&st.kpe[row][(piece - kDc / 8) * 8], kpe + at * kDp + (piece - kDc / 8) * 8, valid);
  }
  cp_async_arrive(&s.full[tile % kStages]);
}

// Grid (kSplits, T): block (split, t) writes the partial of token t's slots
// [split, split + 1) * 2048 / kSplits: part_acc [T * kSplits, 16, 512], part_ml [T * kSplits, 2, 16].
template <int kSplits>
__global__ void __launch_bounds__(kThreads)
    partial_kernel(const __nv_bfloat16* __restrict__ q_nope, const __nv_bfloat16* __restrict__ q_pe,
                   const __nv_bfloat16* __restrict__ ckv, const __nv_bfloat16* __restrict__ kpe,
                   const int32_t* __restrict__ indices, int64_t num_rows, float qk_scale,
                   float* __restrict__ part_acc, float* __restrict__ part_ml) {
  using C = Config<kSplits>;
  constexpr int kSlots = C::kSlots, kTiles = C::kTiles, kStages = C::kStages;
  extern __shared__ __align__(128) uint8_t raw[];
  typename C::Smem& s = *reinterpret_cast<typename C::Smem*>(raw);
  const int split = blockIdx.x, token = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  launch_dependents();  // the merge's blocks may be placed now; they wait for this grid to end

  for (int i = threadIdx.x; i < kSlots; i += kThreads)
    s.slot[i] = indices[static_cast<int64_t>(token) * kTopk + split * kSlots + i];
  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) mbar_init(&s.full[i], kThreads);
  }
  __syncthreads();
  for (int i = 0; i < kStages; ++i) gather(s, i, ckv, kpe, num_rows);

  const int g = lane / 4, c = lane % 4;
  // This warp's q slice as m16n8k16 A fragments: heads are the rows, dims [144 w, 144 w + 144).
  uint32_t qa[kDimsPerWarp / 16][4];
#pragma unroll
  for (int ks = 0; ks < kDimsPerWarp / 16; ++ks) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int head = g + 8 * (e & 1), dim = warp * kDimsPerWarp + ks * 16 + 8 * (e >> 1) + 2 * c;
      const int64_t row = static_cast<int64_t>(token) * kHeads + head;
      const __nv_bfloat16* src = dim < kDc ? q_nope + row * kDc + dim : q_pe + row * kDp + dim - kDc;
      qa[ks][e] = *reinterpret_cast<const uint32_t*>(src);
    }
  }
  float acc[kColsPerWarp / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};  // heads g and g + 8
  // ldmatrix row addresses: lane l feeds row l % 8 of matrix l / 8.
  const int mat = lane / 8, mrow = lane % 8;
#pragma unroll 1
  for (int i = 0; i < kTiles; ++i) {
    const int buffer = i & 1;
    mbar_wait(&s.full[i % kStages], (i / kStages) & 1);
    const int slot = s.slot[i * kTile + lane];
    const uint32_t mask = __ballot_sync(0xffffffffu, slot >= 0 && slot < num_rows);  // same in every warp
    const Stage& tile = s.stage[i % kStages];
    if (mask) {
      // Partial scores over this warp's dims: 4 n-tiles of 8 slots.
      float part[4][4] = {};
#pragma unroll
      for (int ks = 0; ks < kDimsPerWarp / 16; ++ks) {
        const int dim = warp * kDimsPerWarp + ks * 16 + 8 * (mat & 1);
#pragma unroll
        for (int jp = 0; jp < 2; ++jp) {  // n-tiles 2 jp and 2 jp + 1
          const int row = 16 * jp + 8 * (mat >> 1) + mrow;
          const __nv_bfloat16* p = dim < kDc ? &tile.ckv[row][dim] : &tile.kpe[row][dim - kDc];
          uint32_t b[4];
          ldmatrix_x4(b, p);
          mma(part[2 * jp], qa[ks], b[0], b[1]);
          mma(part[2 * jp + 1], qa[ks], b[2], b[3]);
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j)
        s.partial[buffer][warp][j][lane] = make_float4(part[j][0], part[j][1], part[j][2], part[j][3]);
    }
    block_sync();  // the partials are written; every warp is done with tile i - 1's stage
    if (i >= 1 && i - 1 + kStages < kTiles) gather(s, i - 1 + kStages, ckv, kpe, num_rows);
    if (!mask) continue;  // a tile of padding only
    // Every warp sums the four partials in the same order: the same scores in every warp.
    float sc[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float4 v = s.partial[buffer][0][j][lane];
      sc[j][0] = v.x, sc[j][1] = v.y, sc[j][2] = v.z, sc[j][3] = v.w;
#pragma unroll
      for (int w = 1; w < kWarps; ++w) {
        v = s.partial[buffer][w][j][lane];
        sc[j][0] += v.x, sc[j][1] += v.y, sc[j][2] += v.z, sc[j][3] += v.w;
      }
    }
    // Online softmax in base 2 over the tile's valid slots (at least one: mask != 0).
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int slot_in_tile = 8 * j + 2 * c + (e & 1);
        sc[j][e] = (mask >> slot_in_tile) & 1 ? sc[j][e] * qk_scale : -INFINITY;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], sc[j][e]);
      }
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
      const float m_new = fmaxf(row_max[h], tile_max[h]);  // finite: the tile has a valid slot
      alpha[h] = exp2f(row_max[h] - m_new);                 // 0 while row_max is -inf
      row_max[h] = m_new;
      row_sum[h] *= alpha[h];
    }
    uint32_t pa[2][4];  // P as A fragments: k-step kk = slots [16 kk, 16 kk + 16)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[e] = exp2f(sc[j][e] - row_max[e >> 1]);
        row_sum[e >> 1] += p[e];
      }
      pa[j / 2][2 * (j & 1)] = pack_bf16(p[0], p[1]);
      pa[j / 2][2 * (j & 1) + 1] = pack_bf16(p[2], p[3]);
    }
#pragma unroll
    for (int nt = 0; nt < kColsPerWarp / 8; ++nt) {
      acc[nt][0] *= alpha[0], acc[nt][1] *= alpha[0];
      acc[nt][2] *= alpha[1], acc[nt][3] *= alpha[1];
    }
    // acc += P V over this warp's 128 columns.
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
#pragma unroll
      for (int np = 0; np < kColsPerWarp / 16; ++np) {  // n-tiles 2 np and 2 np + 1
        const int row = 16 * kk + 8 * (mat & 1) + mrow;
        const int col = warp * kColsPerWarp + 16 * np + 8 * (mat >> 1);
        uint32_t b[4];
        ldmatrix_x4_trans(b, &tile.ckv[row][col]);
        mma(acc[2 * np], pa[kk], b[0], b[1]);
        mma(acc[2 * np + 1], pa[kk], b[2], b[3]);
      }
    }
  }
  // This block's partial: acc as it is, and per head the max and the sum.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row_sum[h] += __shfl_xor_sync(0xffffffffu, row_sum[h], 1);
    row_sum[h] += __shfl_xor_sync(0xffffffffu, row_sum[h], 2);
  }
  const int64_t part = static_cast<int64_t>(token) * kSplits + split;
  float* out = part_acc + part * kHeads * kDc;
#pragma unroll
  for (int nt = 0; nt < kColsPerWarp / 8; ++nt) {
    const int col = warp * kColsPerWarp + 8 * nt + 2 * c;
    *reinterpret_cast<float2*>(out + g * kDc + col) = make_float2(acc[nt][0], acc[nt][1]);
    *reinterpret_cast<float2*>(out + (g + 8) * kDc + col) = make_float2(acc[nt][2], acc[nt][3]);
  }
  if (warp == 0 && c == 0) {
    float* ml = part_ml + part * 2 * kHeads;
    ml[g] = row_max[0], ml[g + 8] = row_max[1];
    ml[kHeads + g] = row_sum[0], ml[kHeads + g + 8] = row_sum[1];
  }
}

// ---------------------------------------------------------------- the merge

// A merge warp's weights of the kSplits partials of (token, head): lane i gets w of splits i
// and i + 32 (2^(m - m*), 0 for a split of padding only), every lane m* and the weighted sum.
template <int kSplits>
__device__ __forceinline__ void split_weights(const float* __restrict__ part_ml, int64_t first, int head, int lane,
                                              float (&w)[2], float& top, float& total) {
  static_assert(kSplits <= kMaxSplits, "two splits per lane at most");
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int split = lane + 32 * k;
    if (split < kSplits) {
      m[k] = part_ml[(first + split) * 2 * kHeads + head];
      l[k] = part_ml[(first + split) * 2 * kHeads + kHeads + head];
    }
  }
  top = fmaxf(m[0], m[1]);
#pragma unroll
  for (int d = 16; d; d /= 2) top = fmaxf(top, __shfl_xor_sync(0xffffffffu, top, d));
  total = 0.f;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    w[k] = m[k] == -INFINITY ? 0.f : exp2f(m[k] - top);
    total += w[k] * l[k];
  }
#pragma unroll
  for (int d = 16; d; d /= 2) total += __shfl_xor_sync(0xffffffffu, total, d);
}

// Grid (4, 16, T), kMergeWarps warps each: warp w sums splits [w, w + 1) * kSplits / kMergeWarps
// of columns [128 x, 128 x + 128) of head y of token z, every partial load in flight before the
// first is used, and the warps' sums are added through shared memory. (A merge of one warp per
// block walking its splits in groups of 8 dependent loads took ~0.4 us more at T = 1 and 2 and
// about 0.2 us more on the mean: docs/perf-notes.md, v7-v9.)
template <int kSplits>
struct MergeShape {
  static constexpr int kWarps = kSplits >= 4 ? 4 : kSplits, kPerWarp = kSplits / kWarps;
};

template <int kSplits>
__global__ void __launch_bounds__(32 * MergeShape<kSplits>::kWarps)
    merge_kernel(const float* __restrict__ part_acc, const float* __restrict__ part_ml,
                      __nv_bfloat16* __restrict__ output, float* __restrict__ lse) {
  constexpr int kMergeWarps = MergeShape<kSplits>::kWarps, kPerWarp = MergeShape<kSplits>::kPerWarp;
  __shared__ float4 sums[kMergeWarps][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, head = blockIdx.y, token = blockIdx.z;
  const int col = blockIdx.x * 128 + 4 * lane;
  wait_for_primary();
  const int64_t first = static_cast<int64_t>(token) * kSplits;
  float4 a[kPerWarp];  // this warp's partial columns, all loads issued before any is used
#pragma unroll
  for (int k = 0; k < kPerWarp; ++k)
    a[k] = *reinterpret_cast<const float4*>(part_acc + ((first + warp * kPerWarp + k) * kHeads + head) * kDc + col);
  float w[2], top, total;
  split_weights<kSplits>(part_ml, first, head, lane, w, top, total);
  float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int k = 0; k < kPerWarp; ++k) {
    const int split = warp * kPerWarp + k;
    const float ws = __shfl_sync(0xffffffffu, w[split / 32], split % 32);
    o.x += ws * a[k].x, o.y += ws * a[k].y, o.z += ws * a[k].z, o.w += ws * a[k].w;
  }
  sums[warp][lane] = o;
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int v = 1; v < kMergeWarps; ++v) {  // in warp order: the same bits on every run
    const float4 p = sums[v][lane];
    o.x += p.x, o.y += p.y, o.z += p.z, o.w += p.w;
  }
  const float inv = total > 0.f ? 1.f / total : 0.f;  // no valid slot at all: zeros
  uint2 packed;
  packed.x = pack_bf16(o.x * inv, o.y * inv);
  packed.y = pack_bf16(o.z * inv, o.w * inv);
  *reinterpret_cast<uint2*>(output + (static_cast<int64_t>(token) * kHeads + head) * kDc + col) = packed;
  // No valid slot: the reference's lse is -inf; a finite -FLT_MAX merges the same way (weight
  // 0) and passes the contest, which fails any inf in an output.
  if (col == 0) lse[token * kHeads + head] = total > 0.f ? top + log2f(total) : -FLT_MAX;
}

}  // namespace dsa

#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#ifndef DSA_BLOCKS_PER_SM
#define DSA_BLOCKS_PER_SM 1  // splits: the most (up to 64) that keep T x splits <= this x SMs
#endif

template <int kSplits>
static void launch(const torch::Tensor& q_nope, const torch::Tensor& q_pe, const torch::Tensor& ckv_cache,
                   const torch::Tensor& kpe_cache, const torch::Tensor& sparse_indices, float qk_scale,
                   torch::Tensor& output, torch::Tensor& lse) {
  const int tokens = static_cast<int>(q_nope.size(0));
  const auto f32 = q_nope.options().dtype(torch::kFloat32);
  torch::Tensor part_acc = torch::empty({tokens * kSplits, dsa::kHeads, dsa::kDc}, f32);
  torch::Tensor part_ml = torch::empty({tokens * kSplits, 2, dsa::kHeads}, f32);
  auto bf16 = [](const torch::Tensor& t) { return reinterpret_cast<const __nv_bfloat16*>(t.data_ptr<at::BFloat16>()); };
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  auto partial = dsa::partial_kernel<kSplits>;
  constexpr size_t smem = sizeof(typename dsa::Config<kSplits>::Smem);
  C10_CUDA_CHECK(cudaFuncSetAttribute(partial, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  partial<<<dim3(kSplits, tokens), dsa::kThreads, smem, stream>>>(
      bf16(q_nope), bf16(q_pe), bf16(ckv_cache), bf16(kpe_cache), sparse_indices.data_ptr<int32_t>(),
      ckv_cache.size(0) * ckv_cache.size(1), qk_scale, part_acc.data_ptr<float>(), part_ml.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(dsa::kDc / 128, dsa::kHeads, tokens);
  config.blockDim = dim3(32 * dsa::MergeShape<kSplits>::kWarps);
  config.stream = stream;
  cudaLaunchAttribute early[1];
  early[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  early[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = early;
  config.numAttrs = 1;
  C10_CUDA_CHECK(cudaLaunchKernelEx(&config, dsa::merge_kernel<kSplits>, static_cast<const float*>(part_acc.data_ptr<float>()),
                                    static_cast<const float*>(part_ml.data_ptr<float>()),
                                    reinterpret_cast<__nv_bfloat16*>(output.data_ptr<at::BFloat16>()), lse.data_ptr<float>()));
}

void kernel(torch::Tensor q_nope, torch::Tensor q_pe, torch::Tensor ckv_cache, torch::Tensor kpe_cache,
            torch::Tensor sparse_indices, double sm_scale, torch::Tensor output, torch::Tensor lse) {
  const int64_t tokens = q_nope.size(0);
  if (tokens == 0) return;
  const c10::cuda::CUDAGuard on_inputs_device(q_nope.device());
  const float qk_scale = static_cast<float>(sm_scale * 1.4426950408889634);  // scores in base 2
  int sm_count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, q_nope.device().index()));
  const int64_t blocks = static_cast<int64_t>(DSA_BLOCKS_PER_SM) * sm_count;
  int splits = dsa::kMaxSplits;
  while (splits > 2 && tokens * splits > blocks) splits /= 2;
  switch (splits) {
    case 64: return launch<64>(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, qk_scale, output, lse);
    case 32: return launch<32>(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, qk_scale, output, lse);
    case 16: return launch<16>(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, qk_scale, output, lse);
    case 8: return launch<8>(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, qk_scale, output, lse);
    case 4: return launch<4>(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, qk_scale, output, lse);
    default: return launch<2>(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, qk_scale, output, lse);
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("kernel", &kernel); }
