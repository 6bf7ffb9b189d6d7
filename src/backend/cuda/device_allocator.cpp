#include "backend/cuda/device_allocator.hpp"

#include <algorithm>

#include "backend/cuda/cuda_check.hpp"

namespace eaq::cuda {

std::size_t DeviceAllocator::rounded_size(std::size_t bytes) {
  // 512-byte granules for small blocks, 2 MiB for large ones: reuse without much waste.
  constexpr std::size_t kSmall = 512, kLarge = 2u << 20;
  const std::size_t granule = bytes > (8u << 20) ? kLarge : kSmall;
  return std::max<std::size_t>(granule, (bytes + granule - 1) / granule * granule);
}

void* DeviceAllocator::allocate(std::size_t bytes) {
  const std::size_t size = rounded_size(bytes);
  void* pointer = nullptr;
  // Best fit among cached blocks, if it does not waste more than a quarter of the block.
  const auto it = cached_.lower_bound(size);
  if (it != cached_.end() && it->first <= size + size / 4) {
    pointer = it->second;
    live_[pointer] = it->first;
    cached_.erase(it);
  } else {
    cudaError_t status = cudaMalloc(&pointer, size);
    if (status == cudaErrorMemoryAllocation && !cached_.empty()) {
      // Give cached blocks back and try once more.
      (void)cudaGetLastError();
      EAQ_CUDA_CHECK(cudaDeviceSynchronize());
      for (const auto& [cached_size, cached_pointer] : cached_) {
        cudaFree(cached_pointer);
        stats_.reserved_bytes -= cached_size;
      }
      cached_.clear();
      status = cudaMalloc(&pointer, size);
    }
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      std::size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      fail(
          "out of GPU memory on device {}: asked for {:.1f} MiB with {:.1f} MiB free of {:.1f} "
          "MiB ({:.1f} MiB already held by eaq); try a smaller --batch-size",
          device_, bytes / 1048576.0, free_bytes / 1048576.0, total_bytes / 1048576.0,
          stats_.reserved_bytes / 1048576.0);
    }
    live_[pointer] = size;
    stats_.reserved_bytes += size;
  }
  requested_[pointer] = bytes;
  stats_.allocated_bytes += bytes;
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.allocated_bytes);
  return pointer;
}

void DeviceAllocator::release(void* pointer) {
  if (pointer == nullptr) return;
  const auto it = live_.find(pointer);
  EAQ_ASSERT(it != live_.end());
  cached_.emplace(it->second, pointer);
  live_.erase(it);
  stats_.allocated_bytes -= requested_[pointer];
  requested_.erase(pointer);
}

DeviceAllocator::~DeviceAllocator() {
  cudaSetDevice(device_);
  for (const auto& [pointer, size] : live_) cudaFree(pointer);
  for (const auto& [size, pointer] : cached_) cudaFree(pointer);
}

}  // namespace eaq::cuda
