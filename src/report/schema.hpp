// The canonical list of result fields: name, section, unit, meaning. Every CSV column, JSON key
// and table row comes from here, so a name and its unit are defined in exactly one place. The
// seed's "Metrics Included" names keep the seed's units (latencies in seconds, power in W, energy
// in J and mJ, memory in GB, model size in MB).
#pragma once

#include <span>
#include <string_view>

#include "report/result.hpp"

namespace eaq::report {

struct FieldSpec {
  std::string_view name;
  Section section;
  std::string_view unit;
  std::string_view description;
};

std::span<const FieldSpec> result_schema();
const FieldSpec* find_field_spec(std::string_view name);  // nullptr when not in the schema

}  // namespace eaq::report
