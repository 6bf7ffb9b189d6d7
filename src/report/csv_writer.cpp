#include "report/csv_writer.hpp"

namespace eaq::report {

std::string csv_cell(std::string_view text) {
  const bool needs_quotes = text.find_first_of(",\"\r\n") != std::string_view::npos ||
                            (!text.empty() && (text.front() == ' ' || text.back() == ' '));
  if (!needs_quotes) return std::string(text);
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

std::string to_csv(const Result& result) {
  std::string header;
  std::string row;
  bool first = true;
  for (const Field& field : result.fields()) {
    if (!first) {
      header += ',';
      row += ',';
    }
    first = false;
    header += csv_cell(field.name);
    row += csv_cell(format_value(field.value));
  }
  return header + "\n" + row + "\n";
}

}  // namespace eaq::report
