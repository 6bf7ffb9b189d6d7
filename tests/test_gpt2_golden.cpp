// GPT-2 parity with Hugging Face on the CPU (fp32): the golden fixtures of tools/make_golden.py
// and the bundled models/gpt2-mini. The same checks run on CUDA in test_cuda_gpt2.cpp.
#include <gtest/gtest.h>

#include "backend/cpu/cpu_backend.hpp"
#include "golden.hpp"
#include "gpt2_golden_checks.hpp"

namespace eaq {
namespace {

class GoldenGpt2 : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenGpt2, CpuFp32MatchesHuggingFace) {
  auto cpu = make_cpu_backend(Precision::Fp32);
  test::check_gpt2_fixture(*cpu, GetParam(), {});
}

INSTANTIATE_TEST_SUITE_P(HuggingFace, GoldenGpt2,
                         ::testing::ValuesIn(test::golden_fixtures_with_prefix({"gpt2"})));

TEST(BundledGpt2, CpuFp32MatchesHuggingFace) {
  auto cpu = make_cpu_backend(Precision::Fp32);
  test::check_bundled_gpt2(*cpu, {});
}

}  // namespace
}  // namespace eaq
