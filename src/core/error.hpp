// Errors: every failure a user can cause is an eaq::Error whose message names the file, tensor,
// line or flag at fault. Internal invariants use EAQ_ASSERT.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace eaq {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace eaq

// Throws eaq::Error with a formatted message when the condition is false.
#define EAQ_CHECK(cond, ...)               \
  do {                                     \
    if (!(cond)) ::eaq::fail(__VA_ARGS__); \
  } while (0)

// A broken internal invariant: a bug in eaq, not in the user's input.
#define EAQ_ASSERT(cond)                                                                      \
  do {                                                                                        \
    if (!(cond))                                                                              \
      ::eaq::fail("internal error: {} failed at {}:{} (please report this)", #cond, __FILE__, \
                  __LINE__);                                                                  \
  } while (0)
