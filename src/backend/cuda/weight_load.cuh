// How the decode kernels (GEMVs, LayerNorm + QKV + attention) read weights.
#pragma once

namespace eaq::cuda {

// An L2 cache policy that makes every line it touches evict-first (sm_80 and newer). Not volatile:
// a kernel creates it once.
__device__ __forceinline__ unsigned long long l2_evict_first_policy() {
  unsigned long long policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

// A batch-1 decode step reads every weight once and not again until the next step, after ~250 MB
// (f16 GPT-2 124M) have gone through the 50 MB L2: keeping weights in L1 or L2 buys nothing. Their
// loads take the read-only path, skip L1 and are evict-first in L2, so that L2 keeps what the
// step reads again soon (the KV cache, the activations) rather than weights. Volatile: the loads
// stay where the source puts them, before the wait for the previous kernel.
__device__ __forceinline__ uint4 load_weight(const uint4* piece) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(piece), "l"(l2_evict_first_policy()));
  return v;
}

__device__ __forceinline__ uint2 load_weight(const uint2* piece) {
  uint2 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v2.u32 {%0, %1}, [%2], %3;"
               : "=r"(v.x), "=r"(v.y)
               : "l"(piece), "l"(l2_evict_first_policy()));
  return v;
}

}  // namespace eaq::cuda
