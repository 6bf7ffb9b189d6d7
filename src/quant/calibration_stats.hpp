// Statistics of the absolute values a Linear layer sees at its input during calibration, and the
// two ways eaq turns them into a static int8 scale:
//   max:        the largest absolute value observed;
//   percentile: the p-th percentile of all observed absolute values (e.g. 99.99), which ignores
//               rare outliers at the price of saturating them.
// Percentiles come from a histogram over [0, range) with a fixed number of bins; when a value
// beyond the range arrives, the range doubles (as often as needed) and pairs of bins merge, so no
// count is ever moved between bins inexactly. A percentile is therefore exact up to one bin width
// (range / bins), and linear interpolation inside its bin.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace eaq::quant {

enum class CalibrationMethod { Max, Percentile };
std::string_view calibration_method_name(CalibrationMethod method);  // "max", "percentile"
// Throws naming `flag` for an unknown name.
CalibrationMethod parse_calibration_method(std::string_view name,
                                           std::string_view flag = "--calibration-method");

class AbsHistogram {
 public:
  explicit AbsHistogram(int bins = 4096);

  // Adds |v| for each value; throws on NaN or infinity (naming `what`).
  void add(const float* values, std::int64_t count, const std::string& what);

  std::uint64_t count() const { return count_; }
  float max() const { return max_; }
  float range() const { return range_; }
  int bins() const { return static_cast<int>(counts_.size()); }
  // The value below which `percent` % of the observed absolute values lie (0 < percent <= 100);
  // 100 gives max(). 0 when nothing was observed.
  float percentile(double percent) const;

 private:
  void grow_to(float value);

  std::vector<std::uint64_t> counts_;
  float range_ = 0.0f;  // bins cover [0, range_); 0 until the first non-zero value
  float max_ = 0.0f;
  std::uint64_t count_ = 0;
  std::uint64_t zeros_before_range_ = 0;  // zeros seen while range_ was still 0
};

// The absolute value a static scale should map to 127, by method.
float calibrated_absmax(const AbsHistogram& histogram, CalibrationMethod method, double percentile);

}  // namespace eaq::quant
