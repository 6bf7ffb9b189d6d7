// LayerNorm(x + residual), one warp per row, f32 statistics; reference: cpu_kernels.cpp
// layer_norm_f32. The row is read into registers once (up to kMaxPerLane values per lane), so
// out may alias x or residual.
#include <cstdint>

#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/kernels.hpp"

namespace eaq::cuda {
namespace {

constexpr int kMaxPerLane = 32;  // rows up to 1024 columns stay in registers

template <class T, int kPerLane>
__global__ void layer_norm_kernel(const T* x, const T* residual, const float* gamma,
                                  const float* beta, float eps, T* out, std::int64_t rows,
                                  int cols) {
  const std::int64_t row =
      static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* xr = x + row * cols;
  const T* rr = residual ? residual + row * cols : nullptr;
  float v[kPerLane];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane + i * 32;
    v[i] = 0.0f;
    if (c < cols) {
      v[i] = to_f32(xr[c]) + (rr ? to_f32(rr[c]) : 0.0f);
      sum += v[i];
    }
  }
  const float mean = warp_sum(sum) / static_cast<float>(cols);
  float sq = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane + i * 32;
    if (c < cols) sq += (v[i] - mean) * (v[i] - mean);
  }
  const float inv_std = rsqrtf(warp_sum(sq) / static_cast<float>(cols) + eps);
  T* o = out + row * cols;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane + i * 32;
    if (c < cols) o[c] = from_f32<T>((v[i] - mean) * inv_std * gamma[c] + beta[c]);
  }
}

// The common case: rows of 16-byte vectors (cols a multiple of 8 halves or 4 floats, aligned
// rows, gamma and beta). Each lane loads whole vectors, up to kVec per row, and keeps them in
// registers. gamma and beta are loaded first, so that their latency overlaps x's instead of
// following the two reductions (a prompt's LayerNorm is latency bound: 128 rows of 768).
template <class T, int kVec>
__global__ void layer_norm_vector_kernel(const T* x, const T* residual, const float* gamma,
                                         const float* beta, float eps, T* out, std::int64_t rows,
                                         int cols) {
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  constexpr int kFloat4s = kPerVec / 4;  // float4 loads of gamma (and of beta) per vector
  const std::int64_t row =
      static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int vectors = cols / kPerVec;
  float4 g[kVec][kFloat4s], bt[kVec][kFloat4s];
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int vec = lane + i * 32;
    if (vec < vectors) {
#pragma unroll
      for (int f = 0; f < kFloat4s; ++f) {
        g[i][f] = reinterpret_cast<const float4*>(gamma)[vec * kFloat4s + f];
        bt[i][f] = reinterpret_cast<const float4*>(beta)[vec * kFloat4s + f];
      }
    }
  }
  const uint4* xr = reinterpret_cast<const uint4*>(x + row * cols);
  const uint4* rr = residual ? reinterpret_cast<const uint4*>(residual + row * cols) : nullptr;
  float v[kVec][kPerVec];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int vec = lane + i * 32;
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) v[i][e] = 0.0f;
    if (vec < vectors) {
      uint4 a = xr[vec];
      const T* av = reinterpret_cast<const T*>(&a);
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) v[i][e] = to_f32(av[e]);
      if (rr) {
        uint4 b = rr[vec];
        const T* bv = reinterpret_cast<const T*>(&b);
#pragma unroll
        for (int e = 0; e < kPerVec; ++e) v[i][e] += to_f32(bv[e]);
      }
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) sum += v[i][e];
    }
  }
  const float mean = warp_sum(sum) / static_cast<float>(cols);
  float sq = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    if (lane + i * 32 < vectors) {
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) sq += (v[i][e] - mean) * (v[i][e] - mean);
    }
  }
  const float inv_std = rsqrtf(warp_sum(sq) / static_cast<float>(cols) + eps);
  uint4* o = reinterpret_cast<uint4*>(out + row * cols);
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int vec = lane + i * 32;
    if (vec >= vectors) continue;
    uint4 packed;
    T* pv = reinterpret_cast<T*>(&packed);
    const float* gi = reinterpret_cast<const float*>(g[i]);
    const float* bi = reinterpret_cast<const float*>(bt[i]);
#pragma unroll
    for (int e = 0; e < kPerVec; ++e)
      pv[e] = from_f32<T>((v[i][e] - mean) * inv_std * gi[e] + bi[e]);
    o[vec] = packed;
  }
}

// Wider rows: a block per row, two passes over global memory.
template <class T>
__global__ void layer_norm_wide_kernel(const T* x, const T* residual, const float* gamma,
                                       const float* beta, float eps, T* out, int cols) {
  __shared__ float partial[32];
  const std::int64_t row = blockIdx.x;
  const T* xr = x + row * cols;
  const T* rr = residual ? residual + row * cols : nullptr;
  const auto block_sum = [&](float value) {
    value = warp_sum(value);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = value;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += partial[w];
    __syncthreads();
    return total;
  };
  float sum = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x)
    sum += to_f32(xr[c]) + (rr ? to_f32(rr[c]) : 0.0f);
  const float mean = block_sum(sum) / static_cast<float>(cols);
  float sq = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = to_f32(xr[c]) + (rr ? to_f32(rr[c]) : 0.0f) - mean;
    sq += d * d;
  }
  const float inv_std = rsqrtf(block_sum(sq) / static_cast<float>(cols) + eps);
  // Every thread has finished reading its inputs (block_sum synchronized), so writing in place
  // is safe.
  T* o = out + row * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = to_f32(xr[c]) + (rr ? to_f32(rr[c]) : 0.0f) - mean;
    o[c] = from_f32<T>(d * inv_std * gamma[c] + beta[c]);
  }
}

}  // namespace

void launch_layer_norm(DType act, const void* x, const void* residual, const float* gamma,
                       const float* beta, float eps, void* out, std::int64_t rows,
                       std::int64_t cols, cudaStream_t stream) {
  if (rows == 0) return;
  const std::size_t element = act == DType::F32 ? 4 : 2;
  const std::int64_t per_vec = 16 / static_cast<std::int64_t>(element);
  if (cols % per_vec == 0 && cols / per_vec <= 32 * 8 && aligned16(x) && aligned16(out) &&
      (!residual || aligned16(residual)) && aligned16(gamma) && aligned16(beta)) {
    constexpr int kWarpsPerBlock = 4;
    const auto blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    const std::int64_t vectors = cols / per_vec;
    EAQ_DISPATCH_FLOAT(act, {
      const auto* xt = static_cast<const T*>(x);
      const auto* rt = static_cast<const T*>(residual);
      auto* ot = static_cast<T*>(out);
      const int c = static_cast<int>(cols);
      const unsigned threads = 32 * kWarpsPerBlock;
      if (vectors <= 32)
        layer_norm_vector_kernel<T, 1>
            <<<blocks, threads, 0, stream>>>(xt, rt, gamma, beta, eps, ot, rows, c);
      else if (vectors <= 64)
        layer_norm_vector_kernel<T, 2>
            <<<blocks, threads, 0, stream>>>(xt, rt, gamma, beta, eps, ot, rows, c);
      else if (vectors <= 128)
        layer_norm_vector_kernel<T, 4>
            <<<blocks, threads, 0, stream>>>(xt, rt, gamma, beta, eps, ot, rows, c);
      else
        layer_norm_vector_kernel<T, 8>
            <<<blocks, threads, 0, stream>>>(xt, rt, gamma, beta, eps, ot, rows, c);
    });
    return;
  }
  if (cols <= 32 * kMaxPerLane) {
    constexpr int kWarpsPerBlock = 4;
    const auto blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    EAQ_DISPATCH_FLOAT(act, {
      const auto* xt = static_cast<const T*>(x);
      const auto* rt = static_cast<const T*>(residual);
      auto* ot = static_cast<T*>(out);
      const int c = static_cast<int>(cols);
      if (cols <= 256) {
        layer_norm_kernel<T, 8>
            <<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(xt, rt, gamma, beta, eps, ot, rows, c);
      } else if (cols <= 512) {
        layer_norm_kernel<T, 16>
            <<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(xt, rt, gamma, beta, eps, ot, rows, c);
      } else {
        layer_norm_kernel<T, 32>
            <<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(xt, rt, gamma, beta, eps, ot, rows, c);
      }
    });
  } else {
    // The wide kernel rereads x: in-place use is safe because reads finish before writes in
    // each row (one block per row).
    EAQ_DISPATCH_FLOAT(
        act, layer_norm_wide_kernel<T><<<static_cast<unsigned>(rows), 256, 0, stream>>>(
                 static_cast<const T*>(x), static_cast<const T*>(residual), gamma, beta, eps,
                 static_cast<T*>(out), static_cast<int>(cols)));
  }
}

}  // namespace eaq::cuda
