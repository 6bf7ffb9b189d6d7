// `eaq info`: version, commit, build options, CPU, and the GPUs the driver can see.
#include <fmt/format.h>

#include <fstream>
#include <string>
#include <thread>

#include "cli/commands.hpp"
#include "core/build_info.hpp"

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
  return 0;
}

}  // namespace

Command info_command() {
  return {"info", "Print version, commit, build options, CPU and visible GPUs",
          [](CLI::App&) { return std::function<int()>(run_info); }};
}

}  // namespace eaq::cli
