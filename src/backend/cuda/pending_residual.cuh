// A residual sum left for the next kernel to finish (a batch-1 decode step, mlp_pending.cu): the
// MLP's blocks add their shares of y - x into `pending`, an I64 [E + 1] buffer, with integer
// atomics, and the kernel that reads the row next (qkv_attention.cu, bounded_argmax.cu,
// finish_pending) takes x + pending. That saves the kernel boundary between the MLP's two
// GEMVs: the shares of the second need no meeting point but the next kernel's start.
//
// Why integers: a share is the f32 value times 2^32, rounded to an int64, so the sum is the same
// whatever order the atomics arrive in (float atomics would make every run's bits differ). A share
// keeps f32's relative precision down to 2^-32 absolute, far below any f16 or bf16 spacing the
// sum is rounded to. Shares of magnitude 2^27 or more (or not finite) are not added: they count
// in pending[E] instead, and the reader makes the row NaN, so an overflow is never silent. With
// at most 16 shares per element below 2^27 the int64 sum cannot wrap.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_types.cuh"

namespace eaq::cuda {

inline constexpr float kPendingScale = 4294967296.0f;  // 2^32
inline constexpr float kPendingLimit = 134217728.0f;   // 2^27

// pending[index] += v in fixed point (pending[count] += 1 where v cannot be represented).
__device__ __forceinline__ void pending_add(long long* pending, std::int64_t index,
                                            std::int64_t count, float v) {
  if (fabsf(v) < kPendingLimit) {
    atomicAdd(reinterpret_cast<unsigned long long*>(pending + index),
              static_cast<unsigned long long>(__float2ll_rn(v * kPendingScale)));
  } else {
    atomicAdd(reinterpret_cast<unsigned long long*>(pending + count), 1ull);
  }
}

// x + pending rounded to T, as f32 (NaN everywhere when a share could not be added).
template <class T>
__device__ __forceinline__ float pending_finish(float x, long long pending, bool poisoned) {
  const float added = static_cast<float>(static_cast<double>(pending) * (1.0 / 4294967296.0));
  return poisoned ? __int_as_float(0x7fffffff) : to_f32(from_f32<T>(x + added));
}

// warp_load_row's form for a row x + pending: this lane's pieces l, l + 32, ... of the `vectors`
// 16-byte pieces of x (T), each finished with its 8 pending sums and rounded to T. Plain loads, as
// x's: every warp of the grid reads the same 6 KB, and through L1 each multiprocessor fetches it
// from L2 once (read around L1, ~4,000 warps queued on 48 L2 lines: the LM head's kernel took 21
// us longer). The atomics that wrote them finished with the previous kernel, as x's stores did.
template <class T, int kVecs, int kPerVec>
__device__ __forceinline__ void warp_load_row_pending(const void* x, const long long* pending,
                                                      int vectors, float (&out)[kVecs][kPerVec]) {
  static_assert(kPerVec * sizeof(T) == 16, "rows are read in 16-byte pieces");
  const int lane = threadIdx.x % 32;
  const auto* x4 = static_cast<const uint4*>(x);
  const bool poisoned = pending[static_cast<std::int64_t>(vectors) * kPerVec] != 0;
#pragma unroll
  for (int u = 0; u < kVecs; ++u) {
    const int v = lane + 32 * u;
    if (v >= vectors) break;
    const uint4 xr = x4[v];
    const T* xt = reinterpret_cast<const T*>(&xr);
    const auto* p2 = reinterpret_cast<const longlong2*>(pending + v * kPerVec);
#pragma unroll
    for (int q = 0; q < kPerVec / 2; ++q) {
      const longlong2 p = p2[q];
      out[u][2 * q] = pending_finish<T>(to_f32(xt[2 * q]), p.x, poisoned);
      out[u][2 * q + 1] = pending_finish<T>(to_f32(xt[2 * q + 1]), p.y, poisoned);
    }
  }
}

}  // namespace eaq::cuda
