#include "measure/system_info.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <fmt/format.h>

#include <ctime>
#include <fstream>
#include <thread>

namespace eaq::measure {
namespace {

std::tm utc_tm(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return tm;
}

std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    // x86 says "model name"; some ARM kernels only give "Hardware" or "CPU part".
    if (line.rfind("model name", 0) == 0 || line.rfind("Hardware", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

}  // namespace

HostInfo host_info() {
  HostInfo host;
  host.cpu_model = cpu_model_name();
  host.hardware_threads = std::thread::hardware_concurrency();
  char name[256] = {};
  host.hostname = ::gethostname(name, sizeof(name) - 1) == 0 ? name : "unknown";
  utsname uts{};
  host.kernel = ::uname(&uts) == 0 ? fmt::format("{} {}", uts.sysname, uts.release) : "unknown";
  return host;
}

GpuSnapshot gpu_snapshot(const GpuMeter& meter) {
  GpuSnapshot gpu;
  gpu.index = meter.index();
  gpu.name = meter.name();
  gpu.uuid = meter.uuid();
  gpu.pci_bus_id = meter.pci_bus_id();
  gpu.driver_version = meter.driver_version();
  gpu.cuda_driver_version = meter.cuda_driver_version();
  gpu.sm_clock_mhz = meter.sm_clock_mhz();
  gpu.mem_clock_mhz = meter.mem_clock_mhz();
  gpu.temperature_c = meter.temperature_c();
  gpu.power_limit_mw = meter.power_limit_mw();
  gpu.memory = meter.memory();
  return gpu;
}

SystemSnapshot take_system_snapshot(const GpuMeter& meter) {
  SystemSnapshot snapshot;
  snapshot.timestamp_utc = iso8601_utc(std::chrono::system_clock::now());
  snapshot.host = host_info();
  snapshot.gpu = gpu_snapshot(meter);
  return snapshot;
}

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  const std::tm tm = utc_tm(t);
  const auto since_epoch = t.time_since_epoch();
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (millis + 1000) % 1000);
}

std::string filename_timestamp(std::chrono::system_clock::time_point t) {
  const std::tm tm = utc_tm(t);
  return fmt::format("{:04}{:02}{:02}_{:02}{:02}{:02}", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

}  // namespace eaq::measure
