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
