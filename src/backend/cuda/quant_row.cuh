// Device pieces of the 8-bit-weight kernels that hold one row of x in a warp's registers (lane l:
// pieces l, l + 32, ... of 8 values), shared by quantized_gemv.cu's row kernel and
// qkv_attention.cu: weight conversions, the row's quantization (launch_quantize_rows' arithmetic,
// so both compute the same bits as the GEMM path) and the dot product of 8 weights.
#pragma once

#include <cuda_fp8.h>

#include <type_traits>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/quant_device.cuh"

namespace eaq::cuda {

constexpr int kQuantRowPerVec = 8;  // values per piece: 8 weights are 8 bytes

__device__ __forceinline__ int warp_sum_int(int v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The four int8 values of `word` as exact floats without int-to-float conversions (a
// quarter-rate instruction): byte ^ 0x80 = q + 128 placed under the exponent of 2^23 reads as
// 2^23 + q + 128.
__device__ __forceinline__ void int8x4_to_f32(unsigned word, float* f) {
  const unsigned biased = word ^ 0x80808080u;
  constexpr float kBias = 8388736.0f;  // 2^23 + 128
  f[0] = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7640)) - kBias;
  f[1] = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7641)) - kBias;
  f[2] = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7642)) - kBias;
  f[3] = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7643)) - kBias;
}

// The four e4m3 values of `word` (the first in the low byte) as floats, two per conversion.
__device__ __forceinline__ void e4m3x4_to_f32(unsigned word, float* f) {
  const float2 lo = __half22float2(__half2(
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word & 0xFFFFu), __NV_E4M3)));
  const float2 hi = __half22float2(__half2(
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word >> 16), __NV_E4M3)));
  f[0] = lo.x, f[1] = lo.y, f[2] = hi.x, f[3] = hi.y;
}

// Four values quantized to int8 as quantize_int8 does, packed into an int (the first in the low
// byte) without float-to-int conversions (a quarter-rate instruction, and warp_quantize_row runs
// one per value in every warp): clamping to +-127 first and rounding after is the same as
// rounding first, and adding 1.5 * 2^23 leaves the rounded (half to even) integer in the low
// mantissa bits, whose low byte is its two's complement. NaN clamps to -127 either way.
__device__ __forceinline__ int quantize_int8x4(float a, float b, float c, float d, float inverse) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  const auto bits = [&](float v) {
    return __float_as_uint(fminf(fmaxf(v * inverse, -127.0f), 127.0f) + kRound);
  };
  const unsigned lo = __byte_perm(bits(a), bits(b), 0x0040);  // bytes: a, b
  const unsigned hi = __byte_perm(bits(c), bits(d), 0x0040);
  return static_cast<int>(__byte_perm(lo, hi, 0x5410));
}

// Four 8-bit weights of kKind (E4M3 or an int8 kind; the first in the low byte) as floats.
template <WeightKind kKind>
__device__ __forceinline__ void weights4_to_f32(unsigned word, float* f) {
  if constexpr (kKind == WeightKind::E4M3) {
    e4m3x4_to_f32(word, f);
  } else {
    int8x4_to_f32(word, f);
  }
}

// An e4m3 byte's value as f32: what the fp8 GEMM multiplies.
__device__ __forceinline__ float e4m3_to_f32(unsigned char q) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(q, __NV_E4M3)));
}

// What the dot products of kKind accumulate in: i32 for int8 x int8, f32 otherwise.
template <WeightKind kKind>
using QuantAcc = std::conditional_t<kKind == WeightKind::Int8, int, float>;

// The row's x quantized as launch_quantize_rows does it (vectors: pieces in the row; static
// quantization when static_inverse > 0): int8 values packed four to an int into q, e4m3 values
// back into x as f32; int8-wo leaves x as it is. Returns the row's scale (1 for int8-wo). The
// absolute maximum is exact, so every warp holding the row quantizes it alike.
template <WeightKind kKind, int kVecs>
__device__ __forceinline__ float warp_quantize_row(float (&x)[kVecs][kQuantRowPerVec],
                                                   int (&q)[kVecs][2], int vectors,
                                                   float static_inverse, float static_scale) {
  if constexpr (kKind == WeightKind::Int8WeightOnly || kKind == WeightKind::Float) {
    return 1.0f;
  } else {
    constexpr QuantFormat format =
        kKind == WeightKind::E4M3 ? QuantFormat::E4M3 : QuantFormat::Int8;
    const int lane = threadIdx.x % 32;
    float inverse = static_inverse, scale = static_scale;
    if (inverse == 0.0f) {
      float amax = 0.0f;
#pragma unroll
      for (int u = 0; u < kVecs; ++u) {
        if (lane + 32 * u >= vectors) break;
#pragma unroll
        for (int e = 0; e < kQuantRowPerVec; ++e) amax = fmaxf(amax, fabsf(x[u][e]));
      }
      amax = warp_max(amax);
      inverse = amax > 0.0f ? quant_max(format) / amax : 0.0f;
      scale = amax / quant_max(format);
    }
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (lane + 32 * u >= vectors) break;
      if constexpr (kKind == WeightKind::E4M3) {
#pragma unroll
        for (int e = 0; e < kQuantRowPerVec; ++e) {
          const unsigned char v = quantize_e4m3(x[u][e], inverse);
          x[u][e] = e4m3_to_f32(v);
        }
      } else {
        q[u][0] = quantize_int8x4(x[u][0], x[u][1], x[u][2], x[u][3], inverse);
        q[u][1] = quantize_int8x4(x[u][4], x[u][5], x[u][6], x[u][7], inverse);
      }
    }
    return scale;
  }
}

// acc += the dot product of 8 weights (one 8-byte piece) with the row's piece: dp4a on the packed
// int8 values, f32 products otherwise.
template <WeightKind kKind>
__device__ __forceinline__ void dot_piece(QuantAcc<kKind>& acc, const uint2& w,
                                          const float (&x)[kQuantRowPerVec], const int (&q)[2]) {
  if constexpr (kKind == WeightKind::Int8) {
    acc = __dp4a(static_cast<int>(w.x), q[0], acc);
    acc = __dp4a(static_cast<int>(w.y), q[1], acc);
  } else {
    float wf[kQuantRowPerVec];
    weights4_to_f32<kKind>(w.x, wf);
    weights4_to_f32<kKind>(w.y, wf + 4);
#pragma unroll
    for (int e = 0; e < kQuantRowPerVec; ++e) acc += x[e] * wf[e];
  }
}

// A warp's dot product from every lane's share.
template <WeightKind kKind>
__device__ __forceinline__ float warp_dot_total(QuantAcc<kKind> acc) {
  if constexpr (kKind == WeightKind::Int8) {
    return static_cast<float>(warp_sum_int(acc));
  } else {
    return warp_sum(acc);
  }
}

// Feature `feature`'s bias as f32 (F32, or T when bias_act), 0 without one.
template <class T>
__device__ __forceinline__ float quantized_bias(const void* bias, bool bias_act,
                                                std::int64_t feature) {
  if (bias == nullptr) return 0.0f;
  return bias_act ? to_f32(static_cast<const T*>(bias)[feature])
                  : static_cast<const float*>(bias)[feature];
}

// dot * (x_scale * w_scale) + b in one fused multiply-add (see dequantize()).
__device__ __forceinline__ float dequantize_dot_plus(float dot, float x_scale, float w_scale,
                                                     float b) {
  return __fmaf_rn(dot, x_scale * w_scale, b);
}

// The dequantized output of one feature: dot * (x_scale * w_scale) + bias, the expression of
// quantize.cu's and int8_gemm.cu's epilogues (bias F32, or T when bias_act).
template <class T>
__device__ __forceinline__ float dequantize_dot(float dot, float x_scale, float w_scale,
                                                const void* bias, bool bias_act,
                                                std::int64_t feature) {
  return dequantize_dot_plus(dot, x_scale, w_scale, quantized_bias<T>(bias, bias_act, feature));
}

}  // namespace eaq::cuda
