#include "report/markdown_table.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace eaq::report {
namespace {

std::string escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::string cell(const Result& result, const std::string& column, int digits) {
  const Field* field = result.find(column);
  if (field == nullptr || field->is_null()) return "unavailable";
  if (const double* d = std::get_if<double>(&field->value))
    return fmt::format("{:.{}g}", *d, digits);
  return escape(format_value(field->value));
}

}  // namespace

std::string to_markdown_table(std::span<const Result> results, std::span<const std::string> columns,
                              int significant_digits) {
  EAQ_CHECK(!columns.empty(), "a markdown table needs at least one column");
  EAQ_CHECK(significant_digits >= 1 && significant_digits <= 17,
            "significant digits must be in 1..17, got {}", significant_digits);
  std::string header = "|";
  std::string rule = "|";
  for (const std::string& column : columns) {
    std::string unit;
    for (const Result& result : results) {
      if (const Field* field = result.find(column); field != nullptr && !field->unit.empty()) {
        unit = field->unit;
        break;
      }
    }
    header +=
        fmt::format(" {} |", escape(unit.empty() ? column : fmt::format("{} ({})", column, unit)));
    rule += "---|";
  }
  std::string out = header + "\n" + rule + "\n";
  for (const Result& result : results) {
    out += "|";
    for (const std::string& column : columns)
      out += fmt::format(" {} |", cell(result, column, significant_digits));
    out += "\n";
  }
  return out;
}

}  // namespace eaq::report
