#include "report/json_writer.hpp"

#include <nlohmann/json.hpp>

namespace eaq::report {
namespace {

nlohmann::ordered_json to_json_value(const Value& value) {
  struct Converter {
    nlohmann::ordered_json operator()(std::monostate) const { return nullptr; }
    nlohmann::ordered_json operator()(bool b) const { return b; }
    nlohmann::ordered_json operator()(std::int64_t i) const { return i; }
    nlohmann::ordered_json operator()(double d) const { return d; }
    nlohmann::ordered_json operator()(const std::string& s) const { return s; }
  };
  return std::visit(Converter{}, value);
}

}  // namespace

std::string to_json(const Result& result, int indent) {
  nlohmann::ordered_json doc;
  doc["schema_version"] = kJsonSchemaVersion;
  for (Section section : kSections)
    doc[std::string(section_name(section))] = nlohmann::ordered_json::object();
  nlohmann::ordered_json units = nlohmann::ordered_json::object();
  nlohmann::ordered_json reasons = nlohmann::ordered_json::object();
  for (const Field& field : result.fields()) {
    doc[std::string(section_name(field.section))][field.name] = to_json_value(field.value);
    if (!field.unit.empty()) units[field.name] = field.unit;
    if (field.is_null()) reasons[field.name] = field.unavailable_reason;
  }
  doc["units"] = std::move(units);
  doc["unavailable_reasons"] = std::move(reasons);
  // Replace invalid UTF-8 (e.g. a command line in another encoding) instead of throwing.
  return doc.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace eaq::report
