// Element access shared by the .cu files: every float dtype is loaded to and stored from f32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace eaq::cuda {

__device__ __forceinline__ float to_f32(float v) {
  return v;
}
__device__ __forceinline__ float to_f32(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Whether `p` is 16-byte aligned: the launchers' condition for kernels that move 16-byte vectors.
inline bool aligned16(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
// Sums each of N values (float or int; N a power of two up to 32) over the warp, sharing the
// shuffles: at offsets 16, 8, ... each lane keeps half of its values and sends its partner the
// other half, so N sums take N - 1 + 5 - log2(N) shuffles instead of warp_sum's 5 N (8 sums: 9
// instead of 40). The lanes pair as in warp_sum and a + b == b + a, so each sum has warp_sum's
// bits. Lane l gets the sum of value warp_sum_many_index<N>(l); the 32 / N lanes from a multiple
// of 32 / N on share one. What it buys: docs/results.md, the twentieth session.
template <int N>
__device__ __forceinline__ int warp_sum_many_index(int lane) {
  int index = 0;
#pragma unroll
  for (int n = N, offset = 16; n > 1; n /= 2, offset /= 2)
    index = 2 * index + ((lane & offset) != 0);
  return index;
}
template <int N, class V>
__device__ __forceinline__ V warp_sum_many(V (&v)[N]) {
  static_assert(N >= 1 && N <= 32 && (N & (N - 1)) == 0, "a power of two up to 32");
  const int lane = threadIdx.x % 32;
  int offset = 16;
#pragma unroll
  for (int n = N; n > 1; n /= 2, offset /= 2) {
    const bool upper = (lane & offset) != 0;  // keeps the second half
#pragma unroll
    for (int i = 0; i < n / 2; ++i) {
      const V send = upper ? v[i] : v[i + n / 2];
      const V keep = upper ? v[i + n / 2] : v[i];
      v[i] = keep + __shfl_xor_sync(0xffffffffu, send, offset);
    }
  }
  V sum = v[0];
#pragma unroll
  for (; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  return sum;
}
// Adds one to *count with release-acquire order at GPU scope and returns the value before: a
// block's arrival that publishes what the thread (and, after a __syncthreads, its block) wrote and
// sees what the blocks that arrived before it published, without a fence.
__device__ __forceinline__ unsigned arrive_acq_rel(unsigned* count) {
  unsigned before;
  asm volatile("atom.add.acq_rel.gpu.u32 %0, [%1], 1;" : "=r"(before) : "l"(count) : "memory");
  return before;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Calls f.template operator()<T>() with T the C++ type of a float DType.
#define EAQ_DISPATCH_FLOAT(act, ...) \
  switch (act) {                     \
    case DType::F32: {               \
      using T = float;               \
      __VA_ARGS__;                   \
    } break;                         \
    case DType::F16: {               \
      using T = __half;              \
      __VA_ARGS__;                   \
    } break;                         \
    case DType::BF16: {              \
      using T = __nv_bfloat16;       \
      __VA_ARGS__;                   \
    } break;                         \
    default:                         \
      break;                         \
  }

}  // namespace eaq::cuda
