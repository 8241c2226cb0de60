// GDN decode as one CUDA kernel per call (a variant beside ../triton, the default, until a full
// `fibkit bench` run has timed it; the H200 sweep in docs/perf-notes.md, decode v2, measured it).
//
// Shapes: q, k [B, 1, 4, 128] bf16; v [B, 1, 8, 128] bf16; a, b [B, 1, 8] bf16; A_log, dt_bias
// [8] fp32; state / new_state [B, 8, 128 (V), 128 (K)] fp32, k-last; output [B, 1, 8, 128] bf16.
// v head h reads q/k head h / 2. Every state row v is independent:
//     S_v <- g S_v;  delta_v = beta (v_v - S_v.k);  S_v <- S_v + delta_v k;  o_v = scale S_v.q
// and the step is memory-bound on the state (64 KiB read and 64 KiB written per sequence and head).
//
// A warp owns kRows state rows of one (sequence, v head); lane l holds columns [4l, 4l + 4) of
// each row, so a row is one coalesced 512-byte float4 load and store. The state loads are issued
// first, before the gates are computed, so their latency covers everything else. The output is
// formed from the loaded rows, o = scale (S q + delta (k.q)), so S k, S q and k.q are independent
// butterflies, interleaved across rows, and the updated rows are only stored. A head's blocks
// are consecutive in the flat grid: the blocks the scheduler runs together stream one contiguous
// head. No program waits on another; no shared memory.
#include <cuda_bf16.h>
#include <cstdint>

// Up to this many sequences, 4 rows per warp and 2 warps per block: twice the warps of 8-row
// warps, for a latency-bound call (H200: B = 1 2.24 -> 2.08 us); beyond it, 8 rows per one-warp
// block (B = 64: 18.3 us against 18.8 for 4 x 2).
#ifndef GDN_DECODE_SMALL_BATCH
#define GDN_DECODE_SMALL_BATCH 16
#endif

namespace gdn_decode {

constexpr int kK = 128, kV = 128, kVHeads = 8, kGroup = 2;

__device__ __forceinline__ float4 load_bf16x4(const __nv_bfloat16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}

__device__ __forceinline__ float dot4(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }

template <int kRows, int kWarps>
__global__ void __launch_bounds__(32 * kWarps)
decode_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
              const __nv_bfloat16* __restrict__ v, const float* state, const float* __restrict__ A_log,
              const __nv_bfloat16* __restrict__ a, const float* __restrict__ dt_bias,
              const __nv_bfloat16* __restrict__ b, __nv_bfloat16* __restrict__ out, float* new_state,
              float scale) {
  static_assert(kV % (kRows * kWarps) == 0 && kRows <= 32, "a head's rows split evenly; a lane per output row");
  constexpr int kBlocksPerHead = kV / (kRows * kWarps);
  const int seq_head = blockIdx.x / kBlocksPerHead;  // = sequence * kVHeads + v head
  const int lane = threadIdx.x % 32;
  const int row0 = (blockIdx.x % kBlocksPerHead) * kRows * kWarps + (threadIdx.x / 32) * kRows;
  const int head = seq_head % kVHeads;
  const int qk_row = (seq_head / kVHeads) * (kVHeads / kGroup) + head / kGroup;
  const size_t base = (static_cast<size_t>(seq_head) * kV + row0) * kK + 4 * lane;

  // The state first: kRows independent 16-byte loads in flight per lane. (state and new_state
  // may be one buffer: each element is read before the same thread writes it.)
  float4 s[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
    s[r] = state ? *reinterpret_cast<const float4*>(state + base + r * kK) : make_float4(0.f, 0.f, 0.f, 0.f);
  const float4 kv = load_bf16x4(k + qk_row * kK + 4 * lane);
  const float4 qv = load_bf16x4(q + qk_row * kK + 4 * lane);
  const float v_lane = lane < kRows ? __bfloat162float(v[seq_head * kV + row0 + lane]) : 0.f;

  // Gates, as in the definition: g = exp(-exp(A_log) softplus(a + dt_bias)), beta = sigmoid(b).
  const float x = __bfloat162float(a[seq_head]) + dt_bias[head];
  const float softplus = x > 20.f ? x : log1pf(expf(x));  // torch's threshold
  const float g = expf(-expf(A_log[head]) * softplus);
  const float beta = 1.f / (1.f + expf(-__bfloat162float(b[seq_head])));

  // Lane partials of (g S) k and (g S) q per row, then each butterfly step for every row at
  // once, so that the rows' shuffles overlap.
  float sk[kRows], sq[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    s[r] = make_float4(s[r].x * g, s[r].y * g, s[r].z * g, s[r].w * g);
    sk[r] = dot4(s[r], kv);
    sq[r] = dot4(s[r], qv);
  }
  float kq = dot4(kv, qv);
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      sk[r] += __shfl_xor_sync(0xffffffffu, sk[r], offset);
      sq[r] += __shfl_xor_sync(0xffffffffu, sq[r], offset);
    }
    kq += __shfl_xor_sync(0xffffffffu, kq, offset);
  }

  float out_lane = 0.f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float delta = beta * (__shfl_sync(0xffffffffu, v_lane, r) - sk[r]);
    if (lane == r) out_lane = scale * (sq[r] + delta * kq);
    *reinterpret_cast<float4*>(new_state + base + r * kK) =
        make_float4(s[r].x + delta * kv.x, s[r].y + delta * kv.y, s[r].z + delta * kv.z, s[r].w + delta * kv.w);
  }
  if (lane < kRows) out[seq_head * kV + row0 + lane] = __float2bfloat16(out_lane);
}

}  // namespace gdn_decode

#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

template <int kRows, int kWarps>
static void launch(int batch, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                   const c10::optional<torch::Tensor>& state, const torch::Tensor& A_log, const torch::Tensor& a,
                   const torch::Tensor& dt_bias, const torch::Tensor& b, float scale, torch::Tensor& output,
                   torch::Tensor& new_state) {
  auto bf16 = [](const torch::Tensor& t) { return reinterpret_cast<const __nv_bfloat16*>(t.data_ptr<at::BFloat16>()); };
  const int blocks = batch * gdn_decode::kVHeads * (gdn_decode::kV / (kRows * kWarps));
  gdn_decode::decode_kernel<kRows, kWarps><<<blocks, 32 * kWarps, 0, c10::cuda::getCurrentCUDAStream()>>>(
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
#if defined(GDN_DECODE_ROWS) && defined(GDN_DECODE_WARPS)  // benchmarks: one shape at every B
  launch<GDN_DECODE_ROWS, GDN_DECODE_WARPS>(batch, q, k, v, state, A_log, a, dt_bias, b, s, output, new_state);
#else
  if (batch <= GDN_DECODE_SMALL_BATCH)
    launch<4, 2>(batch, q, k, v, state, A_log, a, dt_bias, b, s, output, new_state);
  else
    launch<8, 1>(batch, q, k, v, state, A_log, a, dt_bias, b, s, output, new_state);
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("kernel", &kernel); }
