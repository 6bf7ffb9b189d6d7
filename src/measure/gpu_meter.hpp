// What eaq reads from a GPU, behind an interface: NVML implements it on real GPUs (nvml.hpp) and
// tests implement it with functions of time. Every reading is a Reading<T>, so "unavailable" and
// its reason are explicit.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "measure/reading.hpp"

namespace eaq::measure {

struct GpuMemoryInfo {
  std::uint64_t total_bytes = 0;
  std::uint64_t free_bytes = 0;
  std::uint64_t used_bytes = 0;
};

// Implementations must be safe to call from two threads at once (the power logger's thread and
// the thread that runs the measured loop); NVML is.
class GpuMeter {
 public:
  virtual ~GpuMeter() = default;

  // False when the meter cannot read anything (e.g. NVML is not installed); every reading is then
  // unavailable with unavailable_reason().
  virtual bool available() const = 0;
  virtual std::string unavailable_reason() const = 0;
  virtual unsigned index() const = 0;  // the GPU index this meter was opened for

  // Identity.
  virtual Reading<std::string> name() const = 0;
  virtual Reading<std::string> uuid() const = 0;
  virtual Reading<std::string> pci_bus_id() const = 0;
  virtual Reading<std::string> driver_version() const = 0;
  virtual Reading<std::string> cuda_driver_version() const = 0;  // e.g. "12.4"

  // Energy and power.
  // Total energy counter in millijoules since the driver was loaded (NVML: Volta and newer). It
  // advances in steps (about every 100 ms on an H100): see probe_counter_update_period().
  virtual Reading<std::uint64_t> energy_mj() const = 0;
  // Board power in milliwatts (nvmlDeviceGetPowerUsage: a 1 s average on Ampere and newer).
  virtual Reading<std::uint32_t> power_mw() const = 0;
  // Instantaneous power in milliwatts (NVML field NVML_FI_DEV_POWER_INSTANT).
  virtual Reading<std::uint32_t> instant_power_mw() const = 0;

  // State.
  virtual Reading<std::uint32_t> sm_clock_mhz() const = 0;
  virtual Reading<std::uint32_t> mem_clock_mhz() const = 0;
  virtual Reading<std::uint32_t> temperature_c() const = 0;
  virtual Reading<std::uint32_t> power_limit_mw() const = 0;  // enforced limit
  virtual Reading<GpuMemoryInfo> memory() const = 0;
};

// A meter that reads nothing, saying why: used when NVML is missing or the run is on the CPU.
class UnavailableGpuMeter final : public GpuMeter {
 public:
  explicit UnavailableGpuMeter(std::string reason, unsigned gpu_index = 0)
      : reason_(std::move(reason)), index_(gpu_index) {}

  bool available() const override { return false; }
  std::string unavailable_reason() const override { return reason_; }
  unsigned index() const override { return index_; }

  Reading<std::string> name() const override { return none<std::string>(); }
  Reading<std::string> uuid() const override { return none<std::string>(); }
  Reading<std::string> pci_bus_id() const override { return none<std::string>(); }
  Reading<std::string> driver_version() const override { return none<std::string>(); }
  Reading<std::string> cuda_driver_version() const override { return none<std::string>(); }
  Reading<std::uint64_t> energy_mj() const override { return none<std::uint64_t>(); }
  Reading<std::uint32_t> power_mw() const override { return none<std::uint32_t>(); }
  Reading<std::uint32_t> instant_power_mw() const override { return none<std::uint32_t>(); }
  Reading<std::uint32_t> sm_clock_mhz() const override { return none<std::uint32_t>(); }
  Reading<std::uint32_t> mem_clock_mhz() const override { return none<std::uint32_t>(); }
  Reading<std::uint32_t> temperature_c() const override { return none<std::uint32_t>(); }
  Reading<std::uint32_t> power_limit_mw() const override { return none<std::uint32_t>(); }
  Reading<GpuMemoryInfo> memory() const override { return none<GpuMemoryInfo>(); }

 private:
  template <class T>
  Reading<T> none() const {
    return Reading<T>::unavailable(reason_);
  }
  std::string reason_;
  unsigned index_;
};

}  // namespace eaq::measure
