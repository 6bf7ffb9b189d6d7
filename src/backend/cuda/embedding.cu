// Token + position + token-type embedding sum; reference: cpu_backend.cpp CpuBackend::embed.
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/kernels.hpp"

namespace eaq::cuda {
namespace {

template <class T>
__global__ void embed_kernel(const std::int32_t* ids, const T* word, const std::int32_t* pos_ids,
                             const T* pos, const std::int32_t* type_ids, const T* type, T* out,
                             std::int64_t hidden) {
  const std::int64_t t = blockIdx.x;
  const T* w = word + static_cast<std::int64_t>(ids[t]) * hidden;
  const T* p = pos_ids ? pos + static_cast<std::int64_t>(pos_ids[t]) * hidden : nullptr;
  const T* y = type_ids ? type + static_cast<std::int64_t>(type_ids[t]) * hidden : nullptr;
  for (std::int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    float v = to_f32(w[c]);
    if (p) v += to_f32(p[c]);
    if (y) v += to_f32(y[c]);
    out[t * hidden + c] = from_f32<T>(v);
  }
}

}  // namespace

void launch_embed(DType act, const std::int32_t* ids, const void* word,
                  const std::int32_t* position_ids, const void* position_table,
                  const std::int32_t* type_ids, const void* type_table, void* out,
                  std::int64_t tokens, std::int64_t hidden, cudaStream_t stream) {
  if (tokens == 0) return;
  const int threads = hidden >= 256 ? 256 : 128;
  EAQ_DISPATCH_FLOAT(act, embed_kernel<T><<<static_cast<unsigned>(tokens), threads, 0, stream>>>(
                              ids, static_cast<const T*>(word), position_ids,
                              static_cast<const T*>(position_table), type_ids,
                              static_cast<const T*>(type_table), static_cast<T*>(out), hidden));
}

}  // namespace eaq::cuda
