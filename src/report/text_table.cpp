#include "report/text_table.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace eaq::report {
namespace {

constexpr std::string_view kSummaryFields[] = {
    "precision",
    "dtype",
    "num_inferences",
    "mean_latency",
    "p99_latency",
    "throughput",
    "accuracy",
    "mean_power_w",
    "idle_power_w",
    "total_energy_j",
    "energy_per_inference_mj",
    "dynamic_energy_per_inference_mj",
    "inferences_per_joule",
    "energy_from_samples_j",
    "energy_counter_update_period_ms",
    "energy_source",
    "energy_quality",
    "energy_window_edges",
};

std::string display_value(const Field& field) {
  if (field.is_null()) return fmt::format("unavailable ({})", field.unavailable_reason);
  if (const double* d = std::get_if<double>(&field.value)) {
    return field.unit.empty() ? fmt::format("{:.6g}", *d)
                              : fmt::format("{:.6g} {}", *d, field.unit);
  }
  const std::string text = format_value(field.value);
  return field.unit.empty() ? text : fmt::format("{} {}", text, field.unit);
}

}  // namespace

std::span<const std::string_view> summary_field_names() {
  return kSummaryFields;
}

std::string to_text_table(const Result& result, std::span<const std::string_view> names) {
  std::vector<const Field*> rows;
  std::size_t width = 0;
  for (std::string_view name : names) {
    if (const Field* field = result.find(name)) {
      rows.push_back(field);
      width = std::max(width, field->name.size());
    }
  }
  std::string out;
  for (const Field* field : rows) {
    out += fmt::format("  {:<{}}  {}\n", field->name, width, display_value(*field));
  }
  return out;
}

}  // namespace eaq::report
