// GPU tests skip cleanly when no CUDA device (or no CUDA build) is available.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "backend/factory.hpp"
#include "core/error.hpp"

namespace eaq::test {

// A CUDA backend, or nullptr with the reason in `why_not`.
inline std::unique_ptr<Backend> try_cuda_backend(Precision precision, std::string* why_not) {
  try {
    return make_cuda_backend(precision, 0);
  } catch (const Error& e) {
    *why_not = e.what();
    return nullptr;
  }
}

}  // namespace eaq::test

// Declares `name` as a CUDA backend of `precision`, or skips the test.
#define EAQ_CUDA_BACKEND_OR_SKIP(name, precision)                          \
  std::string name##_why_not;                                              \
  auto name = ::eaq::test::try_cuda_backend((precision), &name##_why_not); \
  if (!name) GTEST_SKIP() << "no CUDA device: " << name##_why_not
