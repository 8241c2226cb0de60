// GDN prefill in CUDA (mma.sync and ldmatrix, sm_80 and newer: Hopper and Blackwell run it):
// the chunked WY delta rule of the Triton solution beside this folder, in one kernel whose
// serial chain per chunk stays in tensor-core fragments that never leave registers.
//
// Shapes: q, k [T, 4, 128] bf16; v [T, 8, 128] bf16; a, b [T, 8] bf16; A_log, dt_bias [8] fp32;
// cu_seqlens [N + 1] int64; state / new_state [N, 8, 128 (V), 128 (K)] fp32; output [T, 8, 128].
//
// Per chunk of C = 16 tokens, with state S [V, K] at its start, G the cumulative log decay
// from the chunk start, G_l at its last token (see the Triton solution's docstring):
//   Tb = (I + A)^-1 diag(beta), A_ij = beta_i exp(G_i - G_j) k_i.k_j (j < i)
//   M_ij = exp(G_i - G_j) q_i.k_j (j <= i)                          <- the prepare warps
//   u^T = (v^T - (S k^T) diag(exp G)) Tb^T                              <- the walk warps
//   o^T = scale ((S q^T) diag(exp G) + u^T M^T)
//   S  <- exp(G_l) S + (u^T diag(exp(G_l - G))) k
//
// One block per (sequence, head, 32 state rows): 2 walk warps of 16 rows and 2 prepare warps,
// one warp per SM sub-partition (the numbers measured on an H200 for the choices here are in
// docs/perf-notes.md, "v6"; 4 walk warps, 3 prepare warps and chunks of 32 were slower):
//  * each walk warp holds its 16 x 128 slice of S as m16n8 accumulator fragments (64
//    registers). An accumulator tile pair is already the A operand of the next m16n8k16
//    product, so S k^T, S q^T and the update need no shared-memory round trip; products
//    against fp32 values use bf16 hi + lo halves (two bf16 numbers carry ~16 bits of an fp32).
//  * the prepare warps take the chunks in turn, ahead of the walk warps: each copies its
//    chunks' k, q, v into shared memory (cp.async, two of its chunks in flight) and builds
//    their Tb, M (hi + lo) and decay factors (k k^T and q k^T by mma.sync, T by forward
//    substitution in registers). One prepare warp alone could not keep up with the walk.
//    Five stages rotate, each handed over by a pair of named barriers (full / empty).
//  * blocks go out longest sequence first once there are many sequences (a long sequence's
//    blocks started in a later wave would finish last).
// Blocks never wait on one another, and nothing is written outside output and new_state (no
// workspace: concurrent calls share nothing).
#include <cuda_bf16.h>
#include <cstdint>

namespace gdn {

#ifndef GDN_CHUNK
#define GDN_CHUNK 16  // tokens per chunk: 16 or 32 (32 measured 1.6-2.8x slower on an H200)
#endif
constexpr int kK = 128, kV = 128, kHeads = 8, kQkHeads = 4, kC = GDN_CHUNK;
static_assert(kC == 16 || kC == 32, "chunks of 16 or 32 tokens");
// A chunk's tokens as m16n8 tiles: kTT tiles of 8 as the n index, kTK steps of 16 as the k
// index (or, for the prepare warp's C x C matrices, row tiles of 16).
constexpr int kTT = kC / 8, kTK = kC / 16;
#ifndef GDN_WARPS
#define GDN_WARPS 2  // walk warps per block (benchmarks/gdn_prefill_cuda_variants.py builds others)
#endif
constexpr int kWarps = GDN_WARPS, kRows = 16 * kWarps;  // state rows per block
#ifndef GDN_PREP_WARPS
#define GDN_PREP_WARPS 2  // prepare warps, taking chunks in turn
#endif
constexpr int kPrep = GDN_PREP_WARPS;
constexpr int kThreads = 32 * (kWarps + kPrep);  // the walk warps, then the prepare warps
// Each prepare warp has its next chunk's copies in flight while it prepares one, and issues
// the copies of the one after as soon as it has handed a chunk over; the chunk being walked
// and those 2 kPrep chunks each need a stage.
constexpr int kStages = 2 * kPrep + 1;
#ifndef GDN_RANK_FROM_SEQS
#define GDN_RANK_FROM_SEQS 8  // sequences from which blocks go out longest first
#endif
constexpr int kGates = 3 * kC;  // exp(G) [C], exp(G_l - G) [C], exp(G_l), padding
constexpr int kPad = 8;     // bf16 of padding per shared row: conflict-free ldmatrix

struct Stage {
  __nv_bfloat16 k[kC][kK + kPad];
  __nv_bfloat16 q[kC][kK + kPad];
  __nv_bfloat16 v[kC][kRows + kPad];
  __nv_bfloat16 ops[4][kC][kC + kPad];  // Tb hi, Tb lo, M hi, M lo
  float gates[kGates];
  uint32_t raw_gates[2][kC];  // a, b of the chunk's tokens: bf16 pairs of heads (2m, 2m + 1)
};
static_assert(sizeof(Stage) % 16 == 0, "stages are copied in 16-byte pieces");

__device__ __forceinline__ uint32_t as_u32(__nv_bfloat162 x) { return *reinterpret_cast<uint32_t*>(&x); }

// (x0, x1) = hi + lo, each a packed pair of bf16 (x0 in the low half, the lower column).
__device__ __forceinline__ void split(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const float2 hf = __bfloat1622float2(h);
  hi = as_u32(h);
  lo = as_u32(__floats2bfloat162_rn(x0 - hf.x, x1 - hf.y));
}

// d += a b: m16n8k16, bf16 in, fp32 accumulate. a: rows g / g + 8, columns 2t.. / 2t + 8..;
// b: rows (k) 2t.. / 2t + 8.., column g; d: rows g / g + 8, columns 2t, 2t + 1.
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two m16n8 accumulator tiles (columns 0-7 in x0, 8-15 in x1) as the hi and lo A operands
// of k = 16.
__device__ __forceinline__ void to_operand(const float (&x0)[4], const float (&x1)[4], uint32_t (&hi)[4],
                                           uint32_t (&lo)[4]) {
  split(x0[0], x0[1], hi[0], lo[0]);
  split(x0[2], x0[3], hi[1], lo[1]);
  split(x1[0], x1[1], hi[2], lo[2]);
  split(x1[2], x1[3], hi[3], lo[3]);
}

// A chunk's worth of m16n8 tiles [16 rows x C] as A operands, per k-step of 16 tokens.
__device__ __forceinline__ void to_operands(const float (&x)[kTT][4], uint32_t (&hi)[kTK][4], uint32_t (&lo)[kTK][4]) {
#pragma unroll
  for (int kt = 0; kt < kTK; ++kt) to_operand(x[2 * kt], x[2 * kt + 1], hi[kt], lo[kt]);
}

__device__ __forceinline__ unsigned smem_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// The four 8 x 8 bf16 blocks of a 16 x 16 block at p (rows `stride` elements apart), in the
// order (rows 0-7, cols 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols
// 8-15): r is then the A operand of m16n8k16 for that block, and (r[0], r[2]) / (r[1], r[3])
// the B operands of its rows 0-7 / 8-15 taken as the n index. Transposed (`trans`), each
// lane gets columns g at rows 2t, 2t + 1: (r[0], r[1]) / (r[2], r[3]) are then the B
// operands of columns 0-7 / 8-15 taken as the n index, with the rows as k.
template <bool trans>
__device__ __forceinline__ void ldsm(uint32_t (&r)[4], const __nv_bfloat16* p, int stride, int lane) {
  const int m = lane >> 3;
  const unsigned at = smem_address(p + ((m & 1) * 8 + (lane & 7)) * stride + (m >> 1) * 8);
  if (trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(at));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(at));
}

// d += x y^T for a lower-triangular C x C matrix y (Tb or M) in shared memory as bf16 hi and lo
// halves, and x [16 rows x C] as A operands per k-step of 16 (hi and lo): fp32 x fp32 as
// hi hi + lo hi + hi lo. y's 16 x 16 blocks above the diagonal are zero and skipped.
using OpMatrix = __nv_bfloat16[kC][kC + kPad];
__device__ __forceinline__ void times_lower_t(float (&d)[kTT][4], const uint32_t (&x_hi)[kTK][4],
                                              const uint32_t (&x_lo)[kTK][4], const OpMatrix& y_hi,
                                              const OpMatrix& y_lo, int lane) {
#pragma unroll
  for (int mi = 0; mi < kTK; ++mi)  // output tokens 16 mi ..
#pragma unroll
    for (int kt = 0; kt <= mi; ++kt) {  // input tokens 16 kt ..
      uint32_t hi[4], lo[4];
      ldsm<false>(hi, &y_hi[mi * 16][kt * 16], kC + kPad, lane);
      ldsm<false>(lo, &y_lo[mi * 16][kt * 16], kC + kPad, lane);
#pragma unroll
      for (int n2 = 0; n2 < 2; ++n2) {
        float (&acc)[4] = d[2 * mi + n2];
        mma(acc, x_hi[kt], hi[n2], hi[n2 + 2]);
        mma(acc, x_lo[kt], hi[n2], hi[n2 + 2]);
        mma(acc, x_hi[kt], lo[n2], lo[n2 + 2]);
      }
    }
}

__device__ __forceinline__ void copy16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void copy4(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_address(dst)), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void copies_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// All but the most recent group have landed (this thread's copies).
__device__ __forceinline__ void copies_wait_all_but_last() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

// Stage s is handed over through two named barriers, each between the walk warps and the one
// prepare warp filling s: full(s) (the prepare warp arrives when s holds a prepared chunk, the
// walkers wait) and empty(s) (the walkers arrive when done with it, the prepare warp waits
// before refilling it). Barrier 0 is __syncthreads'.
constexpr int kHandover = 32 * (kWarps + 1);  // threads per handover
__device__ __forceinline__ int full_barrier(int s) { return 1 + s; }
__device__ __forceinline__ int empty_barrier(int s) { return 1 + kStages + s; }
static_assert(1 + 2 * kStages <= 16, "16 named barriers");
__device__ __forceinline__ void barrier_wait(int id) { asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(kHandover) : "memory"); }
__device__ __forceinline__ void barrier_arrive(int id) { asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "n"(kHandover) : "memory"); }

// The prepare warp's per-block state: this head's gate constants and a scratch for A.
struct Prep {
  const __nv_bfloat16 *q, *k, *v, *a, *b;
  float rate, dt_bias;
  int hq, h, block_row;
  int64_t bos, eos;
};

// Chunk c's k, q, v rows and gate inputs into stage st (zeros past the sequence's end), all by
// cp.async: a plain load's result would be waited for where the loop carries it.
__device__ __forceinline__ void load_chunk(const Prep& P, int c, Stage& st, int lane) {
  const int64_t tok0 = P.bos + static_cast<int64_t>(c) * kC;
#pragma unroll
  for (int n = 0; n < kC * (kK / 8) / 32; ++n) {  // 16 rows x 16 pieces of 16 bytes
    const int i = lane + 32 * n, r = i / (kK / 8), p = i % (kK / 8);
    const bool valid = tok0 + r < P.eos;
    const int64_t at = ((valid ? tok0 + r : tok0) * kQkHeads + P.hq) * kK + p * 8;
    copy16(&st.k[r][p * 8], P.k + at, valid);
    copy16(&st.q[r][p * 8], P.q + at, valid);
  }
#pragma unroll
  for (int n = 0; n < kC * (kRows / 8) / 32; ++n) {  // 16 rows x kRows / 8 pieces
    const int i = lane + 32 * n, r = i / (kRows / 8), p = i % (kRows / 8);
    const bool valid = tok0 + r < P.eos;
    copy16(&st.v[r][p * 8], P.v + ((valid ? tok0 + r : tok0) * kHeads + P.h) * kV + P.block_row + p * 8, valid);
  }
#pragma unroll
  for (int n = 0; n < 2 * kC / 32; ++n) {  // a, then b; 4 bytes hold this head and its even / odd neighbour
    const int i = lane + 32 * n, r = i % kC;
    const bool valid = tok0 + r < P.eos;
    copy4(&st.raw_gates[i / kC][r], (i < kC ? P.a : P.b) + (valid ? tok0 + r : tok0) * kHeads + (P.h & ~1), valid);
  }
  copies_commit();
}

// Chunk c's operators into stage st, from its k and q (already in st) and raw gates.
__device__ __forceinline__ void prepare_chunk(const Prep& P, int c, Stage& st, float (&A_s)[kC][kC], int lane) {
  const int g = lane / 4, t = lane % 4;
  const bool valid = lane < kC && P.bos + static_cast<int64_t>(c) * kC + lane < P.eos;
  const int shift = (P.h & 1) * 16;
  const float a_raw = __uint_as_float((st.raw_gates[0][lane % kC] >> shift) << 16);
  const float b_raw = __uint_as_float((st.raw_gates[1][lane % kC] >> shift) << 16);
  // Gates, one token per lane: G = inclusive prefix sum of log g over the chunk.
  const float x = a_raw + P.dt_bias;
  const float log_g = valid ? -P.rate * (x > 20.f ? x : log1pf(expf(x))) : 0.f;  // torch's softplus threshold
  const float beta = valid ? 1.f / (1.f + expf(-b_raw)) : 0.f;
  float G = log_g;
#pragma unroll
  for (int d = 1; d < kC; d *= 2) {
    const float up = __shfl_up_sync(0xffffffffu, G, d);
    if (lane >= d) G += up;
  }
  const float G_last = __shfl_sync(0xffffffffu, G, kC - 1);
  // k k^T and q k^T [C x C] on the tensor cores (bf16 products are exact): row tile mt
  // (tokens 16 mt ..), column tile nt (tokens 8 nt ..); tiles above the diagonal are skipped.
  float kk[kTK][kTT][4] = {}, qk[kTK][kTT][4] = {};
#pragma unroll
  for (int ks = 0; ks < kK / 16; ++ks) {
    uint32_t kr[kTK][4], qr[kTK][4];
#pragma unroll
    for (int mt = 0; mt < kTK; ++mt) {
      ldsm<false>(kr[mt], &st.k[mt * 16][ks * 16], kK + kPad, lane);
      ldsm<false>(qr[mt], &st.q[mt * 16][ks * 16], kK + kPad, lane);
    }
#pragma unroll
    for (int mt = 0; mt < kTK; ++mt)
#pragma unroll
      for (int nt = 0; nt < kTT; ++nt) {
        if (nt * 8 > mt * 16 + 15) continue;
        const uint32_t(&b)[4] = kr[nt / 2];
        mma(kk[mt][nt], kr[mt], b[nt % 2], b[nt % 2 + 2]);
        mma(qk[mt][nt], qr[mt], b[nt % 2], b[nt % 2 + 2]);
      }
  }
  // A (strictly lower, to shared memory) and M (lower, hi + lo into the stage); element e of
  // tile (mt, nt) is (i, j) = (16 mt + g + 8 (e / 2), 8 nt + 2t + e % 2).
#pragma unroll
  for (int mt = 0; mt < kTK; ++mt) {
    const float G_i[2] = {__shfl_sync(0xffffffffu, G, mt * 16 + g), __shfl_sync(0xffffffffu, G, mt * 16 + g + 8)};
    const float beta_i[2] = {__shfl_sync(0xffffffffu, beta, mt * 16 + g),
                             __shfl_sync(0xffffffffu, beta, mt * 16 + g + 8)};
#pragma unroll
    for (int nt = 0; nt < kTT; ++nt) {
      float G_j[2];
      G_j[0] = __shfl_sync(0xffffffffu, G, nt * 8 + 2 * t);
      G_j[1] = __shfl_sync(0xffffffffu, G, nt * 8 + 2 * t + 1);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int i = mt * 16 + g + 8 * half, j = nt * 8 + 2 * t;
        float m[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float decay = expf(G_i[half] - G_j[e]);
          A_s[i][j + e] = j + e < i ? beta_i[half] * kk[mt][nt][2 * half + e] * decay : 0.f;
          m[e] = j + e <= i ? qk[mt][nt][2 * half + e] * decay : 0.f;
        }
        uint32_t hi, lo;
        split(m[0], m[1], hi, lo);
        *reinterpret_cast<uint32_t*>(&st.ops[2][i][j]) = hi;
        *reinterpret_cast<uint32_t*>(&st.ops[3][i][j]) = lo;
      }
    }
  }
  __syncwarp();
  // T = (I + A)^-1, column j on lane j by forward substitution in registers; Tb = T diag(beta).
  if (lane < kC) {
    float col[kC];
#pragma unroll
    for (int i = 0; i < kC; ++i) {
      float acc = i == lane ? 1.f : 0.f;
#pragma unroll
      for (int m = 0; m < i; ++m) acc -= A_s[i][m] * col[m];
      col[i] = acc;
    }
#pragma unroll
    for (int i = 0; i < kC; ++i) {
      const float tb = col[i] * beta;
      const __nv_bfloat16 hi = __float2bfloat16_rn(tb);
      st.ops[0][i][lane] = hi;
      st.ops[1][i][lane] = __float2bfloat16_rn(tb - __bfloat162float(hi));
    }
    st.gates[lane] = expf(G);
    st.gates[kC + lane] = expf(G_last - G);
  }
  if (lane == 0) st.gates[2 * kC] = expf(G_last);
  __syncwarp();  // A_s is rewritten by the next chunk
}

// Blocks go out in grid order, sequence by sequence (blockIdx.y); once there are more than fit
// on the GPU at a time, a long sequence's blocks started late would finish last. With
// longest_first, blockIdx.y = r takes the r-th longest sequence (ties by index), so the
// longest start first. Each block ranks the sequences itself: no other kernel, no host sync.
constexpr int kMaxRanked = 256;
__device__ __forceinline__ int sequence_of_rank(const int64_t* __restrict__ cu, int num_seqs, int rank, int tid) {
  __shared__ int64_t length[kMaxRanked];
  __shared__ int found;
  for (int i = tid; i < num_seqs; i += kThreads) length[i] = cu[i + 1] - cu[i];
  __syncthreads();
  for (int i = tid; i < num_seqs; i += kThreads) {
    int above = 0;
    for (int j = 0; j < num_seqs; ++j) above += length[j] > length[i] || (length[j] == length[i] && j < i);
    if (above == rank) found = i;
  }
  __syncthreads();
  return found;
}

__global__ void __launch_bounds__(kThreads) prefill_kernel(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, const float* __restrict__ state,
    const float* __restrict__ A_log, const __nv_bfloat16* __restrict__ a,
    const float* __restrict__ dt_bias, const __nv_bfloat16* __restrict__ b,
    const int64_t* __restrict__ cu, __nv_bfloat16* __restrict__ output,
    float* __restrict__ new_state, float scale, int num_seqs, bool longest_first) {
  extern __shared__ __align__(16) unsigned char smem[];
  Stage* stages = reinterpret_cast<Stage*>(smem);
  __shared__ float A_s[kPrep][kC][kC];  // each prepare warp's scratch
  const int h = blockIdx.x / (kV / kRows), block_row = blockIdx.x % (kV / kRows) * kRows;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int seq = longest_first ? sequence_of_rank(cu, num_seqs, blockIdx.y, tid) : blockIdx.y;
  const int64_t bos = cu[seq], eos = cu[seq + 1];
  const int num_chunks = static_cast<int>((eos - bos + kC - 1) / kC);
  const size_t state_at = (static_cast<size_t>(seq) * kHeads + h) * kV * kK;

  if (warp >= kWarps) {  // ---- prepare warp p: chunks p, p + kPrep, ... ----
    const int p = warp - kWarps;
    const Prep P{q, k, v, a, b, expf(A_log[h]), dt_bias[h], h / (kHeads / kQkHeads), h, block_row, bos, eos};
    for (int c = p; c < p + 2 * kPrep; c += kPrep)  // its first two chunks: stages not used yet
      if (c < num_chunks) load_chunk(P, c, stages[c], lane); else copies_commit();
    for (int c = p; c < num_chunks; c += kPrep) {
      copies_wait_all_but_last();  // chunk c's copies (chunk c + kPrep's may be in flight)
      __syncwarp();
      prepare_chunk(P, c, stages[c % kStages], A_s[p], lane);
      barrier_arrive(full_barrier(c % kStages));
      // Chunk c + 2 kPrep's copies, into the stage of chunk c - 1 once the walkers are done
      // with it (by then they are on chunk c, handed over just now or before).
      const int next = c + 2 * kPrep;
      if (next < num_chunks) {
        if (next >= kStages) barrier_wait(empty_barrier(next % kStages));
        load_chunk(P, next, stages[next % kStages], lane);
      } else {
        copies_commit();
      }
    }
    return;
  }

  // ---- a walk warp: rows row .. row + 15 of the state ----
  const int row = block_row + warp * 16;
  // Tile nt holds columns 8 nt + 2t, +1 of rows row + g and row + g + 8.
  float S[16][4];
#pragma unroll
  for (int nt = 0; nt < 16; ++nt) {
    float2 top = make_float2(0.f, 0.f), bottom = top;
    if (state != nullptr) {
      top = *reinterpret_cast<const float2*>(state + state_at + (row + g) * kK + nt * 8 + 2 * t);
      bottom = *reinterpret_cast<const float2*>(state + state_at + (row + g + 8) * kK + nt * 8 + 2 * t);
    }
    S[nt][0] = top.x; S[nt][1] = top.y; S[nt][2] = bottom.x; S[nt][3] = bottom.y;
  }
  for (int c = 0; c < num_chunks; ++c) {
    barrier_wait(full_barrier(c % kStages));
    const Stage& st = stages[c % kStages];
    // S as A operands (hi and lo halves), k-step ks = columns 16 ks .. 16 ks + 15.
    uint32_t s_hi[8][4], s_lo[8][4];
#pragma unroll
    for (int ks = 0; ks < 8; ++ks) {
      split(S[2 * ks][0], S[2 * ks][1], s_hi[ks][0], s_lo[ks][0]);
      split(S[2 * ks][2], S[2 * ks][3], s_hi[ks][1], s_lo[ks][1]);
      split(S[2 * ks + 1][0], S[2 * ks + 1][1], s_hi[ks][2], s_lo[ks][2]);
      split(S[2 * ks + 1][2], S[2 * ks + 1][3], s_hi[ks][3], s_lo[ks][3]);
    }
    // S k^T and S q^T [16 rows x C tokens]. With C = 16, hi and lo go to separate
    // accumulators (two independent chains of 8 instead of one of 16); with C = 32 there
    // are enough tiles for independent chains, and the registers are short.
    constexpr bool kLoApart = kC == 16;
    float sk[kTT][4] = {}, sk_lo[kTT][4] = {}, sq[kTT][4] = {}, sq_lo[kTT][4] = {};
#pragma unroll
    for (int ks = 0; ks < 8; ++ks) {
#pragma unroll
      for (int mt = 0; mt < kTK; ++mt) {  // tokens 16 mt .. 16 mt + 15
        uint32_t kr[4], qr[4];
        ldsm<false>(kr, &st.k[mt * 16][ks * 16], kK + kPad, lane);
        ldsm<false>(qr, &st.q[mt * 16][ks * 16], kK + kPad, lane);
#pragma unroll
        for (int n2 = 0; n2 < 2; ++n2) {
          const int nt = 2 * mt + n2;
          mma(sk[nt], s_hi[ks], kr[n2], kr[n2 + 2]);
          mma(sq[nt], s_hi[ks], qr[n2], qr[n2 + 2]);
          mma(kLoApart ? sk_lo[nt] : sk[nt], s_lo[ks], kr[n2], kr[n2 + 2]);
          mma(kLoApart ? sq_lo[nt] : sq[nt], s_lo[ks], qr[n2], qr[n2 + 2]);
        }
      }
    }
    // rhs = v^T - (S k^T) diag(exp G); element e of tile nt: row g + 8 (e / 2), token
    // 8 nt + 2t + e % 2. v^T's fragments come transposed out of shared memory: register
    // n2 + 2 half of token tile pair mt holds rows g + 8 half, tokens 16 mt + 8 n2 + 2t, +1.
    float rhs[kTT][4], eG[kTT][2];
#pragma unroll
    for (int mt = 0; mt < kTK; ++mt) {
      uint32_t vt[4];
      ldsm<true>(vt, &st.v[mt * 16][warp * 16], kRows + kPad, lane);
#pragma unroll
      for (int n2 = 0; n2 < 2; ++n2) {
        const int nt = 2 * mt + n2;
        const float2 e2 = *reinterpret_cast<const float2*>(&st.gates[nt * 8 + 2 * t]);
        eG[nt][0] = e2.x, eG[nt][1] = e2.y;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const float2 vv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&vt[n2 + 2 * half]));
          rhs[nt][2 * half] = vv.x - (sk[nt][2 * half] + sk_lo[nt][2 * half]) * eG[nt][0];
          rhs[nt][2 * half + 1] = vv.y - (sk[nt][2 * half + 1] + sk_lo[nt][2 * half + 1]) * eG[nt][1];
        }
      }
    }
    // u^T = rhs Tb^T.
    uint32_t r_hi[kTK][4], r_lo[kTK][4];
    to_operands(rhs, r_hi, r_lo);
    float u[kTT][4] = {};
    times_lower_t(u, r_hi, r_lo, st.ops[0], st.ops[1], lane);
    uint32_t u_hi[kTK][4], u_lo[kTK][4];
    to_operands(u, u_hi, u_lo);
    // o^T = scale ((S q^T) diag(exp G) + u^T M^T), stored for the chunk's real tokens.
    float o[kTT][4];
#pragma unroll
    for (int ni = 0; ni < kTT; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[ni][e] = (sq[ni][e] + sq_lo[ni][e]) * eG[ni][e & 1];
    times_lower_t(o, u_hi, u_lo, st.ops[2], st.ops[3], lane);
    const int64_t tok0 = bos + static_cast<int64_t>(c) * kC;
#pragma unroll
    for (int ni = 0; ni < kTT; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t tok = tok0 + ni * 8 + 2 * t + (e & 1);
        if (tok < eos)
          output[(tok * kHeads + h) * kV + row + g + 8 * (e >> 1)] = __float2bfloat16_rn(o[ni][e] * scale);
      }
    // S <- exp(G_l) S + (u^T diag(exp(G_l - G))) k; k's fragments transposed out of shared
    // memory, two column tiles per ldmatrix.
    const float eLast = st.gates[2 * kC];
    float up[kTT][4];
#pragma unroll
    for (int ni = 0; ni < kTT; ++ni) {
      const float2 tail = *reinterpret_cast<const float2*>(&st.gates[kC + ni * 8 + 2 * t]);
#pragma unroll
      for (int e = 0; e < 4; ++e) up[ni][e] = u[ni][e] * ((e & 1) ? tail.y : tail.x);
    }
    uint32_t p_hi[kTK][4], p_lo[kTK][4];
    to_operands(up, p_hi, p_lo);
#pragma unroll
    for (int pair = 0; pair < 8; ++pair) {
#pragma unroll
      for (int half = 0; half < 2; ++half)
#pragma unroll
        for (int e = 0; e < 4; ++e) S[2 * pair + half][e] *= eLast;
#pragma unroll
      for (int kt = 0; kt < kTK; ++kt) {
        uint32_t kt4[4];
        ldsm<true>(kt4, &st.k[kt * 16][pair * 16], kK + kPad, lane);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          float (&s)[4] = S[2 * pair + half];
          mma(s, p_hi[kt], kt4[2 * half], kt4[2 * half + 1]);
          mma(s, p_lo[kt], kt4[2 * half], kt4[2 * half + 1]);
        }
      }
    }
    // Done with the stage: its prepare warp may refill it (it waits only if a chunk is left
    // for this stage, so every arrival is matched).
    if (c + kStages < num_chunks) barrier_arrive(empty_barrier(c % kStages));
  }
  // An empty sequence's new state is zero, as in the contest's reference.
  const bool empty = num_chunks == 0;
#pragma unroll
  for (int nt = 0; nt < 16; ++nt) {
    const size_t top = state_at + (row + g) * kK + nt * 8 + 2 * t, bottom = top + 8 * kK;
    *reinterpret_cast<float2*>(new_state + top) = empty ? make_float2(0.f, 0.f) : make_float2(S[nt][0], S[nt][1]);
    *reinterpret_cast<float2*>(new_state + bottom) = empty ? make_float2(0.f, 0.f) : make_float2(S[nt][2], S[nt][3]);
  }
}

}  // namespace gdn

#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

void kernel(torch::Tensor q, torch::Tensor k, torch::Tensor v, c10::optional<torch::Tensor> state,
            torch::Tensor A_log, torch::Tensor a, torch::Tensor dt_bias, torch::Tensor b,
            torch::Tensor cu_seqlens, double scale, torch::Tensor output, torch::Tensor new_state) {
  const int num_seqs = static_cast<int>(cu_seqlens.size(0)) - 1;
  if (num_seqs <= 0) return;
  const c10::cuda::CUDAGuard on_inputs_device(q.device());  // its stream, its shared-memory opt-in
  auto bf16 = [](const torch::Tensor& t) { return reinterpret_cast<const __nv_bfloat16*>(t.data_ptr<at::BFloat16>()); };
  const float s = scale == 0.0 ? 1.f / sqrtf(static_cast<float>(gdn::kK)) : static_cast<float>(scale);
  constexpr size_t smem = gdn::kStages * sizeof(gdn::Stage);
  if (smem + sizeof(float) * gdn::kC * gdn::kC > 48 * 1024)  // five stages: opt in, on this device
    C10_CUDA_CHECK(cudaFuncSetAttribute(gdn::prefill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  // Few sequences all fit on the GPU at once: their order does not matter, ranking would cost.
  const bool longest_first = num_seqs >= GDN_RANK_FROM_SEQS && num_seqs <= gdn::kMaxRanked;
  gdn::prefill_kernel<<<dim3(gdn::kHeads * (gdn::kV / gdn::kRows), num_seqs), gdn::kThreads, smem,
                        c10::cuda::getCurrentCUDAStream()>>>(
      bf16(q), bf16(k), bf16(v), state.has_value() ? state->data_ptr<float>() : nullptr,
      A_log.data_ptr<float>(), bf16(a), dt_bias.data_ptr<float>(), bf16(b), cu_seqlens.data_ptr<int64_t>(),
      reinterpret_cast<__nv_bfloat16*>(output.data_ptr<at::BFloat16>()), new_state.data_ptr<float>(), s, num_seqs, longest_first);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("kernel", &kernel); }
