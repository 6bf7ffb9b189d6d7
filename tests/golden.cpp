#include "golden.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "test_util.hpp"

namespace eaq::test {

std::filesystem::path golden_dir() {
  return std::filesystem::path(source_dir()) / "tests" / "golden";
}

std::vector<std::string> golden_fixtures_with_prefix(const std::vector<std::string>& prefixes) {
  std::vector<std::string> names;
  if (std::filesystem::is_directory(golden_dir())) {
    for (const auto& entry : std::filesystem::directory_iterator(golden_dir())) {
      const std::string name = entry.path().filename().string();
      if (!entry.is_directory() || !std::filesystem::exists(entry.path() / "config.json")) continue;
      for (const std::string& prefix : prefixes) {
        if (name.rfind(prefix, 0) == 0) {
          names.push_back(name);
          break;
        }
      }
    }
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("missing_fixture");
  return names;
}

double max_relative_error(const HostTensor& actual, const HostTensor& expected) {
  const HostTensor a = actual.to_f32();
  const HostTensor b = expected.to_f32();
  if (a.numel() != b.numel()) return std::numeric_limits<double>::infinity();
  double max_diff = 0.0, max_ref = 0.0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.data<float>()[i], y = b.data<float>()[i];
    if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<double>::infinity();
    max_diff = std::max(max_diff, std::fabs(x - y));
    max_ref = std::max(max_ref, std::fabs(y));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

}  // namespace eaq::test
