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

// Whether a warp's several sums share their shuffles (warp_sum_many in the one-row GEMV, the
// QKV + attention kernel and the bounded head's scores kernel): EAQ_SHARED_SHUFFLES=0 reduces
// them one at a time, to measure what it buys (the same bits either way). Read at every launch.
inline bool shared_shuffles_enabled() {
  return !env_is("EAQ_SHARED_SHUFFLES", "0");
}

}  // namespace eaq::cuda
