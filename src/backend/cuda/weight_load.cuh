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

}  // namespace eaq::cuda
