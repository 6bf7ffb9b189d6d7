#include "measure/stats.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"

namespace eaq::measure {
namespace {

// Linear interpolation between closest ranks of sorted values (numpy "linear").
double percentile_sorted(const std::vector<double>& sorted, double p) {
  EAQ_CHECK(p >= 0.0 && p <= 100.0, "percentile {} is outside [0, 100]", p);
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lower = static_cast<std::size_t>(std::floor(rank));
  const std::size_t upper = std::min(lower + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(lower);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

std::vector<double> sorted_copy(std::span<const double> values) {
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  return sorted;
}

}  // namespace

double mean(std::span<const double> values) {
  EAQ_CHECK(!values.empty(), "mean of an empty list of values");
  double sum = 0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

double std_dev(std::span<const double> values, int ddof) {
  EAQ_CHECK(ddof >= 0, "std_dev: ddof must be >= 0, got {}", ddof);
  EAQ_CHECK(values.size() > static_cast<std::size_t>(ddof),
            "std_dev with ddof={} needs more than {} value(s), got {}", ddof, ddof, values.size());
  const double m = mean(values);
  double sum_sq = 0;
  for (double v : values) sum_sq += (v - m) * (v - m);
  return std::sqrt(sum_sq / static_cast<double>(values.size() - static_cast<std::size_t>(ddof)));
}

double percentile(std::span<const double> values, double p) {
  EAQ_CHECK(!values.empty(), "percentile of an empty list of values");
  return percentile_sorted(sorted_copy(values), p);
}

double median(std::span<const double> values) {
  return percentile(values, 50.0);
}

std::optional<Summary> summarize(std::span<const double> values) {
  if (values.empty()) return std::nullopt;
  const std::vector<double> sorted = sorted_copy(values);
  Summary s;
  s.count = values.size();
  s.mean = mean(values);
  s.std = std_dev(values, 0);
  s.min = sorted.front();
  s.max = sorted.back();
  s.median = percentile_sorted(sorted, 50.0);
  s.p95 = percentile_sorted(sorted, 95.0);
  s.p99 = percentile_sorted(sorted, 99.0);
  return s;
}

}  // namespace eaq::measure
