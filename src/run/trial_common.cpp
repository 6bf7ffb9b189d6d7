#include "run/trial_common.hpp"

#include <fmt/format.h>

#include <map>

#include "report/result_fill.hpp"

namespace eaq::run {
namespace {

// The parameter dtype as the seed printed it (torch's names), for the precision's Linear weights.
const char* weight_dtype_name(Precision precision) {
  switch (cuda_precision_traits(precision).weight) {
    case DType::F32:
      return "float32";
    case DType::F16:
      return "float16";
    case DType::BF16:
      return "bfloat16";
    case DType::I8:
      return "int8";
    case DType::F8_E4M3:
      return "float8_e4m3fn";
    default:
      return "unknown";
  }
}

// "cublasLt F16xF16->F16 (f32 accumulate) x24; ...": each distinct GEMM path with its count.
std::string describe_kernels(const std::vector<LinearReport>& linears, const Backend& backend) {
  std::map<std::string, int> counts;
  for (const LinearReport& layer : linears) ++counts[layer.kernel];
  std::string text;
  for (const auto& [kernel, count] : counts) {
    text += fmt::format("{}{} x{}", text.empty() ? "" : "; ", kernel, count);
  }
  return text + "; attention: " + backend.attention_kernel();
}

}  // namespace

void fill_model_fields(report::Result& result, const Backend& backend,
                       const std::vector<LinearReport>& linears, std::int64_t num_parameters,
                       std::size_t weight_bytes) {
  const MemoryStats memory = backend.memory_stats();
  result.set("allocated_gb", static_cast<double>(memory.allocated_bytes) / 1e9);
  result.set("peak_allocated_gb", static_cast<double>(memory.peak_bytes) / 1e9);
  result.set("reserved_gb", static_cast<double>(memory.reserved_bytes) / 1e9);
  result.set("num_parameters", num_parameters);
  result.set("model_size_mb", static_cast<double>(weight_bytes) / 1e6);
  result.set("dtype", weight_dtype_name(backend.precision()));
  result.set("backend", backend.name());
  result.set("kernel_path", describe_kernels(linears, backend));
}

void fill_provenance(report::Result& result, const measure::SystemSnapshot& start,
                     const measure::GpuMeter& meter, const std::vector<std::string>& command_line) {
  report::fill_system(result, start, measure::take_system_snapshot(meter));
  std::vector<const char*> argv;
  for (const std::string& arg : command_line) argv.push_back(arg.c_str());
  report::fill_build_and_command(result, static_cast<int>(argv.size()), argv.data());
}

}  // namespace eaq::run
