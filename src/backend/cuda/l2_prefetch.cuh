// Bringing what a later kernel reads into L2 while this kernel runs (see L2Prefetch in
// kernels.hpp). A batch-1 decode step reads each layer's weights once, from HBM, in kernels of 2-5
// us that wait on HBM's latency more than its bandwidth; issued one layer ahead, the same reads
// find L2.
#pragma once

#include <cstdint>

#include "backend/cuda/kernels.hpp"

namespace eaq::cuda {

// Every block of the grid takes its share of 16 KB pieces of the ranges: on Hopper one thread per
// piece issues a bulk prefetch (the copy engine walks it); on older GPUs the block's threads
// prefetch its lines. Nothing waits for the data: call it first, before the kernel's own loads.
__device__ __forceinline__ void prefetch_into_l2(const L2Prefetch& ahead) {
  constexpr std::uint32_t kPiece = 16 * 1024;
  const std::uint32_t blocks = gridDim.x * gridDim.y * gridDim.z;
  const std::uint32_t block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  std::uint32_t first = 0;  // pieces of earlier ranges: later ranges start on other blocks
  for (int r = 0; r < ahead.count; ++r) {
    const auto* data = static_cast<const char*>(ahead.data[r]);
    const std::uint32_t bytes = ahead.bytes[r];
    const std::uint32_t pieces = (bytes + kPiece - 1) / kPiece;
    for (std::uint32_t p = (block + blocks - first % blocks) % blocks; p < pieces; p += blocks) {
      const std::uint32_t offset = p * kPiece;
      const std::uint32_t size = bytes - offset < kPiece ? bytes - offset : kPiece;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      if (threadIdx.x == 0) {
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(
                         __cvta_generic_to_global(data + offset)),
                     "r"(size)
                     : "memory");
      }
#else
      for (std::uint32_t line = threadIdx.x * 128; line < size; line += blockDim.x * 128) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(data + offset + line));
      }
#endif
    }
    first += pieces;
  }
}

}  // namespace eaq::cuda
