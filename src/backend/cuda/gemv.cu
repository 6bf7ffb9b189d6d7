// Linear layers on a few rows (decode steps, classification heads): y[m, n] = act(x[m] . W[n] +
// bias[n]) with one warp per output feature and 16-byte loads along K. At these sizes the layer is
// a read of W, which cuBLASLt's tiles spread over too few multiprocessors. Reference:
// cpu_kernels.cpp gemm_f32.
#include <cstdint>

#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/kernels.hpp"

namespace eaq::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr std::int64_t kMaxRows = 8;

__device__ __forceinline__ float activate(float v, Activation activation) {
  switch (activation) {
    case Activation::Gelu:
      return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case Activation::GeluTanh:
      return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    case Activation::Relu:
      return fmaxf(v, 0.0f);
    case Activation::Tanh:
      return tanhf(v);
    case Activation::None:
      return v;
  }
  return v;
}

template <class T, int kRows>
__global__ void gemv_kernel(const T* x, const T* w, const T* bias, T* y, std::int64_t n,
                            std::int64_t k, Activation activation) {
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  const std::int64_t feature =
      static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (feature >= n) return;
  const uint4* w_row = reinterpret_cast<const uint4*>(w + feature * k);
  const std::int64_t vectors = k / kPerVec;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
  for (std::int64_t v = lane; v < vectors; v += 32) {
    uint4 wv = w_row[v];
    const T* wt = reinterpret_cast<const T*>(&wv);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      uint4 xv = reinterpret_cast<const uint4*>(x + r * k)[v];
      const T* xt = reinterpret_cast<const T*>(&xv);
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) acc[r] += to_f32(xt[e]) * to_f32(wt[e]);
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = warp_sum(acc[r]);
    if (lane == 0) {
      const float biased = sum + (bias ? to_f32(bias[feature]) : 0.0f);
      y[r * n + feature] = from_f32<T>(activate(biased, activation));
    }
  }
}

template <class T, int kRows>
void launch_rows(const void* x, const void* w, const void* bias, void* y, std::int64_t n,
                 std::int64_t k, Activation activation, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((n + kWarpsPerBlock - 1) / kWarpsPerBlock);
  gemv_kernel<T, kRows><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias),
      static_cast<T*>(y), n, k, activation);
}

bool aligned16(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

}  // namespace

bool gemv_eligible(DType act, std::int64_t m, std::int64_t k, const void* x, const void* w) {
  const std::int64_t per_vec = act == DType::F32 ? 4 : 8;
  return m >= 1 && m <= kMaxRows && k % per_vec == 0 && aligned16(x) && aligned16(w);
}

void launch_gemv(DType act, const void* x, const void* w, const void* bias, void* y, std::int64_t m,
                 std::int64_t n, std::int64_t k, Activation activation, cudaStream_t stream) {
  // Up to four rows per launch (the accumulators stay in registers); eight rows take two.
  const std::size_t element = act == DType::F32 ? 4 : 2;
  for (std::int64_t first = 0; first < m; first += 4) {
    const std::int64_t rows = m - first < 4 ? m - first : 4;
    const void* xr = static_cast<const char*>(x) + first * k * element;
    void* yr = static_cast<char*>(y) + first * n * element;
    EAQ_DISPATCH_FLOAT(act, {
      switch (rows) {
        case 1:
          launch_rows<T, 1>(xr, w, bias, yr, n, k, activation, stream);
          break;
        case 2:
          launch_rows<T, 2>(xr, w, bias, yr, n, k, activation, stream);
          break;
        case 3:
          launch_rows<T, 3>(xr, w, bias, yr, n, k, activation, stream);
          break;
        default:
          launch_rows<T, 4>(xr, w, bias, yr, n, k, activation, stream);
          break;
      }
    });
  }
}

}  // namespace eaq::cuda
