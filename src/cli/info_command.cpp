// `eaq info`: version, commit, build options, CPU, and the GPUs the driver can see.
#include <fmt/format.h>

#include <fstream>
#include <string>
#include <thread>

#include "cli/commands.hpp"
#include "core/build_info.hpp"
#include "measure/nvml.hpp"

namespace eaq::cli {
namespace {

std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

int run_info() {
  const BuildInfo& build = build_info();
  fmt::print("eaq {} (commit {})\n", build.version, build.git_commit);
  fmt::print("build:   {} with {}", build.build_type, build.cxx_compiler);
  if (build.sanitized) fmt::print(", ASan+UBSan");
  fmt::print("\n");
  if (build.with_cuda) {
    fmt::print("cuda:    built with nvcc {} for architectures {}\n", build.cuda_compiler,
               build.cuda_architectures);
  } else {
    fmt::print("cuda:    not built (CPU backend only)\n");
  }
  fmt::print("cpu:     {} ({} hardware threads)\n", cpu_model_name(),
             std::thread::hardware_concurrency());
  // GPUs as the driver sees them (NVML), whether or not this build has CUDA.
  const measure::Reading<unsigned> count = measure::nvml_device_count();
  if (!count) {
    fmt::print("gpus:    none visible ({})\n", count.reason());
    return 0;
  }
  fmt::print("gpus:    {}\n", *count);
  for (unsigned i = 0; i < *count; ++i) {
    const auto meter = measure::open_nvml_meter(i);
    fmt::print("gpu {}:   {} (uuid {}, driver {}, CUDA {})\n", i,
               meter->name().optional().value_or("unknown"),
               meter->uuid().optional().value_or("unknown"),
               meter->driver_version().optional().value_or("unknown"),
               meter->cuda_driver_version().optional().value_or("unknown"));
  }
  return 0;
}

}  // namespace

Command info_command() {
  return {"info", "Print version, commit, build options, CPU and visible GPUs",
          [](CLI::App&) { return std::function<int()>(run_info); }};
}

}  // namespace eaq::cli
