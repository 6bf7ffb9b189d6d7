#include "report/schema.hpp"

#include <algorithm>

namespace eaq::report {
namespace {

constexpr Section M = Section::Metrics;
constexpr Section D = Section::Metadata;
constexpr Section C = Section::Configuration;

// Grouped by section (metrics, metadata, configuration): the output order.
constexpr FieldSpec kSchema[] = {
    // --- Performance (seed) ---
    {"mean_latency", M, "s",
     "mean latency of one measured iteration (one forward pass of a batch)"},
    {"std_latency", M, "s",
     "standard deviation of the iteration latency (population, ddof=0, like np.std)"},
    {"throughput", M, "samples/s", "samples processed / total measured time"},
    {"min_latency", M, "s", "fastest iteration"},
    {"max_latency", M, "s", "slowest iteration"},
    {"median_latency", M, "s", "median iteration latency"},
    {"p95_latency", M, "s",
     "95th percentile iteration latency (linear interpolation, like np.percentile)"},
    {"p99_latency", M, "s",
     "99th percentile iteration latency (linear interpolation, like np.percentile)"},
    {"total_time_s", M, "s", "wall time of the measured loop"},
    {"num_inferences", M, "samples",
     "samples processed in the measured loop (iterations x batch size)"},
    // --- Power (seed): statistics of the power samples inside the measured window ---
    {"mean_power_w", M, "W", "mean of the power samples inside the measured window"},
    {"std_power_w", M, "W", "standard deviation of the power samples (population, ddof=0)"},
    {"min_power_w", M, "W", "lowest power sample"},
    {"max_power_w", M, "W", "highest power sample"},
    {"median_power_w", M, "W", "median power sample"},
    {"num_power_samples", M, "count", "power samples inside the measured window"},
    {"idle_power_w", M, "W", "GPU power at idle, measured before the run"},
    // --- Energy (seed, then ours) ---
    {"total_energy_j", M, "J", "energy over the measured window (see energy_source)"},
    {"energy_per_inference_j", M, "J", "total_energy_j / num_inferences"},
    {"energy_per_inference_mj", M, "mJ", "total_energy_j / num_inferences, in millijoules"},
    {"inferences_per_joule", M, "1/J", "num_inferences / total_energy_j"},
    {"dynamic_energy_j", M, "J", "total_energy_j - idle_power_w x energy_window_s"},
    {"dynamic_energy_per_inference_mj", M, "mJ",
     "dynamic_energy_j / num_inferences, in millijoules"},
    {"counter_energy_j", M, "J", "energy from the hardware counter (NVML total energy or RAPL)"},
    {"energy_from_samples_j", M, "J", "trapezoid integral of the power samples over the window"},
    {"energy_from_samples_per_inference_mj", M, "mJ",
     "energy_from_samples_j / num_inferences, in millijoules"},
    {"energy_window_s", M, "s", "length of the energy window"},
    {"energy_counter_update_period_ms", M, "ms", "observed update period of the energy counter"},
    {"energy_window_edges", M, "",
     "where the energy window starts and ends: at energy-counter updates (the loop waits for "
     "one, then runs on until the next) or at the loop's first and last iterations"},
    {"energy_quality", M, "", "'ok' or quality flags joined by ';' (see energy_quality_notes)"},
    {"energy_source", M, "",
     "where total_energy_j comes from: nvml_counter, rapl, nvml_power_samples, nvidia-smi or none"},
    // --- Accuracy (seed) ---
    {"accuracy", M, "fraction",
     "classification accuracy (0-1), computed outside the measured window"},
    {"num_correct", M, "count", "correct predictions"},
    {"num_samples_accuracy", M, "count", "samples scored for accuracy"},
    // --- Memory (seed) ---
    {"allocated_gb", M, "GB", "device memory allocated by eaq after the run (1 GB = 1e9 bytes)"},
    {"peak_allocated_gb", M, "GB", "peak device memory allocated by eaq (1 GB = 1e9 bytes)"},
    {"reserved_gb", M, "GB", "device memory reserved by eaq's allocator (1 GB = 1e9 bytes)"},
    // --- Model (seed) ---
    {"num_parameters", M, "count", "model parameters"},
    {"model_size_mb", M, "MB",
     "bytes of the parameters as stored for this precision (1 MB = 1e6 bytes)"},
    {"dtype", M, "", "parameter data type"},

    // === Metadata: what makes the number reproducible ===
    {"timestamp", D, "", "run start, ISO 8601 UTC"},
    {"timestamp_end", D, "", "run end, ISO 8601 UTC"},
    {"eaq_version", D, "", "eaq version"},
    {"git_commit", D, "", "commit eaq was built from"},
    {"command_line", D, "", "the command that produced this result"},
    {"hostname", D, "", "host name"},
    {"cpu_model", D, "", "CPU model"},
    {"cpu_threads", D, "count", "hardware threads"},
    {"kernel", D, "", "operating system kernel"},
    {"backend", D, "", "compute backend that ran (cuda, cpu)"},
    {"kernel_path", D, "", "which GEMM path ran for this precision"},
    {"gpu_index", D, "", "GPU index (NVML numbering)"},
    {"gpu_name", D, "", "GPU name"},
    {"gpu_uuid", D, "", "GPU UUID"},
    {"gpu_pci_bus_id", D, "", "GPU PCI bus id"},
    {"driver_version", D, "", "NVIDIA driver version"},
    {"cuda_driver_version", D, "", "CUDA version the driver supports"},
    {"gpu_power_limit_w", D, "W", "enforced GPU power limit"},
    {"gpu_memory_total_gb", D, "GB", "GPU memory (1 GB = 1e9 bytes)"},
    {"sm_clock_mhz_start", D, "MHz", "SM clock at the start of the run"},
    {"sm_clock_mhz_end", D, "MHz", "SM clock at the end of the run"},
    {"mem_clock_mhz_start", D, "MHz", "memory clock at the start of the run"},
    {"mem_clock_mhz_end", D, "MHz", "memory clock at the end of the run"},
    {"temperature_c_start", D, "C", "GPU temperature at the start of the run"},
    {"temperature_c_end", D, "C", "GPU temperature at the end of the run"},
    {"idle_power_source", D, "", "how idle_power_w was measured"},
    {"energy_quality_notes", D, "", "one sentence per energy_quality flag"},

    // === Configuration: the flags (seed names, then ours) ===
    {"model", C, "", "--model"},
    {"precision", C, "", "--precision"},
    {"dataset", C, "", "--dataset"},
    {"num_iters", C, "count", "--num_iters"},
    {"warmup_steps", C, "count", "--warmup_steps"},
    {"power_sample_interval", C, "ms", "--power_sample_interval"},
    {"device", C, "", "--device"},
    {"gpu_id", C, "", "--gpu_id"},
    {"output", C, "", "--output"},
    {"trial", C, "", "--trial"},
    {"no_warmup", C, "", "--no_warmup"},
    {"batch_size", C, "samples", "--batch-size"},
    {"power_source", C, "", "--power-source"},
    {"idle_seconds", C, "s", "--idle-seconds"},
    {"min_duration_s", C, "s", "--min-duration-s"},
    {"sync_each_iter", C, "", "--sync-each-iter"},
};

}  // namespace

std::span<const FieldSpec> result_schema() {
  return kSchema;
}

const FieldSpec* find_field_spec(std::string_view name) {
  const auto it = std::find_if(std::begin(kSchema), std::end(kSchema),
                               [&](const FieldSpec& spec) { return spec.name == name; });
  return it == std::end(kSchema) ? nullptr : &*it;
}

}  // namespace eaq::report
