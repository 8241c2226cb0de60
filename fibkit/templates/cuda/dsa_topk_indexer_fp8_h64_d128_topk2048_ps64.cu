//! `fibkit init --language cuda dsa_indexer`: the kernel, then one block per binding between
//! whole-line markers; init writes the kernel and the chosen binding.
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdint.h>

constexpr int kHeads = 64;
constexpr int kDim = 128;
constexpr int kPage = 64;                      // tokens per page
constexpr int kPageBytes = kPage * (kDim + 4);  // 64 x 128 fp8 values, then 64 float32 scales
constexpr int kTopk = 2048;
constexpr int kThreads = 256;

__device__ __forceinline__ float fp8_to_float(uint8_t bits) {
  __nv_fp8_e4m3 x;
  x.__x = bits;
  return static_cast<float>(x);
}

// One block per row. A row of at most 2048 tokens returns all its slots (the output is judged
// as a set). A longer row scores every token into shared memory, score = sum over heads of
// weight * relu(q . k), k dequantized with its token's scale, then gives each token its rank
// (higher score first, ties to the earlier position) by counting, and writes the slots of
// ranks 0..2047. Slots past the row's tokens are -1.
__global__ void dsa_indexer_kernel(const uint8_t* q, const uint8_t* k_cache, const float* weights,
                                   const int32_t* seq_lens, const int32_t* block_table,
                                   int max_pages, int num_pages, int32_t* topk) {
  extern __shared__ float scores[];  // [max_pages * 64]
  __shared__ uint8_t q_s[kHeads * kDim];
  __shared__ float w_s[kHeads];
  const int row = blockIdx.x;
  const int n = min(seq_lens[row], max_pages * kPage);  // tokens past the table do not exist
  const int32_t* table = block_table + (size_t)row * max_pages;
  int32_t* out = topk + (size_t)row * kTopk;
  // Pages clamped into the cache, as the reference clamps them.
  auto page_of = [&](int pos) { return min(max(table[pos / kPage], 0), num_pages - 1); };
  auto slot_of = [&](int pos) { return page_of(pos) * kPage + pos % kPage; };

  if (n <= kTopk) {
    for (int i = threadIdx.x; i < kTopk; i += kThreads) out[i] = i < n ? slot_of(i) : -1;
    return;
  }
  for (int i = threadIdx.x; i < kHeads * kDim; i += kThreads) q_s[i] = q[(size_t)row * kHeads * kDim + i];
  for (int i = threadIdx.x; i < kHeads; i += kThreads) w_s[i] = weights[(size_t)row * kHeads + i];
  __syncthreads();
  for (int pos = threadIdx.x; pos < n; pos += kThreads) {
    const uint8_t* page = k_cache + (size_t)page_of(pos) * kPageBytes;
    const uint8_t* key = page + (pos % kPage) * kDim;
    const float scale = reinterpret_cast<const float*>(page + kPage * kDim)[pos % kPage];
    float key_f[kDim];
#pragma unroll
    for (int d = 0; d < kDim; ++d) key_f[d] = fp8_to_float(key[d]) * scale;
    float score = 0.f;
    for (int hd = 0; hd < kHeads; ++hd) {
      float dot = 0.f;
#pragma unroll
      for (int d = 0; d < kDim; ++d) dot += fp8_to_float(q_s[hd * kDim + d]) * key_f[d];
      score += w_s[hd] * fmaxf(dot, 0.f);
    }
    scores[pos] = score;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const float s = scores[i];
    int rank = 0;
    for (int j = 0; j < n && rank < kTopk; ++j) {
      const float o = scores[j];
      rank += (o > s) || (o == s && j < i);
    }
    if (rank < kTopk) out[rank] = slot_of(i);
  }
}

// The shared memory the scores take, checked against the device's limit.
static size_t scores_bytes(int max_pages, int* error) {
  int device = 0, limit = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  const size_t bytes = (size_t)max_pages * kPage * sizeof(float);
  const size_t static_bytes = kHeads * kDim + kHeads * sizeof(float);
  *error = bytes + static_bytes > (size_t)limit;
  if (!*error)
    cudaFuncSetAttribute(dsa_indexer_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  return bytes;
}

// >>> torch
#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

void kernel(torch::Tensor q_index_fp8, torch::Tensor k_index_cache_fp8, torch::Tensor weights,
            torch::Tensor seq_lens, torch::Tensor block_table, torch::Tensor topk_indices) {
  const int batch = block_table.size(0), max_pages = block_table.size(1);
  if (batch == 0) return;
  int too_long = 0;
  const size_t bytes = scores_bytes(max_pages, &too_long);
  TORCH_CHECK(!too_long, "dsa indexer template: ", max_pages, " pages per row do not fit in shared memory");
  dsa_indexer_kernel<<<batch, kThreads, bytes, c10::cuda::getCurrentCUDAStream()>>>(
      static_cast<const uint8_t*>(q_index_fp8.data_ptr()),
      static_cast<const uint8_t*>(k_index_cache_fp8.data_ptr()), weights.data_ptr<float>(),
      seq_lens.data_ptr<int32_t>(), block_table.data_ptr<int32_t>(), max_pages,
      (int)k_index_cache_fp8.size(0), topk_indices.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("kernel", &kernel); }
// <<< torch
// >>> tvm-ffi
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/c_env_api.h>
#include <tvm/ffi/function.h>

using tvm::ffi::TensorView;

void run(TensorView q_index_fp8, TensorView k_index_cache_fp8, TensorView weights,
         TensorView seq_lens, TensorView block_table, TensorView topk_indices) {
  const int batch = block_table.size(0), max_pages = block_table.size(1);
  if (batch == 0) return;
  int too_long = 0;
  const size_t bytes = scores_bytes(max_pages, &too_long);
  TVM_FFI_ICHECK(!too_long) << "dsa indexer template: " << max_pages
                            << " pages per row do not fit in shared memory";
  DLDevice device = block_table.device();
  auto stream = static_cast<cudaStream_t>(TVMFFIEnvGetStream(device.device_type, device.device_id));
  dsa_indexer_kernel<<<batch, kThreads, bytes, stream>>>(
      static_cast<const uint8_t*>(q_index_fp8.data_ptr()),
      static_cast<const uint8_t*>(k_index_cache_fp8.data_ptr()),
      static_cast<const float*>(weights.data_ptr()), static_cast<const int32_t*>(seq_lens.data_ptr()),
      static_cast<const int32_t*>(block_table.data_ptr()), max_pages,
      (int)k_index_cache_fp8.size(0), static_cast<int32_t*>(topk_indices.data_ptr()));
  cudaError_t err = cudaGetLastError();
  TVM_FFI_ICHECK(err == cudaSuccess) << "dsa_indexer_kernel: " << cudaGetErrorString(err);
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(kernel, run);
// <<< tvm-ffi
