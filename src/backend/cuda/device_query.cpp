#include "backend/cuda/device_query.hpp"

#include "backend/cuda/env_switch.hpp"

#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <string>

namespace eaq::cuda {

int multiprocessor_count() {
  static const int count = [] {
    int device = 0, value = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&value, cudaDevAttrMultiProcessorCount, device);
    return value > 0 ? value : 1;
  }();
  return count;
}

namespace {

// Whether the current device is Hopper or newer (programmatic dependent launch, clusters).
bool hopper_or_newer() {
  // Per device: 0 unknown, 1 no, 2 yes. Devices are few; ids past the table ask every time.
  static std::array<std::atomic<int>, 64> known{};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (device >= 0 && device < static_cast<int>(known.size()) && known[device] != 0)
    return known[device] == 2;
  int major = 0;
  const bool yes =
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
      major >= 9;
  if (device >= 0 && device < static_cast<int>(known.size())) known[device] = yes ? 2 : 1;
  return yes;
}

}  // namespace

bool dependent_launch_supported() {
  // EAQ_DEPENDENT_LAUNCH=0 turns it off: the same binary then measures what it buys.
  static const bool disabled = env_is("EAQ_DEPENDENT_LAUNCH", "0");
  return !disabled && hopper_or_newer();
}

bool early_dependent_launch() {
  return !env_is("EAQ_EARLY_LAUNCH", "0");
}

bool thread_block_clusters_supported() {
  return hopper_or_newer();
}

bool cooperative_launch_supported() {
  int device = 0, value = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  return cudaDeviceGetAttribute(&value, cudaDevAttrCooperativeLaunch, device) == cudaSuccess &&
         value != 0;
}

}  // namespace eaq::cuda
