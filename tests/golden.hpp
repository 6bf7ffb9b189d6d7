// Access to the golden fixtures in tests/golden/ (made by tools/make_golden.py).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace eaq::test {

std::filesystem::path golden_dir();
// Fixture folders whose names start with one of the prefixes (sorted); a placeholder name when
// there are none, so the parameterized test fails loudly instead of silently running nothing.
std::vector<std::string> golden_fixtures_with_prefix(const std::vector<std::string>& prefixes);
// max |a - b| / max |b| over all elements (both converted to f32; shapes must hold as many
// elements). NaN anywhere gives infinity.
double max_relative_error(const HostTensor& actual, const HostTensor& expected);

}  // namespace eaq::test
