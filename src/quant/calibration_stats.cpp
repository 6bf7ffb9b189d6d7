#include "quant/calibration_stats.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace eaq::quant {

std::string_view calibration_method_name(CalibrationMethod method) {
  switch (method) {
    case CalibrationMethod::Max:
      return "max";
    case CalibrationMethod::Percentile:
      return "percentile";
  }
  EAQ_ASSERT(false);
}

CalibrationMethod parse_calibration_method(std::string_view name, std::string_view flag) {
  if (name == "max") return CalibrationMethod::Max;
  if (name == "percentile") return CalibrationMethod::Percentile;
  fail("{} {}: unknown calibration method; choose max or percentile", flag, name);
}

AbsHistogram::AbsHistogram(int bins) : counts_(static_cast<std::size_t>(bins), 0) {
  EAQ_ASSERT(bins >= 2 && bins % 2 == 0);
}

void AbsHistogram::grow_to(float value) {
  if (range_ == 0.0f) {
    // The first non-zero value sets the initial range: the next power of two above it, so that
    // later doublings keep bin edges at exact binary fractions.
    range_ = std::exp2(std::floor(std::log2(value)) + 1.0f);
    counts_[0] += zeros_before_range_;
    zeros_before_range_ = 0;
    return;
  }
  while (value >= range_) {
    const std::size_t half = counts_.size() / 2;
    for (std::size_t i = 0; i < half; ++i) counts_[i] = counts_[2 * i] + counts_[2 * i + 1];
    std::fill(counts_.begin() + static_cast<std::ptrdiff_t>(half), counts_.end(), 0);
    range_ *= 2.0f;
  }
}

void AbsHistogram::add(const float* values, std::int64_t count, const std::string& what) {
  float batch_max = 0.0f;
  for (std::int64_t i = 0; i < count; ++i) {
    const float a = std::fabs(values[i]);
    EAQ_CHECK(std::isfinite(a), "{}: calibration saw a non-finite activation ({}) at element {}",
              what, values[i], i);
    batch_max = std::max(batch_max, a);
  }
  if (batch_max > 0.0f && (range_ == 0.0f || batch_max >= range_)) grow_to(batch_max);
  max_ = std::max(max_, batch_max);
  count_ += static_cast<std::uint64_t>(count);
  if (range_ == 0.0f) {
    zeros_before_range_ += static_cast<std::uint64_t>(count);
    return;
  }
  const double bins_per_unit = static_cast<double>(counts_.size()) / range_;
  const auto last = static_cast<std::int64_t>(counts_.size()) - 1;
  for (std::int64_t i = 0; i < count; ++i) {
    const auto bin = static_cast<std::int64_t>(std::fabs(values[i]) * bins_per_unit);
    ++counts_[static_cast<std::size_t>(std::min(bin, last))];
  }
}

float AbsHistogram::percentile(double percent) const {
  EAQ_CHECK(percent > 0.0 && percent <= 100.0, "percentile {} is outside (0, 100]", percent);
  if (count_ == 0) return 0.0f;
  if (percent == 100.0 || range_ == 0.0f) return max_;
  const double target = percent / 100.0 * static_cast<double>(count_);
  const double width = static_cast<double>(range_) / static_cast<double>(counts_.size());
  double cumulative = 0.0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    const double next = cumulative + static_cast<double>(counts_[i]);
    if (next >= target && counts_[i] > 0) {
      const double fraction = (target - cumulative) / static_cast<double>(counts_[i]);
      const double value = (static_cast<double>(i) + fraction) * width;
      return std::min(static_cast<float>(value), max_);
    }
    cumulative = next;
  }
  return max_;
}

float calibrated_absmax(const AbsHistogram& histogram, CalibrationMethod method,
                        double percentile) {
  return method == CalibrationMethod::Max ? histogram.max() : histogram.percentile(percentile);
}

}  // namespace eaq::quant
