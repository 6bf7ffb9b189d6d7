// Developer switches read from the environment (EAQ_SPLIT_K_GEMM=1, EAQ_DEPENDENT_LAUNCH=0, ...):
// one spelling for "is it set to this value", so every switch reads the same way.
#pragma once

#include <cstdlib>
#include <cstring>

namespace eaq::cuda {

// Whether the environment variable `name` is set to exactly `value`.
inline bool env_is(const char* name, const char* value) {
  const char* set = std::getenv(name);
  return set != nullptr && std::strcmp(set, value) == 0;
}

}  // namespace eaq::cuda
