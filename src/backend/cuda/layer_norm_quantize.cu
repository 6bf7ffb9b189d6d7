// LayerNorm fused with the quantization of its output for the Linear that reads it next (the
// QKV and FFN-in projections of a post-LN encoder). The LayerNorm arithmetic is layer_norm.cu's
// one-warp-per-row kernel, statement for statement, so `out` is the same; each row is then still
// in registers, and its absolute maximum and quantized values cost no extra read.
#include "backend/cuda/quant_device.cuh"

namespace eaq::cuda {
namespace {

template <class T, int kPerLane>
__global__ void layer_norm_quantize_kernel(const T* x, const T* residual, const float* gamma,
                                           const float* beta, float eps, T* out, std::int64_t rows,
                                           int cols, QuantizeTarget target) {
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
  float inverse = target.static_inverse;
  if (target.scales != nullptr) {
    amax = warp_max(amax);
    const float qmax = quant_max(target.format);
    inverse = amax > 0.0f ? qmax / amax : 0.0f;
    if (lane == 0) target.scales[row] = amax / qmax;
  }
  unsigned char* q = static_cast<unsigned char*>(target.values) + row * target.ld;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane + i * 32;
    if (c < cols) q[c] = quantize_value(target.format, v[i], inverse);
  }
  for (std::int64_t c = cols + lane; c < target.ld; c += 32) q[c] = 0;
}

}  // namespace

bool launch_layer_norm_quantize(DType act, const void* x, const void* residual, const float* gamma,
                                const float* beta, float eps, void* out, std::int64_t rows,
                                std::int64_t cols, const QuantizeTarget& target,
                                cudaStream_t stream) {
  if (cols > 32 * 32) return false;
  if (rows == 0) return true;
  constexpr int kWarpsPerBlock = 4;
  const auto blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  EAQ_DISPATCH_FLOAT(act, {
    const auto* xt = static_cast<const T*>(x);
    const auto* rt = static_cast<const T*>(residual);
    auto* ot = static_cast<T*>(out);
    const int c = static_cast<int>(cols);
    if (cols <= 256) {
      layer_norm_quantize_kernel<T, 8><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(
          xt, rt, gamma, beta, eps, ot, rows, c, target);
    } else if (cols <= 512) {
      layer_norm_quantize_kernel<T, 16><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(
          xt, rt, gamma, beta, eps, ot, rows, c, target);
    } else {
      layer_norm_quantize_kernel<T, 32><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(
          xt, rt, gamma, beta, eps, ot, rows, c, target);
    }
  });
  return true;
}

}  // namespace eaq::cuda
