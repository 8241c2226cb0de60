// DSA top-k indexer in CUDA: tensor-core scores over the whole GPU, then a radix select on
// chip, one block per row (mma.sync: sm_80 and newer; on sm_90 and newer the select launches
// early, programmatic dependent launch). The Triton solution beside this folder is its twin for
// the CPU tests.
//
// Shapes: q_index_fp8 [B, 64, 128] fp8 e4m3; k_index_cache_fp8 [P, 64, 1, 132] int8 in the
// deep_gemm page layout (a page is its 64 x 128 fp8 values, then its 64 fp32 scales); weights
// [B, 64] fp32; seq_lens [B] int32; block_table [B, M] int32; topk_indices [B, 2048] int32,
// slots page * 64 + offset, -1 padded.
//
//   score[b, t] = sum_h weights[b, h] * relu(scale_t * (q[b, h] . k_t)),  t < seq_len[b].
//
// A row of at most 2048 tokens keeps all of them: no score, its slots in position order, then
// -1. A longer row returns its 2048 best slots in position order (the contest judges them as a
// set); among equal scores at the boundary the earlier tokens win.
//  * score_kernel: one block of four warps per (row, kChunkPages pages). Each warp takes 16
//    tokens of a page as the M side of m16n8k16 products against all 64 heads (the N side), so
//    a token's 64 head products end in its own quad of lanes: scale, relu and weights are
//    applied there and the sum over heads is two shuffles. The products run in f16, which
//    holds every e4m3 value exactly (fp32 accumulation): Hopper has no fp8 mma.sync (its
//    m16n8k32 e4m3 form is emulated, converting both operands for every product, and wgmma
//    needs an sm_90a build, which the contest's builders do not make). So each token's fp8
//    values are converted once per page, in registers, and q once per block, into shared
//    memory in fragment order. Dims are permuted the same way for q and k (the products are
//    unchanged): each lane loads 32 contiguous bytes of its two tokens, and the block issues
//    all of its chunk's loads, and q's, before the first product. Scores go to a workspace
//    allocated for the call, [B, M * 64] fp32. (On the H200 the emulated fp8 form with q held
//    in registers was 0.4-4 us slower, and splitting the heads over two warps, or four product
//    chains per page, gave nothing on the mean: docs/perf-notes.md, v8 and v9.)
//  * select_kernel: one block of kSelectThreads per row, placed as the score kernel starts
//    (its prologue overlaps the scoring; it waits for the scores). The row's scores become
//    order-preserving 32-bit keys (in shared memory while they fit), and the 2048th largest
//    key is found digit by digit from the highest bit where the row's keys differ: a
//    histogram of kDigitBits bits per pass (shared-memory atomics), the digit where the count
//    from the top reaches what is still needed, and an early stop once the tied group is
//    taken whole. Then one block-wide scan in position order gives every selected token its
//    output slot. With 1024 threads every instruction is 32 warp issues, so this part is
//    bound by how many instructions a key costs: 32-bit compares only, and the keys' source
//    (shared memory, or the scores for a row too long for it) chosen once per row, not per key.
// No block waits on another (the select waits for the scores only through the launch order),
// the workspace is the call's own (concurrent calls share nothing), and the output is the same
// on every run (the slots come from scans, not from the order of atomics).
#include <cstdint>

namespace dsa_indexer {

constexpr int kHeads = 64, kDim = 128, kPage = 64, kTopk = 2048;
constexpr int kPageBytes = kPage * (kDim + 4);  // 8448: 64 x 128 fp8 values, then 64 fp32 scales
constexpr int kScoreWarps = kPage / 16;         // a page per block step, 16 tokens a warp
constexpr int kHeadTiles = kHeads / 8;  // n-tiles of 8 heads
constexpr int kScoreThreads = kScoreWarps * 32;
#ifndef IDX_CHUNK_PAGES
#define IDX_CHUNK_PAGES 2
#endif
#ifndef IDX_PAGES_PER_STEP
#define IDX_PAGES_PER_STEP 2
#endif
#ifndef IDX_SCORE_BLOCKS_PER_SM
#define IDX_SCORE_BLOCKS_PER_SM 4
#endif
#ifndef IDX_EARLY_TRIGGER
#define IDX_EARLY_TRIGGER 1
#endif
#ifndef IDX_SELECT_THREADS
#define IDX_SELECT_THREADS 1024
#endif
#ifndef IDX_DIGIT_BITS
#define IDX_DIGIT_BITS 12
#endif
// Pages per block; pages sharing each q fragment load (more: fewer shared-memory reads, more
// registers); the occupancy the register budget is set for.
constexpr int kChunkPages = IDX_CHUNK_PAGES, kPagesPerStep = IDX_PAGES_PER_STEP;
constexpr int kScoreBlocksPerSm = IDX_SCORE_BLOCKS_PER_SM;
// When the score blocks let the select's blocks be placed: at their start (the select's
// prologue overlaps the scoring, its blocks taking SM room from it) or after their stores.
constexpr bool kEarlyTrigger = IDX_EARLY_TRIGGER;
static_assert(kChunkPages % kPagesPerStep == 0, "whole steps");
constexpr int kSelectThreads = IDX_SELECT_THREADS, kSelectWarps = kSelectThreads / 32;
constexpr int kDigitBits = IDX_DIGIT_BITS, kBins = 1 << kDigitBits;
constexpr int kBinsPerThread = kBins / kSelectThreads;
constexpr int kLoadBatch = 8;  // score loads a select thread keeps in flight
static_assert(kBins % kSelectThreads == 0 && kTopk % kSelectThreads == 0, "every thread the same share");
// Keys stay in shared memory for rows up to this many tokens; longer rows re-read the scores.
constexpr int64_t kMaxCachedKeys = 40960;

// ---------------------------------------------------------------- PTX wrappers

// d += a (16 x 16, row) * b (16 x 8, col), f16 in, fp32 accumulate.
__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// Four e4m3 values (byte i = value i) -> two f16x2 words, values 0-1 and 2-3, low half first.
// Exact: f16 has more exponent range and mantissa bits than e4m3.
__device__ __forceinline__ uint2 e4m3x4_to_f16x4(uint32_t w) {
  uint2 h;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm("{\n .reg .b16 lo, hi;\n mov.b32 {lo, hi}, %2;\n cvt.rn.f16x2.e4m3x2 %0, lo;\n cvt.rn.f16x2.e4m3x2 %1, hi;\n}"
      : "=r"(h.x), "=r"(h.y)
      : "r"(w));
#else
  // e4m3 bits seeeemmm placed as f16 bits s0eeeemmm0000000 are the value times 2^-8 (the
  // exponent biases are 7 and 15; subnormals land right too), so multiply by 2^8.
  const uint32_t lo = __byte_perm(w, 0, 0x5150), hi = __byte_perm(w, 0, 0x5352);  // bytes 0,1 / 2,3 in halves
  const uint32_t scale = 0x5c005c00u;                                             // f16x2 {256, 256}
  auto widen = [&](uint32_t x) {
    const uint32_t bits = ((x & 0x007f007fu) << 7) | ((x & 0x00800080u) << 8);
    uint32_t out;
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(out) : "r"(bits), "r"(scale));
    return out;
  };
  h.x = widen(lo), h.y = widen(hi);
#endif
  return h;
}
// Programmatic dependent launch (sm_90+; before it, plain stream order): the select's blocks
// may be placed once every score block has signalled, and wait here until the score kernel
// has finished and its writes are visible.
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

// ---------------------------------------------------------------- shared helpers

// The row's token count, clamped to what its table can hold (as the reference's slicing does).
__device__ __forceinline__ int row_length(const int32_t* seq_lens, int b, int max_pages) {
  return min(max(seq_lens[b], 0), max_pages * kPage);
}
// Page numbers are clamped into the cache as the reference's indexing would need; the Python
// API rejects bad pages before they get here.
__device__ __forceinline__ int64_t page_of(const int32_t* table_row, int position, int num_pages) {
  return min(max(table_row[position / kPage], 0), num_pages - 1);
}
__device__ __forceinline__ int32_t slot_of(const int32_t* table_row, int position, int num_pages) {
  return static_cast<int32_t>(page_of(table_row, position, num_pages) * kPage + position % kPage);
}
// A 32-bit key whose unsigned order is the score's order (-0 and +0 are one key).
__device__ __forceinline__ uint32_t order_key(float score) {
  const uint32_t u = __float_as_uint(score + 0.0f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// ---------------------------------------------------------------- the score kernel

// The dim order of the products. Lane (g, c) holds dims [32 c, 32 c + 32) of its tokens as 16
// f16x2 words; k-step s takes words 2 s (as the fragments' k 2c, 2c + 1) and 2 s + 1 (as k
// 2c + 8, 2c + 9), for the tokens (A) and the heads (B) alike.
struct TokenPair {  // one page's two tokens of a lane: g and g + 8 of its warp's 16
  uint4 raw[2][2];  // fp8, 32 bytes each
  float scale[2];
};

// Grid: B x ceil(M / kChunkPages) blocks, row-major; block (b, chunk) scores pages
// [chunk, chunk + 1) * kChunkPages of row b, if the row is longer than 2048 tokens.
__global__ void __launch_bounds__(kScoreThreads, kScoreBlocksPerSm)
    score_kernel(const uint8_t* __restrict__ q, const uint8_t* __restrict__ k_cache,
                 const float* __restrict__ weights, const int32_t* __restrict__ seq_lens,
                 const int32_t* __restrict__ block_table, int max_pages, int num_pages, int chunks,
                 float* __restrict__ scores) {
  if (kEarlyTrigger) launch_dependents();
  const int b = blockIdx.x / chunks, first = (blockIdx.x % chunks) * kChunkPages;
  const int32_t* table_row = block_table + static_cast<int64_t>(b) * max_pages;
  // The chunk's table entries are read with the row's length, not after it (one memory
  // latency less); a page past the table's end reads its last entry, past the row's end
  // whatever the table holds there (clamped into the cache; those products are never stored).
  int32_t entry[kChunkPages];
#pragma unroll
  for (int p = 0; p < kChunkPages; ++p) entry[p] = table_row[min(first + p, max_pages - 1)];
  const int n = row_length(seq_lens, b, max_pages);
  const int pages = (n + kPage - 1) / kPage;
  if (n <= kTopk || first >= pages) {
    launch_dependents();
    return;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;

  // Every load of the chunk first.
  TokenPair tok[kChunkPages];
#pragma unroll
  for (int p = 0; p < kChunkPages; ++p) {
    const uint8_t* page = k_cache + static_cast<int64_t>(min(max(entry[p], 0), num_pages - 1)) * kPageBytes;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int token = warp * 16 + g + 8 * r;
      const uint4* src = reinterpret_cast<const uint4*>(page + token * kDim + c * 32);
      tok[p].raw[r][0] = __ldg(src);
      tok[p].raw[r][1] = __ldg(src + 1);
      tok[p].scale[r] = __ldg(reinterpret_cast<const float*>(page + kPage * kDim) + token);
    }
  }
  // q in f16 as B fragments: q_frag[nt][i][lane] holds words 4 i .. 4 i + 3 of lane's 16 for
  // heads 8 nt + g (consecutive lanes read consecutive 16 bytes: no bank conflicts).
  __shared__ uint4 q_frag[kHeadTiles][4][32];
  __shared__ float2 w_pairs[kHeads / 2];
  const uint8_t* q_row = q + static_cast<int64_t>(b) * kHeads * kDim;
  // Every q load in flight at once: a loop from threadIdx.x waits for each load in turn, and
  // did (its eight round trips were half of a block's 3.5 us before its first product).
  constexpr int kQLoads = kHeadTiles * 4 * 32 / kScoreThreads;
  uint2 q_raw[kQLoads];
#pragma unroll
  for (int j = 0; j < kQLoads; ++j) {
    const int i = threadIdx.x + j * kScoreThreads, nt = i / 128, part = (i / 32) % 4, l = i % 32;
    q_raw[j] = __ldg(reinterpret_cast<const uint2*>(q_row + (nt * 8 + l / 4) * kDim + (l % 4) * 32 + part * 8));
  }
#pragma unroll
  for (int j = 0; j < kQLoads; ++j) {
    const int i = threadIdx.x + j * kScoreThreads, nt = i / 128, part = (i / 32) % 4, l = i % 32;
    const uint2 lo = e4m3x4_to_f16x4(q_raw[j].x), hi = e4m3x4_to_f16x4(q_raw[j].y);
    q_frag[nt][part][l] = make_uint4(lo.x, lo.y, hi.x, hi.y);
  }
  if (threadIdx.x < kHeads / 2)
    w_pairs[threadIdx.x] = __ldg(reinterpret_cast<const float2*>(weights + static_cast<int64_t>(b) * kHeads) + threadIdx.x);
  __syncthreads();

  float* row_scores = scores + static_cast<int64_t>(b) * max_pages * kPage;
#pragma unroll
  for (int p0 = 0; p0 < kChunkPages; p0 += kPagesPerStep) {
    if (first + p0 >= pages) break;
    // This step's tokens in f16: a[p][r][j] = words j of token g + 8 r.
    uint32_t a[kPagesPerStep][2][16];
#pragma unroll
    for (int p = 0; p < kPagesPerStep; ++p)
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint4 v = tok[p0 + p].raw[r][h];
          const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const uint2 f = e4m3x4_to_f16x4(words[j]);
            a[p][r][8 * h + 2 * j] = f.x, a[p][r][8 * h + 2 * j + 1] = f.y;
          }
        }
    float sum[kPagesPerStep][2] = {};  // tokens g and g + 8 of each page
#pragma unroll 1  // unrolled, the compiler would keep every head tile's chains live and spill
    for (int nt = 0; nt < kHeadTiles; ++nt) {
      const float2 w = w_pairs[nt * 4 + c];  // the weights of this lane's columns: heads 8 nt + 2 c, + 1
      // [token g, token g + 8] x [head 2 c, 2 c + 1], even and odd k-steps apart: two
      // independent chains of four products per page, added at the end.
      float acc[kPagesPerStep][2][4] = {};
#pragma unroll
      for (int part = 0; part < 4; ++part) {  // two k-steps per 16 bytes of q fragments
        const uint4 qb = q_frag[nt][part][lane];
#pragma unroll
        for (int p = 0; p < kPagesPerStep; ++p) {
          const int s0 = 2 * part, s1 = 2 * part + 1;
          mma_f16(acc[p][0], a[p][0][2 * s0], a[p][1][2 * s0], a[p][0][2 * s0 + 1], a[p][1][2 * s0 + 1], qb.x, qb.y);
          mma_f16(acc[p][1], a[p][0][2 * s1], a[p][1][2 * s1], a[p][0][2 * s1 + 1], a[p][1][2 * s1 + 1], qb.z, qb.w);
        }
      }
#pragma unroll
      for (int p = 0; p < kPagesPerStep; ++p) {
        const float s0 = tok[p0 + p].scale[0], s1 = tok[p0 + p].scale[1];
        float d[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) d[e] = acc[p][0][e] + acc[p][1][e];
        sum[p][0] += fmaxf(d[0] * s0, 0.f) * w.x + fmaxf(d[1] * s0, 0.f) * w.y;
        sum[p][1] += fmaxf(d[2] * s1, 0.f) * w.x + fmaxf(d[3] * s1, 0.f) * w.y;
      }
    }
#pragma unroll
    for (int p = 0; p < kPagesPerStep; ++p) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {  // the quad's four partial sums, in a fixed order
        sum[p][r] += __shfl_xor_sync(0xffffffffu, sum[p][r], 1);
        sum[p][r] += __shfl_xor_sync(0xffffffffu, sum[p][r], 2);
      }
      const int position = (first + p0 + p) * kPage + warp * 16 + g + 8 * (c & 1);
      if (c < 2 && position < n) row_scores[position] = c == 0 ? sum[p][0] : sum[p][1];
    }
  }
  if (!kEarlyTrigger) launch_dependents();  // after the stores: the select's blocks take no room from scoring
}

// ---------------------------------------------------------------- the select kernel

struct SelectShared {
  uint32_t hist[2][kBins];  // this pass's digit counts, and the next pass's, zeroed ahead
  uint32_t warp_total[kSelectWarps];
  uint32_t warp_max[kSelectWarps], warp_min[kSelectWarps];
  unsigned long long warp_scan[kSelectWarps];
  uint32_t digit, above, in_digit;  // a pass's result
};
static_assert(kSelectWarps <= 32, "one warp scans the warps' totals");

template <typename T>
__device__ __forceinline__ T warp_inclusive_scan(T value) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const T up = __shfl_up_sync(0xffffffffu, value, d);
    if (lane >= d) value += up;
  }
  return value;
}
// Exclusive prefix of `value` over the block's threads in thread order: one barrier, and every
// warp scans the warps' totals itself (no loop over the warps).
template <typename T>
__device__ __forceinline__ T block_exclusive_scan(T value, T* warp_totals) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const T inclusive = warp_inclusive_scan(value);
  if (lane == 31) warp_totals[warp] = inclusive;
  __syncthreads();
  const T total = lane < kSelectWarps ? warp_totals[lane] : T(0);
  const T before_warp = __shfl_sync(0xffffffffu, warp_inclusive_scan(total) - total, warp);
  return before_warp + inclusive - value;
}

// A long row's selection and output, its keys and slots read through `key(i)` and `slot(i)`
// (from shared memory, or for a row too long for it, from the scores and the table).
template <typename Key, typename Slot>
__device__ __forceinline__ void select_and_place(SelectShared& sh, int n, uint32_t hi, uint32_t lo, int32_t* out,
                                                 Key key, Slot slot) {
  const int tid = threadIdx.x;
  // The selection: keys whose bits from `shift` up exceed those of `prefix`, then the first
  // `need` in position order of those equal to it there. Bits at or above `top` are the same
  // in every key of the row; each pass fixes the next digit below them.
  uint32_t prefix = hi, need = kTopk;
  int shift = 0;
  if (hi != lo) {
    int top = 32 - __clz(hi ^ lo);
    prefix = top == 32 ? 0u : hi & ~((1u << top) - 1u);
    for (int pass = 0; top > 0; ++pass) {
      const int width = min(kDigitBits, top);
      shift = top - width;
      uint32_t* hist = sh.hist[pass & 1];
      const uint32_t fixed = top == 32 ? 0u : ~0u << top, digit_mask = (1u << width) - 1u;  // (prefix has no bits below top)
      for (int i = tid; i < n; i += kSelectThreads) {
        const uint32_t k = key(i);
        if ((k & fixed) == prefix) atomicAdd(&hist[(k >> shift) & digit_mask], 1u);
      }
      __syncthreads();
      // Bins from the top digit down: thread t sums kBinsPerThread of them, the block scans.
      uint32_t counts[kBinsPerThread], mine = 0;
#pragma unroll
      for (int j = 0; j < kBinsPerThread; ++j) mine += counts[j] = hist[kBins - 1 - (tid * kBinsPerThread + j)];
      for (int i = tid; i < kBins; i += kSelectThreads) sh.hist[(pass + 1) & 1][i] = 0;
      uint32_t before = block_exclusive_scan(mine, sh.warp_total);
#pragma unroll
      for (int j = 0; j < kBinsPerThread; ++j) {  // exactly one bin crosses `need`
        if (before < need && before + counts[j] >= need)
          sh.digit = kBins - 1 - (tid * kBinsPerThread + j), sh.above = before, sh.in_digit = counts[j];
        before += counts[j];
      }
      __syncthreads();
      prefix |= sh.digit << shift;
      need -= sh.above;
      top = shift;
      if (sh.in_digit == need) break;  // the digit's keys are all taken: no lower digit matters
    }
  }

  // Each thread's run of consecutive positions; one scan of (above, equal) counts in position
  // order gives token i its output slot, above(i) + min(equal(i), need).
  const int per_thread = (n + kSelectThreads - 1) / kSelectThreads;
  const int begin = min(n, tid * per_thread), end = min(n, begin + per_thread);
  const uint32_t bar = prefix >> shift;  // (shift < 32)
  uint32_t above = 0, equal = 0;
  for (int i = begin; i < end; ++i) {
    const uint32_t v = key(i) >> shift;
    above += v > bar, equal += v == bar;
  }
  const unsigned long long before =
      block_exclusive_scan((static_cast<unsigned long long>(above) << 32) | equal, sh.warp_scan);
  uint32_t at_above = static_cast<uint32_t>(before >> 32), at_equal = static_cast<uint32_t>(before);
  for (int i = begin; i < end; ++i) {
    const uint32_t v = key(i) >> shift;
    if (v > bar) {
      out[at_above + min(at_equal, need)] = slot(i);
      ++at_above;
    } else if (v == bar) {
      if (at_equal < need) out[at_above + at_equal] = slot(i);
      ++at_equal;
    }
  }
}

// Grid: B blocks. Block b writes topk_indices[b].
__global__ void __launch_bounds__(kSelectThreads)
    select_kernel(const float* __restrict__ scores, const int32_t* __restrict__ seq_lens,
                  const int32_t* __restrict__ block_table, int max_pages, int num_pages, int keys_cached,
                  int32_t* __restrict__ topk_indices) {
  extern __shared__ __align__(16) uint8_t raw[];
  SelectShared& sh = *reinterpret_cast<SelectShared*>(raw);
  uint32_t* cached = reinterpret_cast<uint32_t*>(raw + sizeof(SelectShared));
  const int b = blockIdx.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int n = row_length(seq_lens, b, max_pages);
  const int32_t* table_row = block_table + static_cast<int64_t>(b) * max_pages;
  int32_t* out = topk_indices + static_cast<int64_t>(b) * kTopk;
  if (n <= kTopk) {  // every token: its slots in position order, then -1 (no score read)
    int32_t slots[kTopk / kSelectThreads];  // every table read in flight before the stores
#pragma unroll
    for (int j = 0; j < kTopk / kSelectThreads; ++j) {
      const int i = tid + j * kSelectThreads;
      slots[j] = i < n ? slot_of(table_row, i, num_pages) : -1;
    }
#pragma unroll
    for (int j = 0; j < kTopk / kSelectThreads; ++j) out[tid + j * kSelectThreads] = slots[j];
    wait_for_primary();  // finish no earlier than the score kernel: the call's workspace lives until then
    return;
  }
  // While the scores finish: the first histogram zeroed, the row's pages into shared memory
  // (with its keys: a row too long for those reads its slots from the table at the end).
  int32_t* pages = reinterpret_cast<int32_t*>(cached + max_pages * kPage);
  for (int i = tid; i < kBins; i += kSelectThreads) sh.hist[0][i] = 0;
  if (keys_cached)
    for (int i = tid; i < (n + kPage - 1) / kPage; i += kSelectThreads) pages[i] = page_of(table_row, i * kPage, num_pages);
  wait_for_primary();
  const float* row_scores = scores + static_cast<int64_t>(b) * max_pages * kPage;
  uint32_t hi = 0, lo = 0xffffffffu;
  // kLoadBatch loads in flight per thread (a plain loop waits for each load before the next).
  for (int base = tid; base < n; base += kLoadBatch * kSelectThreads) {
    float v[kLoadBatch];
#pragma unroll
    for (int j = 0; j < kLoadBatch; ++j) {
      const int i = base + j * kSelectThreads;
      v[j] = i < n ? __ldcg(row_scores + i) : 0.f;
    }
#pragma unroll
    for (int j = 0; j < kLoadBatch; ++j) {
      const int i = base + j * kSelectThreads;
      if (i >= n) break;
      const uint32_t k = order_key(v[j]);
      if (keys_cached) cached[i] = k;
      hi = max(hi, k), lo = min(lo, k);
    }
  }
  hi = __reduce_max_sync(0xffffffffu, hi), lo = __reduce_min_sync(0xffffffffu, lo);
  if (lane == 0) sh.warp_max[warp] = hi, sh.warp_min[warp] = lo;
  __syncthreads();
  hi = __reduce_max_sync(0xffffffffu, lane < kSelectWarps ? sh.warp_max[lane] : 0u);
  lo = __reduce_min_sync(0xffffffffu, lane < kSelectWarps ? sh.warp_min[lane] : 0xffffffffu);

  if (keys_cached)
    select_and_place(sh, n, hi, lo, out, [&](int i) { return cached[i]; },
                     [&](int i) { return pages[i / kPage] * kPage + i % kPage; });
  else
    select_and_place(sh, n, hi, lo, out, [&](int i) { return order_key(__ldcg(row_scores + i)); },
                     [&](int i) { return slot_of(table_row, i, num_pages); });
}

}  // namespace dsa_indexer

#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

void kernel(torch::Tensor q_index_fp8, torch::Tensor k_index_cache_fp8, torch::Tensor weights,
            torch::Tensor seq_lens, torch::Tensor block_table, torch::Tensor topk_indices) {
  using namespace dsa_indexer;
  const int64_t batch = block_table.size(0), max_pages = block_table.size(1);
  if (batch == 0) return;
  for (const torch::Tensor* t : {&q_index_fp8, &k_index_cache_fp8, &weights, &seq_lens, &block_table, &topk_indices})
    TORCH_CHECK(t->is_cuda() && t->is_contiguous(), "dsa_topk_indexer: every tensor must be contiguous on the GPU");
  TORCH_CHECK(max_pages * kPage < (int64_t{1} << 31), "dsa_topk_indexer: max_num_pages * 64 must fit in int32");
  const c10::cuda::CUDAGuard on_inputs_device(weights.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int num_pages = static_cast<int>(k_index_cache_fp8.size(0));
  const int64_t row_tokens = max_pages * kPage;
  // Decided by shapes alone (no host synchronization): if no row can pass 2048 tokens, nothing
  // is scored and the select alone writes every row.
  const bool score = row_tokens > kTopk;
  torch::Tensor scores = torch::empty({score ? batch * row_tokens : 1}, weights.options());
  if (score) {
    const int chunks = static_cast<int>((max_pages + kChunkPages - 1) / kChunkPages);
    score_kernel<<<static_cast<unsigned>(batch * chunks), kScoreThreads, 0, stream>>>(
        static_cast<const uint8_t*>(q_index_fp8.data_ptr()), static_cast<const uint8_t*>(k_index_cache_fp8.data_ptr()),
        weights.data_ptr<float>(), seq_lens.data_ptr<int32_t>(), block_table.data_ptr<int32_t>(),
        static_cast<int>(max_pages), num_pages, chunks, scores.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  // The select's shared memory: its state, and the row's keys and pages where they fit in what
  // this GPU lets one block have (227 KB on Hopper, 163 KB on an A100).
  int smem_limit = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, weights.device().index()));
  const size_t cached_bytes = row_tokens * sizeof(uint32_t) + max_pages * sizeof(int32_t);
  const int keys_cached = score && row_tokens <= kMaxCachedKeys && sizeof(SelectShared) + cached_bytes <= static_cast<size_t>(smem_limit);
  const size_t smem = sizeof(SelectShared) + (keys_cached ? cached_bytes : 0);
  C10_CUDA_CHECK(cudaFuncSetAttribute(select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(batch));
  config.blockDim = dim3(kSelectThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute early[1];
  early[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  early[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = early;
  config.numAttrs = score ? 1 : 0;
  C10_CUDA_CHECK(cudaLaunchKernelEx(&config, select_kernel, static_cast<const float*>(scores.data_ptr<float>()),
                                    static_cast<const int32_t*>(seq_lens.data_ptr<int32_t>()),
                                    static_cast<const int32_t*>(block_table.data_ptr<int32_t>()),
                                    static_cast<int>(max_pages), num_pages, keys_cached,
                                    topk_indices.data_ptr<int32_t>()));
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("kernel", &kernel); }
