#include "report/result.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

#include "report/schema.hpp"

namespace eaq::report {

std::string_view section_name(Section section) {
  switch (section) {
    case Section::Metrics:
      return "metrics";
    case Section::Metadata:
      return "metadata";
    case Section::Configuration:
      return "configuration";
  }
  return "unknown";
}

std::string format_value(const Value& value) {
  struct Formatter {
    std::string operator()(std::monostate) const { return {}; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(std::int64_t i) const { return fmt::format("{}", i); }
    std::string operator()(double d) const { return fmt::format("{}", d); }
    std::string operator()(const std::string& s) const { return s; }
  };
  return std::visit(Formatter{}, value);
}

Result Result::from_schema() {
  Result result;
  for (const FieldSpec& spec : result_schema()) {
    result.fields_.push_back({std::string(spec.name), spec.section, std::string(spec.unit),
                              std::monostate{}, "not measured"});
  }
  return result;
}

void Result::set(std::string_view name, double value) {
  if (!std::isfinite(value)) {
    set_unavailable(name, fmt::format("not a finite number ({})", value));
    return;
  }
  set_value(name, value);
}

void Result::set(std::string_view name, bool value) {
  set_value(name, value);
}

void Result::set(std::string_view name, std::string value) {
  set_value(name, std::move(value));
}

void Result::set_unavailable(std::string_view name, std::string reason) {
  Field& field = mutable_field(name);
  field.value = std::monostate{};
  field.unavailable_reason = reason.empty() ? "unavailable" : std::move(reason);
}

void Result::add(Section section, std::string name, std::string unit, Value value,
                 std::string unavailable_reason) {
  EAQ_CHECK(!name.empty(), "a result field needs a name");
  EAQ_CHECK(find(name) == nullptr, "result field '{}' already exists", name);
  Field field{std::move(name), section, std::move(unit), std::move(value), {}};
  if (field.is_null()) {
    field.unavailable_reason =
        unavailable_reason.empty() ? "unavailable" : std::move(unavailable_reason);
  }
  // After the last field of the same or an earlier section, keeping the sections grouped.
  const auto position = std::find_if(fields_.begin(), fields_.end(), [&](const Field& f) {
    return static_cast<int>(f.section) > static_cast<int>(section);
  });
  fields_.insert(position, std::move(field));
}

const Field* Result::find(std::string_view name) const {
  const auto it =
      std::find_if(fields_.begin(), fields_.end(), [&](const Field& f) { return f.name == name; });
  return it == fields_.end() ? nullptr : &*it;
}

const Field& Result::at(std::string_view name) const {
  const Field* field = find(name);
  EAQ_CHECK(field != nullptr, "result has no field '{}'", name);
  return *field;
}

void Result::set_value(std::string_view name, Value value) {
  Field& field = mutable_field(name);
  field.value = std::move(value);
  field.unavailable_reason.clear();
}

void Result::set_unsigned(std::string_view name, std::uint64_t value) {
  EAQ_CHECK(value <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()),
            "result field '{}': {} does not fit a signed 64-bit integer", name, value);
  set_value(name, static_cast<std::int64_t>(value));
}

Field& Result::mutable_field(std::string_view name) {
  const auto it =
      std::find_if(fields_.begin(), fields_.end(), [&](const Field& f) { return f.name == name; });
  EAQ_CHECK(it != fields_.end(),
            "result has no field '{}' (a schema field name, or add() it first)", name);
  return *it;
}

}  // namespace eaq::report
