// The seed's "Metrics Included" list with its units: our compatibility contract, copied here by
// hand from /work/shared/seed (so the test does not read it from the code it checks).
#pragma once

#include <string_view>

namespace eaq::test {

struct SeedMetric {
  std::string_view name;
  std::string_view unit;  // "" where the seed gives none
};

inline constexpr SeedMetric kSeedMetrics[] = {
    {"mean_latency", "s"},
    {"std_latency", "s"},
    {"throughput", "samples/s"},
    {"min_latency", "s"},
    {"max_latency", "s"},
    {"median_latency", "s"},
    {"mean_power_w", "W"},
    {"std_power_w", "W"},
    {"min_power_w", "W"},
    {"max_power_w", "W"},
    {"median_power_w", "W"},
    {"num_power_samples", "count"},
    {"total_energy_j", "J"},
    {"energy_per_inference_j", "J"},
    {"energy_per_inference_mj", "mJ"},
    {"inferences_per_joule", "1/J"},
    {"accuracy", "fraction"},
    {"num_correct", "count"},
    {"num_samples_accuracy", "count"},
    {"allocated_gb", "GB"},
    {"peak_allocated_gb", "GB"},
    {"reserved_gb", "GB"},
    {"num_parameters", "count"},
    {"model_size_mb", "MB"},
    {"dtype", ""},
};

}  // namespace eaq::test
