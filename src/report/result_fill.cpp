#include "report/result_fill.hpp"

#include <fmt/format.h>

#include "core/build_info.hpp"
#include "core/error.hpp"
#include "measure/stats.hpp"

namespace eaq::report {

void fill_latency(Result& result, std::span<const double> iteration_latencies_s,
                  double total_time_s, std::uint64_t num_inferences) {
  const auto summary = measure::summarize(iteration_latencies_s);
  EAQ_CHECK(summary.has_value(), "no iteration latencies to summarise");
  EAQ_CHECK(total_time_s > 0, "total measured time must be positive, got {} s", total_time_s);
  result.set("mean_latency", summary->mean);
  result.set("std_latency", summary->std);
  result.set("min_latency", summary->min);
  result.set("max_latency", summary->max);
  result.set("median_latency", summary->median);
  result.set("p95_latency", summary->p95);
  result.set("p99_latency", summary->p99);
  result.set("total_time_s", total_time_s);
  result.set("num_inferences", num_inferences);
  result.set("throughput", static_cast<double>(num_inferences) / total_time_s);
}

void fill_energy(Result& result, const measure::EnergyResult& energy) {
  if (energy.power_w) {
    const measure::Summary& power = *energy.power_w;
    result.set("mean_power_w", power.mean);
    result.set("std_power_w", power.std);
    result.set("min_power_w", power.min);
    result.set("max_power_w", power.max);
    result.set("median_power_w", power.median);
  } else {
    for (const char* name :
         {"mean_power_w", "std_power_w", "min_power_w", "max_power_w", "median_power_w"}) {
      result.set_unavailable(name, energy.power_w.reason());
    }
  }
  if (energy.energy_from_samples_j || energy.power_w) {
    result.set("num_power_samples", energy.num_power_samples);
  } else {
    result.set_unavailable("num_power_samples", energy.energy_from_samples_j.reason());
  }
  result.set("idle_power_w", energy.idle_power_w);
  result.set("total_energy_j", energy.total_energy_j);
  result.set("energy_per_inference_j", energy.energy_per_inference_j);
  result.set("energy_per_inference_mj", energy.energy_per_inference_mj);
  result.set("inferences_per_joule", energy.inferences_per_joule);
  result.set("dynamic_energy_j", energy.dynamic_energy_j);
  result.set("dynamic_energy_per_inference_mj", energy.dynamic_energy_per_inference_mj);
  result.set("counter_energy_j", energy.counter_energy_j);
  result.set("energy_from_samples_j", energy.energy_from_samples_j);
  result.set("energy_from_samples_per_inference_mj", energy.energy_from_samples_per_inference_mj);
  result.set("energy_window_s", energy.duration_s);
  result.set("energy_counter_update_period_ms", energy.counter_update_period_ms);
  result.set("energy_source", energy.energy_source);
  result.set("energy_quality", energy.quality.summary());
  std::string notes;
  for (const std::string& message : energy.quality.messages) {
    notes += (notes.empty() ? "" : " | ") + message;
  }
  result.set("energy_quality_notes", notes);
}

void fill_system(Result& result, const measure::SystemSnapshot& start,
                 const measure::SystemSnapshot& end) {
  result.set("timestamp", start.timestamp_utc);
  result.set("timestamp_end", end.timestamp_utc);
  result.set("hostname", start.host.hostname);
  result.set("cpu_model", start.host.cpu_model);
  result.set("cpu_threads", start.host.hardware_threads);
  result.set("kernel", start.host.kernel);

  const measure::GpuSnapshot& gpu = start.gpu;
  if (gpu.name) {
    result.set("gpu_index", gpu.index);
  } else {
    result.set_unavailable("gpu_index", gpu.name.reason());
  }
  result.set("gpu_name", gpu.name);
  result.set("gpu_uuid", gpu.uuid);
  result.set("gpu_pci_bus_id", gpu.pci_bus_id);
  result.set("driver_version", gpu.driver_version);
  result.set("cuda_driver_version", gpu.cuda_driver_version);
  result.set("gpu_power_limit_w",
             gpu.power_limit_mw.map([](std::uint32_t mw) { return mw / 1e3; }));
  result.set("gpu_memory_total_gb", gpu.memory.map([](const measure::GpuMemoryInfo& m) {
    return static_cast<double>(m.total_bytes) / 1e9;
  }));
  result.set("sm_clock_mhz_start", start.gpu.sm_clock_mhz);
  result.set("sm_clock_mhz_end", end.gpu.sm_clock_mhz);
  result.set("mem_clock_mhz_start", start.gpu.mem_clock_mhz);
  result.set("mem_clock_mhz_end", end.gpu.mem_clock_mhz);
  result.set("temperature_c_start", start.gpu.temperature_c);
  result.set("temperature_c_end", end.gpu.temperature_c);
}

std::string join_command_line(int argc, const char* const* argv) {
  std::string joined;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i] != nullptr ? argv[i] : "";
    const bool plain = !arg.empty() && arg.find_first_not_of(
                                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789-_./=:,+@%") == std::string_view::npos;
    if (i > 0) joined += ' ';
    if (plain) {
      joined += arg;
      continue;
    }
    joined += '\'';
    for (char c : arg) {
      if (c == '\'')
        joined += "'\\''";
      else
        joined += c;
    }
    joined += '\'';
  }
  return joined;
}

void fill_build_and_command(Result& result, int argc, const char* const* argv) {
  const BuildInfo& build = build_info();
  result.set("eaq_version", build.version);
  result.set("git_commit", build.git_commit);
  result.set("command_line", join_command_line(argc, argv));
}

}  // namespace eaq::report
