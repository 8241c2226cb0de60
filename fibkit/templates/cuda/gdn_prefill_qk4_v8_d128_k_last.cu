//! `fibkit init --language cuda gdn_prefill`: the kernel, then one block per binding between
//! whole-line markers; init writes the kernel and the chosen binding.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

constexpr int kHeads = 8;    // v heads
constexpr int kQkHeads = 4;  // q/k heads: v head h reads q/k head h / 2
constexpr int kDim = 128;    // head size (K = V = 128)

// One block per (sequence, v head), one thread per row j of that head's k-last state, kept in
// registers while the block walks the sequence's tokens in order: decay the row, predict v
// from k, move the row toward v (delta rule), read out with q. An empty sequence's new state
// is zero, as in the contest's reference. k and q of each token are staged in shared memory.
__global__ void gdn_prefill_kernel(const __nv_bfloat16* q, const __nv_bfloat16* k,
                                   const __nv_bfloat16* v, const float* state,  // may be null
                                   const float* A_log, const __nv_bfloat16* a,
                                   const float* dt_bias, const __nv_bfloat16* b,
                                   const int64_t* cu_seqlens, float scale,
                                   __nv_bfloat16* output, float* new_state) {
  const int seq = blockIdx.x / kHeads, h = blockIdx.x % kHeads, j = threadIdx.x;
  const int hq = h / (kHeads / kQkHeads);
  const size_t row = ((size_t)(seq * kHeads + h) * kDim + j) * kDim;
  __shared__ float k_s[kDim], q_s[kDim];

  float s[kDim];
#pragma unroll
  for (int i = 0; i < kDim; ++i) s[i] = state ? state[row + i] : 0.f;

  const float decay_rate = expf(A_log[h]);
  for (int64_t t = cu_seqlens[seq]; t < cu_seqlens[seq + 1]; ++t) {
    __syncthreads();  // the previous token's k and q are no longer read
    k_s[j] = __bfloat162float(k[(t * kQkHeads + hq) * kDim + j]);
    q_s[j] = __bfloat162float(q[(t * kQkHeads + hq) * kDim + j]);
    __syncthreads();
    const float x = __bfloat162float(a[t * kHeads + h]) + dt_bias[h];
    const float softplus = x > 20.f ? x : log1pf(expf(x));  // torch's threshold
    const float g = expf(-decay_rate * softplus);
    const float beta = 1.f / (1.f + expf(-__bfloat162float(b[t * kHeads + h])));
    float old_v = 0.f;
#pragma unroll
    for (int i = 0; i < kDim; ++i) {
      s[i] *= g;
      old_v += s[i] * k_s[i];
    }
    const float delta = beta * (__bfloat162float(v[(t * kHeads + h) * kDim + j]) - old_v);
    float out = 0.f;
#pragma unroll
    for (int i = 0; i < kDim; ++i) {
      s[i] += delta * k_s[i];
      out += s[i] * q_s[i];
    }
    output[(t * kHeads + h) * kDim + j] = __float2bfloat16(out * scale);
  }
  const bool empty = cu_seqlens[seq] == cu_seqlens[seq + 1];
#pragma unroll
  for (int i = 0; i < kDim; ++i) new_state[row + i] = empty ? 0.f : s[i];
}

static float resolve_scale(double scale) {
  return scale == 0.0 ? 1.f / sqrtf((float)kDim) : (float)scale;
}

// >>> torch
#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

void kernel(torch::Tensor q, torch::Tensor k, torch::Tensor v, c10::optional<torch::Tensor> state,
            torch::Tensor A_log, torch::Tensor a, torch::Tensor dt_bias, torch::Tensor b,
            torch::Tensor cu_seqlens, double scale, torch::Tensor output, torch::Tensor new_state) {
  const int num_seqs = cu_seqlens.size(0) - 1;
  if (num_seqs <= 0) return;
  auto bf16 = [](const torch::Tensor& t) {
    return reinterpret_cast<const __nv_bfloat16*>(t.data_ptr<at::BFloat16>());
  };
  const float* s = state.has_value() ? state->data_ptr<float>() : nullptr;
  gdn_prefill_kernel<<<num_seqs * kHeads, kDim, 0, c10::cuda::getCurrentCUDAStream()>>>(
      bf16(q), bf16(k), bf16(v), s, A_log.data_ptr<float>(), bf16(a), dt_bias.data_ptr<float>(),
      bf16(b), cu_seqlens.data_ptr<int64_t>(), resolve_scale(scale),
      reinterpret_cast<__nv_bfloat16*>(output.data_ptr<at::BFloat16>()), new_state.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("kernel", &kernel); }
// <<< torch
// >>> tvm-ffi
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/c_env_api.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/optional.h>

using tvm::ffi::Optional;
using tvm::ffi::TensorView;

void run(TensorView q, TensorView k, TensorView v, Optional<TensorView> state, TensorView A_log,
         TensorView a, TensorView dt_bias, TensorView b, TensorView cu_seqlens, double scale,
         TensorView output, TensorView new_state) {
  const int num_seqs = cu_seqlens.size(0) - 1;
  if (num_seqs <= 0) return;
  auto bf16 = [](const TensorView& t) { return static_cast<const __nv_bfloat16*>(t.data_ptr()); };
  const float* s = state.has_value() ? static_cast<const float*>(state.value().data_ptr()) : nullptr;
  DLDevice device = q.device();
  auto stream = static_cast<cudaStream_t>(TVMFFIEnvGetStream(device.device_type, device.device_id));
  gdn_prefill_kernel<<<num_seqs * kHeads, kDim, 0, stream>>>(
      bf16(q), bf16(k), bf16(v), s, static_cast<const float*>(A_log.data_ptr()), bf16(a),
      static_cast<const float*>(dt_bias.data_ptr()), bf16(b),
      static_cast<const int64_t*>(cu_seqlens.data_ptr()), resolve_scale(scale),
      static_cast<__nv_bfloat16*>(output.data_ptr()), static_cast<float*>(new_state.data_ptr()));
  cudaError_t err = cudaGetLastError();
  TVM_FFI_ICHECK(err == cudaSuccess) << "gdn_prefill_kernel: " << cudaGetErrorString(err);
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(kernel, run);
// <<< tvm-ffi
