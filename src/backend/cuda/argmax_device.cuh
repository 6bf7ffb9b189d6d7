// The (value, index) reductions of greedy decoding's argmax, shared by argmax_rows_kernel
// (decoder_kernels.cu) and the bounded LM head (bounded_argmax.cu), so both pick alike: the
// largest value, the first index on ties (torch.argmax), NaN never.
#pragma once

namespace eaq::cuda {

// The better of two (value, index) candidates: larger value, then smaller index (torch.argmax).
__device__ __forceinline__ void keep_better(float& value, int& index, float other_value,
                                            int other_index) {
  if (other_value > value || (other_value == value && other_index < index)) {
    value = other_value;
    index = other_index;
  }
}

// The best (value, index) of the block's threads, in every thread.
__device__ __forceinline__ void block_keep_best(float& value, int& index) {
  __shared__ float best_values[32];
  __shared__ int best_indices[32];
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other_value = __shfl_xor_sync(0xffffffffu, value, offset);
    const int other_index = __shfl_xor_sync(0xffffffffu, index, offset);
    keep_better(value, index, other_value, other_index);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // the arrays may still be read by a previous call
  if (lane == 0) {
    best_values[warp] = value;
    best_indices[warp] = index;
  }
  __syncthreads();
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) {
    keep_better(value, index, best_values[w], best_indices[w]);
  }
}

}  // namespace eaq::cuda
