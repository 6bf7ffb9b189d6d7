// Device-side pieces shared by the quantization kernels: element quantization (the arithmetic of
// src/quant/scheme.hpp), the activation functions, block reductions and 8-wide loads/stores.
#pragma once

#include <cuda_fp8.h>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/quant_kernels.hpp"

namespace eaq::cuda {

__device__ __forceinline__ unsigned char quantize_int8(float x, float inverse) {
  const float v = fminf(fmaxf(rintf(x * inverse), -127.0f), 127.0f);
  return static_cast<unsigned char>(static_cast<signed char>(v));
}

__device__ __forceinline__ unsigned char quantize_e4m3(float x, float inverse) {
  return static_cast<unsigned char>(__nv_cvt_float_to_fp8(x * inverse, __NV_SATFINITE, __NV_E4M3));
}

__device__ __forceinline__ unsigned char quantize_value(QuantFormat format, float x,
                                                        float inverse) {
  return format == QuantFormat::E4M3 ? quantize_e4m3(x, inverse) : quantize_int8(x, inverse);
}

__device__ __forceinline__ float quant_max(QuantFormat format) {
  return format == QuantFormat::E4M3 ? 448.0f : 127.0f;
}

// One output element of an int8 GEMM (int8_gemm.cu, int8_split_k_gemm.cu): the formula of
// quantize.cu's DequantizeSource and of the quantized GEMV (quant_row.cuh dequantize_dot); 0
// beyond the columns. The multiply-add is one explicit fma: written as a * b + c, whether the
// compiler fuses it depends on the code around it (a branch between the product and the sum
// keeps it apart), so kernels meant to give the same bits could differ by a rounding.
__device__ __forceinline__ float dequantize_value(int acc, float row_scale, float col_scale,
                                                  float bias, Activation activation) {
  return apply_activation(__fmaf_rn(static_cast<float>(acc), row_scale * col_scale, bias),
                          activation);
}

__device__ __forceinline__ float dequantize(int acc, float row_scale, std::int64_t col,
                                            std::int64_t n_out, const float* col_scales,
                                            const float* bias, Activation activation) {
  if (col >= n_out) return 0.0f;
  return dequantize_value(acc, row_scale, col_scales[col], bias != nullptr ? bias[col] : 0.0f,
                          activation);
}

// The maximum over the block; `shared` holds 32 floats. Every thread gets the result.
__device__ __forceinline__ float block_max(float v, float* shared) {
  v = warp_max(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float m = lane < static_cast<int>((blockDim.x + 31) / 32) ? shared[lane] : 0.0f;
    m = warp_max(m);
    if (lane == 0) shared[0] = m;
  }
  __syncthreads();
  return shared[0];
}

// Rounds each value to T and back, i.e. to what storing it as T and reloading gives.
template <class T>
__device__ __forceinline__ void round_to(float (&v)[8]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = to_f32(from_f32<T>(v[i]));
}

// Eight consecutive elements starting at p. `vector`: p is 16-byte aligned and all eight exist;
// otherwise only the first `valid` are read and the rest are 0.
template <class T>
__device__ __forceinline__ void load8(const T* p, bool vector, int valid, float (&v)[8]) {
  if (vector) {
    if constexpr (sizeof(T) == 2) {
      const uint4 raw = *reinterpret_cast<const uint4*>(p);
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = to_f32(e[i]);
    } else {
      const float4 a = reinterpret_cast<const float4*>(p)[0];
      const float4 b = reinterpret_cast<const float4*>(p)[1];
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z,
      v[7] = b.w;
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = i < valid ? to_f32(p[i]) : 0.0f;
}

__device__ __forceinline__ void load8(const int* p, bool vector, int valid, float (&v)[8]) {
  if (vector) {
    const int4 a = reinterpret_cast<const int4*>(p)[0];
    const int4 b = reinterpret_cast<const int4*>(p)[1];
    v[0] = static_cast<float>(a.x), v[1] = static_cast<float>(a.y);
    v[2] = static_cast<float>(a.z), v[3] = static_cast<float>(a.w);
    v[4] = static_cast<float>(b.x), v[5] = static_cast<float>(b.y);
    v[6] = static_cast<float>(b.z), v[7] = static_cast<float>(b.w);
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = i < valid ? static_cast<float>(p[i]) : 0.0f;
}

template <class T>
__device__ __forceinline__ void store8(T* p, bool vector, int valid, const float (&v)[8]) {
  if (vector && sizeof(T) == 2) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) e[i] = from_f32<T>(v[i]);
    *reinterpret_cast<uint4*>(p) = raw;
    return;
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if (i < valid) p[i] = from_f32<T>(v[i]);
  }
}

}  // namespace eaq::cuda
