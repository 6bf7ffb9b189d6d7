// How the decode kernels (GEMVs, LayerNorm + QKV + attention) read weights.
#pragma once

namespace eaq::cuda {

// A batch-1 decode step reads every weight once and not again until the next step, after ~250 MB
// (f16 GPT-2 124M) have gone through the 50 MB L2: keeping weights in L2 buys nothing. Their loads
// are evict-first (ld.global.cs), so that L2 keeps what the step reads again soon (the KV cache,
// the activations) rather than weights.
template <class Piece>
__device__ __forceinline__ Piece load_weight(const Piece* piece) {
  return __ldcs(piece);
}

// An L2 policy for a buffer read again at every step: its first `keep` bytes evict-last (they stay
// in L2 from one step to the next while the weights stream past evict-first), the rest
// evict-first. Only where the whole buffer is under 4 GB (createpolicy's sizes are 32-bit).
__device__ __forceinline__ unsigned long long keep_prefix_policy(const void* base, unsigned keep,
                                                                 unsigned total) {
  unsigned long long policy;
  asm("createpolicy.range.global.L2::evict_last.L2::evict_first.b64 %0, [%1], %2, %3;"
      : "=l"(policy)
      : "l"(base), "r"(keep), "r"(total));
  return policy;
}

// A read-only 8-byte load under an L2 policy from keep_prefix_policy, not allocated in L1.
__device__ __forceinline__ uint2 load_with_policy(const uint2* piece, unsigned long long policy) {
  uint2 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v2.u32 {%0, %1}, [%2], %3;"
               : "=r"(v.x), "=r"(v.y)
               : "l"(piece), "l"(policy));
  return v;
}

}  // namespace eaq::cuda
