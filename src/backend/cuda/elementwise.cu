// Small elementwise kernels; references: cpu_kernels.cpp apply_activation and CpuBackend.
#include <cstdint>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/kernels.hpp"

namespace eaq::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t count) {
  const std::int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 * 16 ? blocks : 65535 * 16);
}

template <class T>
__global__ void activation_kernel(T* y, std::int64_t count, Activation activation) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    y[i] = from_f32<T>(apply_activation(to_f32(y[i]), activation));
  }
}

// Eight (or four f32) elements per thread through 16-byte loads and stores.
template <class T>
__global__ void activation_vector_kernel(uint4* y, std::int64_t vectors, Activation activation) {
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       i < vectors; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    uint4 packed = y[i];
    T* v = reinterpret_cast<T*>(&packed);
#pragma unroll
    for (int e = 0; e < kPerVec; ++e)
      v[e] = from_f32<T>(apply_activation(to_f32(v[e]), activation));
    y[i] = packed;
  }
}

template <class T, class B>
__global__ void bias_activation_kernel(T* y, const B* bias, std::int64_t rows, std::int64_t cols,
                                       Activation activation) {
  const std::int64_t count = rows * cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    y[i] = from_f32<T>(apply_activation(to_f32(y[i]) + to_f32(bias[i % cols]), activation));
  }
}

template <class T>
__global__ void add_kernel(const T* a, const T* b, T* out, std::int64_t count) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
  }
}

__global__ void gather_rows_kernel(const char* x, const std::int32_t* index, char* out,
                                   std::int64_t row_bytes) {
  const std::int64_t row = blockIdx.x;
  const char* src = x + static_cast<std::int64_t>(index[row]) * row_bytes;
  char* dst = out + row * row_bytes;
  for (std::int64_t i = threadIdx.x; i < row_bytes; i += blockDim.x) dst[i] = src[i];
}

template <class From, class To>
__global__ void convert_kernel(const From* src, To* dst, std::int64_t count) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = from_f32<To>(to_f32(src[i]));
  }
}

}  // namespace

void launch_activation(DType act, void* y, std::int64_t count, Activation activation,
                       cudaStream_t stream) {
  if (count == 0 || activation == Activation::None) return;
  const std::int64_t per_vec = act == DType::F32 ? 4 : 8;
  if (count % per_vec == 0 && reinterpret_cast<std::uintptr_t>(y) % 16 == 0) {
    const std::int64_t vectors = count / per_vec;
    EAQ_DISPATCH_FLOAT(act,
                       activation_vector_kernel<T><<<blocks_for(vectors), kThreads, 0, stream>>>(
                           static_cast<uint4*>(y), vectors, activation));
    return;
  }
  EAQ_DISPATCH_FLOAT(act, activation_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                              static_cast<T*>(y), count, activation));
}

void launch_bias_activation(DType act, void* y, const void* bias, DType bias_dtype,
                            std::int64_t rows, std::int64_t cols, Activation activation,
                            cudaStream_t stream) {
  if (rows * cols == 0) return;
  EAQ_DISPATCH_FLOAT(act, {
    using Y = T;
    EAQ_DISPATCH_FLOAT(
        bias_dtype, bias_activation_kernel<Y, T><<<blocks_for(rows * cols), kThreads, 0, stream>>>(
                        static_cast<Y*>(y), static_cast<const T*>(bias), rows, cols, activation));
  });
}

void launch_add(DType act, const void* a, const void* b, void* out, std::int64_t count,
                cudaStream_t stream) {
  if (count == 0) return;
  EAQ_DISPATCH_FLOAT(
      act, add_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
               static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out), count));
}

void launch_gather_rows(const void* x, const std::int32_t* index, void* out, std::int64_t rows,
                        std::int64_t row_bytes, cudaStream_t stream) {
  if (rows == 0) return;
  gather_rows_kernel<<<static_cast<unsigned>(rows), 128, 0, stream>>>(
      static_cast<const char*>(x), index, static_cast<char*>(out), row_bytes);
}

void launch_convert(DType from, const void* src, DType to, void* dst, std::int64_t count,
                    cudaStream_t stream) {
  if (count == 0) return;
  EAQ_DISPATCH_FLOAT(from, {
    using From = T;
    EAQ_DISPATCH_FLOAT(to, convert_kernel<From, T><<<blocks_for(count), kThreads, 0, stream>>>(
                               static_cast<const From*>(src), static_cast<T*>(dst), count));
  });
}

}  // namespace eaq::cuda
