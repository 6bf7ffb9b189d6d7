// Summary statistics with numpy's conventions, so numbers compare with the seed's (numpy/pandas):
// - std is the POPULATION standard deviation (ddof = 0), numpy's np.std default. Note that pandas'
//   Series.std() defaults to ddof = 1; pass ddof = 1 to std_dev() for that.
// - percentiles interpolate linearly between closest ranks (numpy's default method "linear"):
//   rank = p / 100 * (n - 1).
#pragma once

#include <cstddef>
#include <optional>
#include <span>

namespace eaq::measure {

struct Summary {
  std::size_t count = 0;
  double mean = 0;
  double std = 0;  // population (ddof = 0)
  double min = 0;
  double max = 0;
  double median = 0;
  double p95 = 0;
  double p99 = 0;
};

// Throw eaq::Error on an empty input (or, for std_dev, fewer than ddof + 1 values).
double mean(std::span<const double> values);
double std_dev(std::span<const double> values, int ddof = 0);
// p in [0, 100]; `values` need not be sorted.
double percentile(std::span<const double> values, double p);
double median(std::span<const double> values);

// Every statistic at once (one sort); nullopt for an empty input.
std::optional<Summary> summarize(std::span<const double> values);

}  // namespace eaq::measure
