// LayerNorm fused with the quantization of its output for the Linear that reads it next (the
// QKV and FFN-in projections of an encoder, GPT-2's prompt). The LayerNorm arithmetic is
// layer_norm.cu's, so `out` is the same bits; each row is then still in registers, and its
// absolute maximum and quantized values cost no extra read.
//
// Two forms, as layer_norm.cu: rows of 16-byte pieces (the common case: the same arithmetic as
// layer_norm_vector_kernel, through warp_layer_norm.cuh), and rows of single elements otherwise
// (layer_norm_kernel's arithmetic). A prompt's LayerNorm is latency bound (128 rows of 768): the
// piece form loads gamma and beta before x and stores 16-byte pieces of out and 8- or 4-byte
// pieces of the quantized row; the element form took 15 us where the piece form of the plain
// LayerNorm takes 2.5 (H100 kernel trace, docs/results.md).
#include <cstdint>
#include <type_traits>

#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/quant_device.cuh"
#include "backend/cuda/warp_layer_norm.cuh"

namespace eaq::cuda {
namespace {

// The row's 1 / scale: the target's static one, or, for per-token scales, qmax / the row's
// absolute maximum (`amax` is this lane's share), whose scale lane 0 writes.
__device__ __forceinline__ float row_inverse(const QuantizeTarget& target, float amax,
                                             std::int64_t row) {
  if (target.scales == nullptr) return target.static_inverse;
  amax = warp_max(amax);
  const float qmax = quant_max(target.format);
  if (threadIdx.x % 32 == 0) target.scales[row] = amax / qmax;
  return amax > 0.0f ? qmax / amax : 0.0f;
}

template <class T, int kPerLane>
__global__ void layer_norm_quantize_kernel(const T* x, const T* residual, const float* gamma,
                                           const float* beta, float eps, T* out, std::int64_t rows,
                                           int cols, QuantizeTarget target) {
  allow_dependent_launch();  // as quantize.cu's rows_kernel: the GEMM after may load its weights
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
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane + i * 32;
    if (c < cols) {
      const T stored = from_f32<T>((v[i] - mean) * inv_std * gamma[c] + beta[c]);
      o[c] = stored;
      v[i] = to_f32(stored);  // quantize what the unfused path would read back
      amax = fmaxf(amax, fabsf(v[i]));
    }
  }
  const float inverse = row_inverse(target, amax, row);
  unsigned char* q = static_cast<unsigned char*>(target.values) + row * target.ld;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane + i * 32;
    if (c < cols) q[c] = quantize_value(target.format, v[i], inverse);
  }
  for (std::int64_t c = cols + lane; c < target.ld; c += 32) q[c] = 0;
}

// The piece form: lane l holds pieces l, l + 32, ... (kVec at most) of its warp's row.
template <class T, int kVec>
__global__ void layer_norm_quantize_vector_kernel(const T* x, const T* residual, const float* gamma,
                                                  const float* beta, float eps, T* out,
                                                  std::int64_t rows, int cols,
                                                  QuantizeTarget target) {
  allow_dependent_launch();  // as quantize.cu's rows_kernel: the GEMM after may load its weights
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  const std::int64_t row =
      static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const int vectors = cols / kPerVec;
  float g[kVec][kPerVec], b[kVec][kPerVec], v[kVec][kPerVec];
  load_layer_norm_params<kVec, kPerVec>(gamma, beta, vectors, g, b);
  warp_load_row<T, kVec, kPerVec>(x + row * cols, residual ? residual + row * cols : nullptr,
                                  vectors, v);
  const RowStats st = warp_row_stats<kVec, kPerVec>(v, vectors, cols, eps);
  auto* o = reinterpret_cast<uint4*>(out + row * cols);
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int vec = lane + 32 * i;
    if (vec >= vectors) break;
    alignas(16) T stored[kPerVec];
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) {
      stored[e] = from_f32<T>((v[i][e] - st.mean) * st.rstd * g[i][e] + b[i][e]);
      v[i][e] = to_f32(stored[e]);  // quantize what the unfused path would read back
      amax = fmaxf(amax, fabsf(v[i][e]));
    }
    o[vec] = *reinterpret_cast<const uint4*>(stored);
  }
  const float inverse = row_inverse(target, amax, row);
  // kPerVec quantized bytes per piece: one 8-byte (f16, bf16) or 4-byte (f32) store.
  using Bytes = std::conditional_t<kPerVec == 8, uint2, unsigned>;
  unsigned char* q = static_cast<unsigned char*>(target.values) + row * target.ld;
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    const int vec = lane + 32 * i;
    if (vec >= vectors) break;
    alignas(8) unsigned char bytes[kPerVec];
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) bytes[e] = quantize_value(target.format, v[i][e], inverse);
    reinterpret_cast<Bytes*>(q)[vec] = *reinterpret_cast<const Bytes*>(bytes);
  }
  for (std::int64_t c = cols + lane; c < target.ld; c += 32) q[c] = 0;
}

}  // namespace

bool launch_layer_norm_quantize(DType act, const void* x, const void* residual, const float* gamma,
                                const float* beta, float eps, void* out, std::int64_t rows,
                                std::int64_t cols, const QuantizeTarget& target,
                                cudaStream_t stream) {
  constexpr int kWarpsPerBlock = 4;
  const auto blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const unsigned threads = 32 * kWarpsPerBlock;
  // The conditions of layer_norm.cu's piece form (so that `out` is its bits), and quantized rows
  // whose pieces are aligned stores.
  const std::int64_t per_vec = act == DType::F32 ? 4 : 8;
  const std::int64_t vectors = cols / per_vec;
  const bool pieces = cols % per_vec == 0 && vectors <= 32 * 8 && aligned16(x) && aligned16(out) &&
                      (!residual || aligned16(residual)) && aligned16(gamma) && aligned16(beta) &&
                      target.ld % per_vec == 0 &&
                      reinterpret_cast<std::uintptr_t>(target.values) % per_vec == 0;
  if (!pieces && cols > 32 * 32) return false;
  if (rows == 0) return true;
  EAQ_DISPATCH_FLOAT(act, {
    const auto launch = [&](auto kernel) {
      kernel<<<blocks, threads, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(residual), gamma, beta, eps,
          static_cast<T*>(out), rows, static_cast<int>(cols), target);
    };
    if (pieces) {
      if (vectors <= 32)
        launch(layer_norm_quantize_vector_kernel<T, 1>);
      else if (vectors <= 64)
        launch(layer_norm_quantize_vector_kernel<T, 2>);
      else if (vectors <= 128)
        launch(layer_norm_quantize_vector_kernel<T, 4>);
      else
        launch(layer_norm_quantize_vector_kernel<T, 8>);
    } else if (cols <= 256) {
      launch(layer_norm_quantize_kernel<T, 8>);
    } else if (cols <= 512) {
      launch(layer_norm_quantize_kernel<T, 16>);
    } else {
      launch(layer_norm_quantize_kernel<T, 32>);
    }
  });
  return true;
}

}  // namespace eaq::cuda
