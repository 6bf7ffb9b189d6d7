// JSON, indented for people:
//   {"schema_version": 1,
//    "metrics": {...}, "metadata": {...}, "configuration": {...},
//    "units": {name: unit}, "unavailable_reasons": {name: reason}}
// Unavailable values are null, and unavailable_reasons says why.
#pragma once

#include <string>

#include "report/result.hpp"

namespace eaq::report {

inline constexpr int kJsonSchemaVersion = 1;

std::string to_json(const Result& result, int indent = 2);

}  // namespace eaq::report
