// Row-wise quantization kernels: activations per token (or with a static scale), the
// dequantization epilogue of the int8 / fp8-fallback GEMMs (optionally quantizing its output for
// the next Linear in the same pass), activation + quantization after cuBLASLt's fp8 GEMM, and
// int8-wo weight dequantization. References: src/quant/activation_quant.cpp and
// cpu_quantized_linear.cpp.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/quant_device.cuh"

namespace eaq::cuda {
namespace {

// Sources of row values: load8(row, col, vector, v) fills v with the values of columns
// [col, col + 8) of `row` (0 beyond the row's end). Values may be recomputed: they must be
// deterministic.
template <class T>
struct InputSource {
  const T* x;
  std::int64_t cols;
  __device__ void load8(std::int64_t row, std::int64_t col, bool vector, float (&v)[8]) const {
    cuda::load8(x + row * cols + col, vector, static_cast<int>(cols - col), v);
  }
};

template <class T>
struct ActivationSource {
  const T* y;
  std::int64_t cols;
  Activation activation;
  __device__ void load8(std::int64_t row, std::int64_t col, bool vector, float (&v)[8]) const {
    cuda::load8(y + row * cols + col, vector, static_cast<int>(cols - col), v);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = apply_activation(v[i], activation);
  }
};

template <class Acc>
struct DequantizeSource {
  const Acc* acc;
  std::int64_t ld_acc, cols;
  const float* row_scales;
  float static_row_scale;
  const float* col_scales;
  const float* bias;
  Activation activation;
  __device__ void load8(std::int64_t row, std::int64_t col, bool vector, float (&v)[8]) const {
    const int valid = static_cast<int>(cols - col);
    cuda::load8(acc + row * ld_acc + col, vector, valid, v);
    float cs[8], b[8];
    cuda::load8(col_scales + col, vector, valid, cs);
    if (bias != nullptr) {
      cuda::load8(bias + col, vector, valid, b);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) b[i] = 0.0f;
    }
    const float rs = row_scales != nullptr ? row_scales[row] : static_row_scale;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      // One explicit fma, as quant_device.cuh dequantize().
      v[i] = i < valid ? apply_activation(__fmaf_rn(v[i], rs * cs[i], b[i]), activation) : 0.0f;
    }
  }
};

// One block per row. Pass 1 (when y is written or scales are per row) computes the values,
// stores them to y and takes the absolute maximum of the stored values; pass 2 quantizes them
// (recomputed, and rounded to T exactly as stored) into the target, zero-padding to target.ld.
template <class T, class Source>
__global__ void rows_kernel(Source source, std::int64_t cols, bool vector, T* y,
                            QuantizeTarget target, bool quantize) {
  // The next kernel (eaq's int8 GEMM, under dependent launch) may start now and load its weights
  // while this one runs; it waits for this one to end before it reads what this one writes.
  allow_dependent_launch();
  __shared__ float shared[32];
  const std::int64_t row = blockIdx.x;
  const std::int64_t chunks = (cols + 7) / 8;
  const bool dynamic = quantize && target.scales != nullptr;
  float amax = 0.0f;
  if (y != nullptr || dynamic) {
    for (std::int64_t ch = threadIdx.x; ch < chunks; ch += blockDim.x) {
      float v[8];
      source.load8(row, ch * 8, vector, v);
      round_to<T>(v);
#pragma unroll
      for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(v[i]));
      if (y != nullptr) store8(y + row * cols + ch * 8, vector, static_cast<int>(cols - ch * 8), v);
    }
  }
  if (!quantize) return;
  float inverse = target.static_inverse;
  if (dynamic) {
    amax = block_max(amax, shared);
    const float qmax = quant_max(target.format);
    inverse = amax > 0.0f ? qmax / amax : 0.0f;
    if (threadIdx.x == 0) target.scales[row] = amax / qmax;
  }
  unsigned char* q = static_cast<unsigned char*>(target.values) + row * target.ld;
  const std::int64_t q_chunks = target.ld / 8;
  for (std::int64_t ch = threadIdx.x; ch < q_chunks; ch += blockDim.x) {
    uint2 packed = make_uint2(0u, 0u);
    if (ch < chunks) {
      float v[8];
      source.load8(row, ch * 8, vector, v);
      round_to<T>(v);
      unsigned char* bytes = reinterpret_cast<unsigned char*>(&packed);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        bytes[i] = ch * 8 + i < cols ? quantize_value(target.format, v[i], inverse) : 0;
      }
    }
    *reinterpret_cast<uint2*>(q + ch * 8) = packed;
  }
}

unsigned threads_for(std::int64_t chunks) {
  const std::int64_t warps = (chunks + 31) / 32;
  return static_cast<unsigned>(std::min<std::int64_t>(8, std::max<std::int64_t>(1, warps)) * 32);
}

template <class T, class Source>
void launch_rows(Source source, std::int64_t rows, std::int64_t cols, bool vector, T* y,
                 const QuantizeTarget* target, cudaStream_t stream) {
  if (rows == 0) return;
  const std::int64_t width = target != nullptr ? std::max(cols, target->ld) : cols;
  rows_kernel<T, Source><<<static_cast<unsigned>(rows), threads_for((width + 7) / 8), 0, stream>>>(
      source, cols, vector, y, target != nullptr ? *target : QuantizeTarget{}, target != nullptr);
}

template <class T>
__global__ void dequantize_weights_kernel(const std::int8_t* q, const float* scales, T* w,
                                          std::int64_t n, std::int64_t k) {
  const std::int64_t count = n * k;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    w[i] = from_f32<T>(static_cast<float>(q[i]) * scales[i / k]);
  }
}

}  // namespace

void launch_quantize_rows(DType act, const void* x, std::int64_t rows, std::int64_t cols,
                          const QuantizeTarget& target, cudaStream_t stream) {
  const bool vector = cols % 8 == 0 && aligned16(x);
  EAQ_DISPATCH_FLOAT(act, launch_rows<T>(InputSource<T>{static_cast<const T*>(x), cols}, rows, cols,
                                         vector, static_cast<T*>(nullptr), &target, stream));
}

void launch_dequantize(DType act, const DequantizeArgs& a, cudaStream_t stream) {
  const bool vector = a.cols % 8 == 0 && a.ld_acc % 8 == 0 && aligned16(a.acc) &&
                      aligned16(a.col_scales) && (a.bias == nullptr || aligned16(a.bias)) &&
                      (a.y == nullptr || aligned16(a.y));
  EAQ_DISPATCH_FLOAT(act, {
    T* y = static_cast<T*>(a.y);
    if (a.acc_dtype == DType::I32) {
      const DequantizeSource<int> source{static_cast<const int*>(a.acc),
                                         a.ld_acc,
                                         a.cols,
                                         a.row_scales,
                                         a.static_row_scale,
                                         a.col_scales,
                                         a.bias,
                                         a.activation};
      launch_rows<T>(source, a.rows, a.cols, vector, y, a.next, stream);
    } else {
      const DequantizeSource<float> source{static_cast<const float*>(a.acc),
                                           a.ld_acc,
                                           a.cols,
                                           a.row_scales,
                                           a.static_row_scale,
                                           a.col_scales,
                                           a.bias,
                                           a.activation};
      launch_rows<T>(source, a.rows, a.cols, vector, y, a.next, stream);
    }
  });
}

void launch_activation_quantize(DType act, const void* y, std::int64_t rows, std::int64_t cols,
                                Activation activation, const QuantizeTarget& target,
                                cudaStream_t stream) {
  const bool vector = cols % 8 == 0 && aligned16(y);
  EAQ_DISPATCH_FLOAT(
      act, launch_rows<T>(ActivationSource<T>{static_cast<const T*>(y), cols, activation}, rows,
                          cols, vector, static_cast<T*>(nullptr), &target, stream));
}

void launch_dequantize_weights(DType act, const std::int8_t* q, const float* scales, void* w,
                               std::int64_t n, std::int64_t k, cudaStream_t stream) {
  const std::int64_t count = n * k;
  if (count == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((count + 255) / 256, 65535 * 8));
  EAQ_DISPATCH_FLOAT(act, dequantize_weights_kernel<T>
                     <<<blocks, 256, 0, stream>>>(q, scales, static_cast<T*>(w), n, k));
}

}  // namespace eaq::cuda
