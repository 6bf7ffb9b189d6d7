// A markdown table of several results, one row per result: for docs/results.md and sweeps.
#pragma once

#include <span>
#include <string>

#include "report/result.hpp"

namespace eaq::report {

// Columns are field names; the header shows "name (unit)". Doubles get `significant_digits`
// significant digits; an unavailable or missing value shows as "unavailable" (never 0). '|' in
// values is escaped.
std::string to_markdown_table(std::span<const Result> results, std::span<const std::string> columns,
                              int significant_digits = 4);

}  // namespace eaq::report
