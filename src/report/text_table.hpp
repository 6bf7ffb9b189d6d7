// The short table `eaq measure` prints on stdout: one aligned "name  value unit" row per field.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "report/result.hpp"

namespace eaq::report {

// The fields the summary shows by default (the headline metrics).
std::span<const std::string_view> summary_field_names();

// Rows for `names` (fields the result lacks are skipped). Numbers get 6 significant digits;
// an unavailable value prints as "unavailable (<reason>)".
std::string to_text_table(const Result& result,
                          std::span<const std::string_view> names = summary_field_names());

}  // namespace eaq::report
