// GDN decode as one CUDA kernel per call: the definition's default solution (../triton is its
// twin, which the CPU tests run through the Triton interpreter). docs/perf-notes.md, GDN decode
// v2 to v4, has the H200 measurements behind each choice below.
//
// Shapes: q, k [B, 1, 4, 128] bf16; v [B, 1, 8, 128] bf16; a, b [B, 1, 8] bf16; A_log, dt_bias
// [8] fp32; state / new_state [B, 8, 128 (V), 128 (K)] fp32, k-last; output [B, 1, 8, 128] bf16.
// v head h reads q/k head h / 2. Every state row v is independent:
//     S_v <- g S_v;  delta_v = beta (v_v - S_v.k);  S_v <- S_v + delta_v k;  o_v = scale S_v.q
// and the step is memory-bound on the state (64 KiB read and 64 KiB written per sequence and head).
//
// A warp owns kRows state rows of one (sequence, v head), kLanes lanes to a row, each lane a
// few float4 chunks of it, so every state access is a coalesced 16-byte one. The state loads are issued
// first, before the gates are computed, so their latency covers everything else. The output is
// formed from the loaded rows, o = scale (S q + delta (k.q)), so S k, S q and k.q are independent
// butterflies, interleaved across rows, and the updated rows are only stored. A head's blocks
// are consecutive in the flat grid: the blocks the scheduler runs together stream one contiguous
// head. No program waits on another; no shared memory.
#include <cuda_bf16.h>
#include <cstdint>

namespace gdn_decode {

constexpr int kK = 128, kV = 128, kVHeads = 8, kGroup = 2;

__device__ __forceinline__ float4 load_bf16x4(const __nv_bfloat16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}

__device__ __forceinline__ float dot4(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }
__device__ __forceinline__ float4 scaled(float4 a, float c) { return make_float4(a.x * c, a.y * c, a.z * c, a.w * c); }

// f(0) + ... + f(n - 1), in order from 0 (a chain n adds deep, as v3 summed) or pairwise (log2(n)
// deep; the compiler keeps the order of float adds as written).
template <int n, bool kPairwise, typename F>
__device__ __forceinline__ float chunk_sum(F f) {
  if constexpr (n == 1) {
    return f(0);
  } else if constexpr (kPairwise) {
    return chunk_sum<n / 2, true>(f) + chunk_sum<n - n / 2, true>([&](int j) { return f(j + n / 2); });
  } else {
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < n; ++j) sum += f(j);
    return sum;
  }
}

// kLanes lanes share a row, so a warp instruction covers 32 / kLanes rows, each a contiguous
// 16 kLanes bytes; lane (group g, sub s) holds float4 chunks s, s + kLanes, ... of its rows. A
// row's dot products then reduce over log2(kLanes) butterfly levels, and a warp's kRows rows take
// 2 (kRows kLanes / 32) log2(kLanes) + log2(kLanes) shuffles (85 for 8 rows at 32 lanes a row, 15
// at 8). Fewer levels shorten the chain after the loads land, which is what a small batch waits
// on; at B >= 16 fewer lanes a row measured no faster (the shuffles are not what bounds it there).
template <int kRows, int kWarps, int kLanes, bool kGateFirst>
__global__ void __launch_bounds__(32 * kWarps)
decode_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
              const __nv_bfloat16* __restrict__ v, const float* state, const float* __restrict__ A_log,
              const __nv_bfloat16* __restrict__ a, const float* __restrict__ dt_bias,
              const __nv_bfloat16* __restrict__ b, __nv_bfloat16* __restrict__ out, float* new_state,
              float scale) {
  constexpr int kRowsPerStep = 32 / kLanes;          // rows one warp instruction covers
  constexpr int kSlots = kRows / kRowsPerStep;       // rows per lane
  constexpr int kChunks = kK / 4 / kLanes;           // float4 chunks per lane and row
  static_assert(kLanes >= 4 && kLanes <= 32 && (kLanes & (kLanes - 1)) == 0, "4 to 32 lanes a row");
  static_assert(kRows % kRowsPerStep == 0 && kSlots <= kLanes, "whole steps; a lane per output row");
  static_assert(kV % (kRows * kWarps) == 0, "a head's rows split evenly");
  constexpr int kBlocksPerHead = kV / (kRows * kWarps);
  const int seq_head = blockIdx.x / kBlocksPerHead;  // = sequence * kVHeads + v head
  const int lane = threadIdx.x % 32, group = lane / kLanes, sub = lane % kLanes;
  const int row0 = (blockIdx.x % kBlocksPerHead) * kRows * kWarps + (threadIdx.x / 32) * kRows + group;
  const int head = seq_head % kVHeads;
  const int qk_row = (seq_head / kVHeads) * (kVHeads / kGroup) + head / kGroup;
  // This lane's rows are row0 + i kRowsPerStep; its columns 4 (sub + j kLanes) + [0, 4).
  const size_t base = (static_cast<size_t>(seq_head) * kV + row0) * kK + 4 * sub;
  const auto at = [](int i, int j) { return i * kRowsPerStep * kK + 4 * j * kLanes; };

  // The state first: kRows independent 16-byte loads in flight per lane. (state and new_state
  // may be one buffer: each element is read before the same thread writes it.)
  float4 s[kSlots][kChunks];
#pragma unroll
  for (int i = 0; i < kSlots; ++i)
#pragma unroll
    for (int j = 0; j < kChunks; ++j)
      s[i][j] = state ? *reinterpret_cast<const float4*>(state + base + at(i, j)) : make_float4(0.f, 0.f, 0.f, 0.f);
  float4 kv[kChunks], qv[kChunks];
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    kv[j] = load_bf16x4(k + qk_row * kK + 4 * (sub + j * kLanes));
    qv[j] = load_bf16x4(q + qk_row * kK + 4 * (sub + j * kLanes));
  }
  float v_row[kSlots];
#pragma unroll
  for (int i = 0; i < kSlots; ++i) v_row[i] = __bfloat162float(v[seq_head * kV + row0 + i * kRowsPerStep]);

  // Gates, as in the definition: g = exp(-exp(A_log) softplus(a + dt_bias)), beta = sigmoid(b).
  const float x = __bfloat162float(a[seq_head]) + dt_bias[head];
  const float softplus = x > 20.f ? x : log1pf(expf(x));  // torch's threshold
  const float g = expf(-expf(A_log[head]) * softplus);
  const float beta = 1.f / (1.f + expf(-__bfloat162float(b[seq_head])));

  // Lane partials of S k and S q per row, then each butterfly level for every row at once, so
  // that the rows' shuffles overlap. Two orders, picked by batch size from measurement (the
  // dispatch below): the gate g scales S before the dots, whose partials are summed in order
  // (v3's kernel, kGateFirst); or g scales only the stores, g S + delta k, and the dots after the
  // butterflies, g (S k) and g (S q), so the dots, summed pairwise, need not wait for the gate's
  // chain of exponentials.
  float sk[kSlots], sq[kSlots];
  float kq = chunk_sum<kChunks, !kGateFirst>([&](int j) { return dot4(kv[j], qv[j]); });
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    if constexpr (kGateFirst) {
#pragma unroll
      for (int j = 0; j < kChunks; ++j) s[i][j] = scaled(s[i][j], g);
    }
    sk[i] = chunk_sum<kChunks, !kGateFirst>([&](int j) { return dot4(s[i][j], kv[j]); });
    sq[i] = chunk_sum<kChunks, !kGateFirst>([&](int j) { return dot4(s[i][j], qv[j]); });
  }
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
#pragma unroll
    for (int i = 0; i < kSlots; ++i) {
      sk[i] += __shfl_xor_sync(0xffffffffu, sk[i], offset);
      sq[i] += __shfl_xor_sync(0xffffffffu, sq[i], offset);
    }
    kq += __shfl_xor_sync(0xffffffffu, kq, offset);
  }

  // delta = beta (v - g S k); o = scale (g S + delta k^T) q = scale (g S q + delta (k.q)).
  const float gate = kGateFirst ? 1.f : g;  // what the dots still lack
  float out_row = 0.f;
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    const float delta = beta * (v_row[i] - gate * sk[i]);
    if (sub == i) out_row = scale * (gate * sq[i] + delta * kq);
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      const float4 t = s[i][j];
      *reinterpret_cast<float4*>(new_state + base + at(i, j)) =
          kGateFirst ? make_float4(fmaf(delta, kv[j].x, t.x), fmaf(delta, kv[j].y, t.y), fmaf(delta, kv[j].z, t.z),
                                   fmaf(delta, kv[j].w, t.w))
                     : make_float4(fmaf(g, t.x, delta * kv[j].x), fmaf(g, t.y, delta * kv[j].y),
                                   fmaf(g, t.z, delta * kv[j].z), fmaf(g, t.w, delta * kv[j].w));
    }
  }
  if (sub < kSlots) out[seq_head * kV + row0 + sub * kRowsPerStep] = __float2bfloat16(out_row);
}

}  // namespace gdn_decode

#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

template <int kRows, int kWarps, int kLanes, bool kGateFirst>
static void launch(int batch, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                   const c10::optional<torch::Tensor>& state, const torch::Tensor& A_log, const torch::Tensor& a,
                   const torch::Tensor& dt_bias, const torch::Tensor& b, float scale, torch::Tensor& output,
                   torch::Tensor& new_state) {
  auto bf16 = [](const torch::Tensor& t) { return reinterpret_cast<const __nv_bfloat16*>(t.data_ptr<at::BFloat16>()); };
  const int blocks = batch * gdn_decode::kVHeads * (gdn_decode::kV / (kRows * kWarps));
  gdn_decode::decode_kernel<kRows, kWarps, kLanes, kGateFirst><<<blocks, 32 * kWarps, 0, c10::cuda::getCurrentCUDAStream()>>>(
      bf16(q), bf16(k), bf16(v), state.has_value() ? state->data_ptr<float>() : nullptr, A_log.data_ptr<float>(),
      bf16(a), dt_bias.data_ptr<float>(), bf16(b), reinterpret_cast<__nv_bfloat16*>(output.data_ptr<at::BFloat16>()),
      new_state.data_ptr<float>(), scale);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void kernel(torch::Tensor q, torch::Tensor k, torch::Tensor v, c10::optional<torch::Tensor> state,
            torch::Tensor A_log, torch::Tensor a, torch::Tensor dt_bias, torch::Tensor b, double scale,
            torch::Tensor output, torch::Tensor new_state) {
  const int batch = static_cast<int>(q.size(0));
  if (batch == 0) return;
  const c10::cuda::CUDAGuard on_inputs_device(q.device());
  const float s = scale == 0.0 ? 1.f / sqrtf(static_cast<float>(gdn_decode::kK)) : static_cast<float>(scale);
#if defined(GDN_DECODE_ROWS)  // benchmarks: one shape at every B
  launch<GDN_DECODE_ROWS, GDN_DECODE_WARPS, GDN_DECODE_LANES, GDN_DECODE_GATE_FIRST>(batch, q, k, v, state, A_log, a,
                                                                                 dt_bias, b, s, output, new_state);
#else
  // (rows per warp, warps per block, lanes per row, gate first) by batch size, from the H200
  // sweeps in results/NVIDIA_H200/sweeps/gdn_decode_v{3,4}_*.txt (us):
  // - up to 12 sequences, 16-row blocks of four 4-row warps, 8 lanes a row (3 butterfly levels;
  //   v2's 8 x 1 x 32 took 2.21 at B = 1, 3.01 at B = 4). The gate first up to 4 (B = 1 1.92
  //   against 1.95-2.05 with the gate in the stores; the gate first with pairwise sums was no
  //   faster than the gate in the stores, so it is the in-order sums that help there, for a
  //   reason the sweeps do not show), in the stores from 5 (B = 8 3.97 against 4.05-4.10, B = 12
  //   4.77-4.82 against 4.99-5.06);
  // - to 16, 4 x 8 x 8 (B = 16 5.74 against 5.86 for v3's 4 x 2 x 32);
  // - to 28 and from 41 to 56, 8 x 1 x 32 (B = 24 7.58 against 8.06 for 16-row warps; B = 48
  //   0.6-1.7% ahead of them in three rounds);
  // - else 16-row one-warp blocks, 16 lanes a row (half the warps, so presumably half the gate and
  //   index work per byte): B = 32 10.46 -> 9.87, B = 64 18.61 -> 18.30; level at 40, 96 and 128;
  //   with the gate in the stores B = 32 9.70 and B = 64 18.08-18.11 (v3: 9.89, 18.30-18.34).
  if (batch <= 4)
    launch<4, 4, 8, true>(batch, q, k, v, state, A_log, a, dt_bias, b, s, output, new_state);
  else if (batch <= 12)
    launch<4, 4, 8, false>(batch, q, k, v, state, A_log, a, dt_bias, b, s, output, new_state);
  else if (batch <= 16)
    launch<4, 8, 8, false>(batch, q, k, v, state, A_log, a, dt_bias, b, s, output, new_state);
  else if (batch <= 28 || (batch > 40 && batch <= 56))
    launch<8, 1, 32, false>(batch, q, k, v, state, A_log, a, dt_bias, b, s, output, new_state);
  else
    launch<16, 1, 16, false>(batch, q, k, v, state, A_log, a, dt_bias, b, s, output, new_state);
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("kernel", &kernel); }
