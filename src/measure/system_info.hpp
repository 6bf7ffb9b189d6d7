// What makes a measurement reproducible: the host, the GPU's identity and its state (clocks,
// temperature, power limit, memory), captured at the start and the end of a run.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "measure/gpu_meter.hpp"
#include "measure/reading.hpp"

namespace eaq::measure {

struct HostInfo {
  std::string cpu_model;  // /proc/cpuinfo "model name", or "unknown"
  unsigned hardware_threads = 0;
  std::string hostname;
  std::string kernel;  // uname: "Linux 6.1.0-18-amd64"
};

struct GpuSnapshot {
  unsigned index = 0;
  Reading<std::string> name;
  Reading<std::string> uuid;
  Reading<std::string> pci_bus_id;
  Reading<std::string> driver_version;
  Reading<std::string> cuda_driver_version;
  Reading<std::uint32_t> sm_clock_mhz;
  Reading<std::uint32_t> mem_clock_mhz;
  Reading<std::uint32_t> temperature_c;
  Reading<std::uint32_t> power_limit_mw;
  Reading<GpuMemoryInfo> memory;
};

struct SystemSnapshot {
  std::string timestamp_utc;  // ISO 8601, e.g. "2025-01-31T12:34:56.789Z"
  HostInfo host;
  GpuSnapshot gpu;
};

HostInfo host_info();
GpuSnapshot gpu_snapshot(const GpuMeter& meter);
// For a CPU run, pass an UnavailableGpuMeter: every GPU field then says why it is missing.
SystemSnapshot take_system_snapshot(const GpuMeter& meter);

// "2025-01-31T12:34:56.789Z" (UTC, milliseconds).
std::string iso8601_utc(std::chrono::system_clock::time_point t);
// "20250131_123456" (UTC): the <timestamp> in results/<precision>/trial_<N>_<timestamp>.csv.
std::string filename_timestamp(std::chrono::system_clock::time_point t);

}  // namespace eaq::measure
