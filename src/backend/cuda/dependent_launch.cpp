#include <array>
#include <atomic>
#include <cstdlib>
#include <string>

#include "backend/cuda/dependent_launch.cuh"

namespace eaq::cuda {

bool dependent_launch_supported() {
  // EAQ_DEPENDENT_LAUNCH=0 turns it off: the same binary then measures what it buys.
  static const bool disabled = [] {
    const char* value = std::getenv("EAQ_DEPENDENT_LAUNCH");
    return value != nullptr && std::string(value) == "0";
  }();
  if (disabled) return false;
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

}  // namespace eaq::cuda
