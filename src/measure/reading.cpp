#include "measure/reading.hpp"

#include "core/error.hpp"

namespace eaq::measure {

void throw_unavailable(const std::string& reason) {
  fail("unavailable: {}", reason);
}

}  // namespace eaq::measure
