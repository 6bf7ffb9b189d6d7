// CSV: one header row of field names and one data row, RFC 4180 quoting, null as an empty cell,
// so that pandas.read_csv() loads it (and concatenates trials) directly.
#pragma once

#include <string>
#include <string_view>

#include "report/result.hpp"

namespace eaq::report {

// Quotes a cell when it holds a comma, a quote, a line break or edge spaces; quotes are doubled.
std::string csv_cell(std::string_view text);

std::string to_csv(const Result& result);

}  // namespace eaq::report
