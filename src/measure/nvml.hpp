// NVML, loaded at run time with dlopen: eaq has no link-time dependency on the driver and builds
// without nvml.h. Missing NVML is not an error: the meter is then an UnavailableGpuMeter that says
// why. Asking for a GPU that does not exist is an error.
#pragma once

#include <memory>
#include <string>

#include "measure/gpu_meter.hpp"
#include "measure/reading.hpp"

namespace eaq::measure {

inline constexpr const char* kNvmlLibrary = "libnvidia-ml.so.1";

// How many GPUs NVML sees; unavailable (with the reason) when NVML cannot be loaded or initialised.
Reading<unsigned> nvml_device_count(const std::string& library = kNvmlLibrary);

// Opens GPU `gpu_index` in NVML's numbering (PCI bus order, which is CUDA's order only with
// CUDA_DEVICE_ORDER=PCI_BUS_ID and no CUDA_VISIBLE_DEVICES; prefer the PCI bus id variant below
// when the CUDA device is known).
// - NVML cannot be loaded or initialised: returns an UnavailableGpuMeter with the reason.
// - gpu_index out of range: throws eaq::Error naming the index and the GPUs NVML sees.
std::unique_ptr<GpuMeter> open_nvml_meter(unsigned gpu_index,
                                          const std::string& library = kNvmlLibrary);

// Opens the GPU whose PCI bus id is `pci_bus_id` (e.g. "00000000:3B:00.0", as cudaDeviceGetPCIBusId
// gives it). Same rules as above; an unknown bus id throws eaq::Error.
std::unique_ptr<GpuMeter> open_nvml_meter_by_pci_bus_id(const std::string& pci_bus_id,
                                                        const std::string& library = kNvmlLibrary);

}  // namespace eaq::measure
