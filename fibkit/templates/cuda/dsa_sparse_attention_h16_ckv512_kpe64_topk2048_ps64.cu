//! `fibkit init --language cuda dsa_attention`: the kernel, then one block per binding between
//! whole-line markers; init writes the kernel and the chosen binding.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <float.h>
#include <math.h>
#include <stdint.h>

constexpr int kHeads = 16;
constexpr int kCkv = 512;     // latent (value) width
constexpr int kKpe = 64;      // rope part of the key
constexpr int kTopk = 2048;   // slots per token, -1 = padding
constexpr int kThreads = 256;

__device__ float block_reduce(float x, float* scratch, bool take_max) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float y = __shfl_xor_sync(0xffffffff, x, offset);
    x = take_max ? fmaxf(x, y) : x + y;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch is free
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = scratch[0];
  for (int w = 1; w < kThreads / 32; ++w) x = take_max ? fmaxf(x, scratch[w]) : x + scratch[w];
  return x;
}

// One block per (token, head). Each thread scores 8 of the token's 2048 slots (q . [ckv, kpe]
// over 576 values), the block takes the softmax, then each thread sums two output columns over
// every slot. A token whose slots are all padding gets a zero output and a finite lse (-FLT_MAX:
// the contest fails any inf in an output; the reference's -inf there is matched by the rule).
__global__ void dsa_attention_kernel(const __nv_bfloat16* q_nope, const __nv_bfloat16* q_pe,
                                     const __nv_bfloat16* ckv, const __nv_bfloat16* kpe,
                                     const int32_t* sparse_indices, float sm_scale,
                                     __nv_bfloat16* output, float* lse) {
  const int t = blockIdx.x / kHeads, h = blockIdx.x % kHeads;
  __shared__ float p[kTopk];
  __shared__ float scratch[kThreads / 32];
  const int32_t* slots = sparse_indices + (size_t)t * kTopk;
  const __nv_bfloat16* qn = q_nope + ((size_t)t * kHeads + h) * kCkv;
  const __nv_bfloat16* qp = q_pe + ((size_t)t * kHeads + h) * kKpe;

  float local_max = -INFINITY;
  for (int n = threadIdx.x; n < kTopk; n += kThreads) {
    const int32_t slot = slots[n];
    float logit = -INFINITY;
    if (slot >= 0) {
      const __nv_bfloat16* kc = ckv + (size_t)slot * kCkv;
      const __nv_bfloat16* kp = kpe + (size_t)slot * kKpe;
      float dot = 0.f;
      for (int d = 0; d < kCkv; ++d) dot += __bfloat162float(qn[d]) * __bfloat162float(kc[d]);
      for (int d = 0; d < kKpe; ++d) dot += __bfloat162float(qp[d]) * __bfloat162float(kp[d]);
      logit = dot * sm_scale;  // natural-log units, as the reference's logsumexp
    }
    p[n] = logit;
    local_max = fmaxf(local_max, logit);
  }
  const float m = block_reduce(local_max, scratch, true);
  float local_sum = 0.f;
  for (int n = threadIdx.x; n < kTopk; n += kThreads) {
    const float e = m == -INFINITY ? 0.f : expf(p[n] - m);  // padding: exp(-inf) = 0
    p[n] = e;
    local_sum += e;
  }
  const float sum = block_reduce(local_sum, scratch, false);  // also orders the writes to p
  for (int c = threadIdx.x; c < kCkv; c += kThreads) {
    float acc = 0.f;
    for (int n = 0; n < kTopk; ++n) {
      const int32_t slot = slots[n];
      if (slot >= 0) acc += p[n] * __bfloat162float(ckv[(size_t)slot * kCkv + c]);
    }
    output[((size_t)t * kHeads + h) * kCkv + c] = __float2bfloat16(sum > 0.f ? acc / sum : 0.f);
  }
  if (threadIdx.x == 0)
    lse[(size_t)t * kHeads + h] = sum > 0.f ? (m + logf(sum)) / logf(2.f) : -FLT_MAX;  // base 2
}

// >>> torch
#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

void kernel(torch::Tensor q_nope, torch::Tensor q_pe, torch::Tensor ckv_cache,
            torch::Tensor kpe_cache, torch::Tensor sparse_indices, double sm_scale,
            torch::Tensor output, torch::Tensor lse) {
  const int tokens = q_nope.size(0);
  if (tokens == 0) return;
  auto bf16 = [](const torch::Tensor& t) {
    return reinterpret_cast<const __nv_bfloat16*>(t.data_ptr<at::BFloat16>());
  };
  dsa_attention_kernel<<<tokens * kHeads, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      bf16(q_nope), bf16(q_pe), bf16(ckv_cache), bf16(kpe_cache), sparse_indices.data_ptr<int32_t>(),
      (float)sm_scale, reinterpret_cast<__nv_bfloat16*>(output.data_ptr<at::BFloat16>()),
      lse.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("kernel", &kernel); }
// <<< torch
// >>> tvm-ffi
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/c_env_api.h>
#include <tvm/ffi/function.h>

using tvm::ffi::TensorView;

void run(TensorView q_nope, TensorView q_pe, TensorView ckv_cache, TensorView kpe_cache,
         TensorView sparse_indices, double sm_scale, TensorView output, TensorView lse) {
  const int tokens = q_nope.size(0);
  if (tokens == 0) return;
  auto bf16 = [](const TensorView& t) { return static_cast<const __nv_bfloat16*>(t.data_ptr()); };
  DLDevice device = q_nope.device();
  auto stream = static_cast<cudaStream_t>(TVMFFIEnvGetStream(device.device_type, device.device_id));
  dsa_attention_kernel<<<tokens * kHeads, kThreads, 0, stream>>>(
      bf16(q_nope), bf16(q_pe), bf16(ckv_cache), bf16(kpe_cache),
      static_cast<const int32_t*>(sparse_indices.data_ptr()), (float)sm_scale,
      static_cast<__nv_bfloat16*>(output.data_ptr()), static_cast<float*>(lse.data_ptr()));
  cudaError_t err = cudaGetLastError();
  TVM_FFI_ICHECK(err == cudaSuccess) << "dsa_attention_kernel: " << cudaGetErrorString(err);
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(kernel, run);
// <<< tvm-ffi
