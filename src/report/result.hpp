// The one result schema every printer reads (llama-bench style): an ordered list of named fields,
// grouped as metrics / metadata / configuration. A value is a number, an integer, a bool, a string
// or null ("unavailable"), and a null carries the reason.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "measure/reading.hpp"

namespace eaq::report {

enum class Section { Metrics, Metadata, Configuration };
inline constexpr Section kSections[] = {Section::Metrics, Section::Metadata,
                                        Section::Configuration};
std::string_view section_name(Section section);  // "metrics", "metadata", "configuration"

// std::monostate is null: the field is unavailable.
using Value = std::variant<std::monostate, bool, std::int64_t, double, std::string>;

struct Field {
  std::string name;
  Section section = Section::Metrics;
  std::string unit;  // empty when it has none
  Value value;
  std::string unavailable_reason;  // set exactly when value is null
  bool is_null() const { return std::holds_alternative<std::monostate>(value); }
};

// A number as CSV and tables write it: integers plainly, doubles in the shortest form that reads
// back to the same double, bools as true/false. Null gives "".
std::string format_value(const Value& value);

class Result {
 public:
  Result() = default;  // no fields; see from_schema()
  // Every field of the canonical schema (schema.hpp), in its order, null ("not measured") until
  // set. Use this for runs: every file then has the same columns.
  static Result from_schema();

  // Set a field that exists (a schema field, or one added with add()); an unknown name throws
  // eaq::Error, which catches typos. A non-finite double is stored as null with a reason.
  void set(std::string_view name, double value);
  void set(std::string_view name, bool value);
  void set(std::string_view name, std::string value);
  void set(std::string_view name, const char* value) { set(name, std::string(value)); }
  template <std::integral T>
  requires(!std::same_as<T, bool>) void set(std::string_view name, T value) {
    if constexpr (std::is_unsigned_v<T>) {
      set_unsigned(name, static_cast<std::uint64_t>(value));
    } else {
      set_value(name, static_cast<std::int64_t>(value));
    }
  }
  // The value, or null with the reading's reason.
  template <class T>
  void set(std::string_view name, const measure::Reading<T>& reading) {
    if (reading) {
      set(name, *reading);
    } else {
      set_unavailable(name, reading.reason());
    }
  }
  void set_unavailable(std::string_view name, std::string reason);

  // A field outside the schema, placed at the end of its section. Throws if the name exists.
  void add(Section section, std::string name, std::string unit, Value value,
           std::string unavailable_reason = {});

  const Field* find(std::string_view name) const;
  const Field& at(std::string_view name) const;  // throws eaq::Error naming the field
  // Output order: all metrics, then metadata, then configuration.
  const std::vector<Field>& fields() const { return fields_; }

 private:
  void set_value(std::string_view name, Value value);
  void set_unsigned(std::string_view name, std::uint64_t value);  // throws above INT64_MAX
  Field& mutable_field(std::string_view name);

  std::vector<Field> fields_;
};

}  // namespace eaq::report
