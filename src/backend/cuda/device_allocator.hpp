// A caching allocator for device memory: freed blocks are kept for reuse (cudaFree synchronizes
// the device and cannot run during graph capture), and allocated / peak / reserved bytes are
// counted the way the seed reported torch.cuda memory.
#pragma once

#include <cstddef>
#include <map>
#include <unordered_map>

#include "backend/backend.hpp"

namespace eaq::cuda {

class DeviceAllocator {
 public:
  explicit DeviceAllocator(int device) : device_(device) {}
  ~DeviceAllocator();
  DeviceAllocator(const DeviceAllocator&) = delete;
  DeviceAllocator& operator=(const DeviceAllocator&) = delete;

  // Throws eaq::Error saying how much was asked for and how much the device has free.
  void* allocate(std::size_t bytes);
  void release(void* pointer);
  MemoryStats stats() const { return stats_; }

  static std::size_t rounded_size(std::size_t bytes);

 private:
  int device_;
  std::unordered_map<void*, std::size_t> live_;  // pointer -> rounded size
  std::unordered_map<void*, std::size_t> requested_;
  std::multimap<std::size_t, void*> cached_;  // rounded size -> free block
  MemoryStats stats_;
};

}  // namespace eaq::cuda
