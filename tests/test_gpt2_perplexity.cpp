// Sliding-window perplexity: the window plan, properties on a random model, and `eaq perplexity`
// (the fixture parity lives in gpt2_golden_checks.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "backend/cpu/cpu_backend.hpp"
#include "core/error.hpp"
#include "golden.hpp"
#include "gpt2_test_util.hpp"
#include "io/npy.hpp"
#include "io/safetensors.hpp"
#include "run/perplexity.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

using ::eaq::test::error_of;

std::vector<std::int32_t> random_ids(int count, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(count));
  for (auto& id : ids) id = static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab));
  return ids;
}

TEST(SlidingWindows, FollowTheDocsLoop) {
  // 10 tokens, context 4, stride 3: windows [0,4) [3,7) [6,10).
  const std::vector<run::PerplexityWindow> w = run::sliding_windows(10, 4, 3);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].begin, 0);
  EXPECT_EQ(w[0].end, 4);
  EXPECT_EQ(w[0].trg_len, 4);
  EXPECT_EQ(w[0].score_begin, 1);  // the first token has nothing to be predicted from
  EXPECT_EQ(w[0].doc_weight, 3);
  EXPECT_EQ(w[1].begin, 3);
  EXPECT_EQ(w[1].end, 7);
  EXPECT_EQ(w[1].trg_len, 3);
  EXPECT_EQ(w[1].score_begin, 4);
  EXPECT_EQ(w[1].doc_weight, 2);
  EXPECT_EQ(w[2].end, 10);
  EXPECT_EQ(w[2].score_begin, 7);
  // A sequence shorter than the context: one window.
  EXPECT_EQ(run::sliding_windows(5, 8, 2).size(), 1u);
  EXPECT_NE(error_of([] {
              run::sliding_windows(10, 4, 5);
            }).find("--stride 5 is larger than --context 4"),
            std::string::npos);
  EXPECT_NE(error_of([] { run::sliding_windows(1, 4, 2); }).find("at least 2 tokens, got 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { run::sliding_windows(10, 1, 1); }).find("--context 1"),
            std::string::npos);
}

class Gpt2Perplexity : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_random_gpt2(dir_.path(), spec_);
    model_ = Gpt2Model::load(dir_.path(), *cpu_);
  }
  test::TempDir dir_;
  test::RandomGpt2Spec spec_;
  std::unique_ptr<Backend> cpu_ = make_cpu_backend(Precision::Fp32);
  std::unique_ptr<Gpt2Model> model_;
};

TEST_F(Gpt2Perplexity, OneWindowIsTheFullForwardsNll) {
  const std::vector<std::int32_t> ids = random_ids(30, spec_.vocab, 4);
  const run::PerplexityResult r = run::evaluate_perplexity(*model_, ids, 48, 24);
  ASSERT_EQ(r.windows.size(), 1u);
  DeviceTensor device_ids = cpu_->upload(HostTensor::from_i32({1, 30}, ids), DType::I32);
  const HostTensor logits = cpu_->download(model_->forward_logits(device_ids));
  cpu_->release(device_ids);
  double sum = 0.0;
  for (int t = 0; t + 1 < 30; ++t) {
    const float* row = logits.data<float>() + t * spec_.vocab;
    double max = row[0], z = 0.0;
    for (int v = 1; v < spec_.vocab; ++v) max = std::max(max, static_cast<double>(row[v]));
    for (int v = 0; v < spec_.vocab; ++v) z += std::exp(row[v] - max);
    const double nll = max + std::log(z) - row[ids[static_cast<std::size_t>(t + 1)]];
    EXPECT_NEAR(r.token_nll[static_cast<std::size_t>(t)], nll, 1e-5);
    sum += nll;
  }
  EXPECT_EQ(r.exact_tokens, 29);
  EXPECT_NEAR(r.exact_nll_sum, sum, 1e-4);
  EXPECT_NEAR(r.exact_perplexity, std::exp(sum / 29), 1e-4 * r.exact_perplexity);
  EXPECT_DOUBLE_EQ(r.doc_perplexity, r.exact_perplexity);  // one window: the two agree
  EXPECT_NEAR(run::bits_per_byte(sum, 100), sum / std::log(2.0) / 100, 1e-12);
}

TEST_F(Gpt2Perplexity, WindowsScoreEveryTokenOnceAndDefaultsFollowTheModel) {
  const std::vector<std::int32_t> ids = random_ids(120, spec_.vocab, 5);
  const run::PerplexityResult r = run::evaluate_perplexity(*model_, ids);
  EXPECT_EQ(r.context, 48);  // n_positions
  EXPECT_EQ(r.stride, 24);
  EXPECT_EQ(r.exact_tokens, 119);
  for (double nll : r.token_nll) EXPECT_TRUE(std::isfinite(nll));
  // A longer stride scores later tokens with less context; without overlap (stride == context)
  // the first token of each later window is not scored, as in the docs' loop.
  const run::PerplexityResult no_overlap = run::evaluate_perplexity(*model_, ids, 40, 40);
  EXPECT_EQ(no_overlap.exact_tokens, 119 - 2);
  EXPECT_TRUE(std::isnan(no_overlap.token_nll[39]));
}

TEST_F(Gpt2Perplexity, BadArgumentsAreRefused) {
  const std::vector<std::int32_t> ids = random_ids(20, spec_.vocab, 6);
  EXPECT_NE(error_of([&] {
              run::evaluate_perplexity(*model_, ids, 64, 32);
            }).find("--context 64 is longer than the model's context (n_positions 48)"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              run::evaluate_perplexity(*model_, ids, 16, 17);
            }).find("--stride 17 is larger"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run::evaluate_perplexity(*model_, {3}); }).find("at least 2 tokens"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              run::evaluate_perplexity(*model_, {3, 97});
            }).find("token 1 has id 97"),
            std::string::npos);
}

// --- the command line
// ------------------------------------------------------------------------------

std::string bundled_model() {
  return test::source_dir() + "/models/gpt2-mini";
}

TEST(PerplexityCommand, IdsFromNpyMatchHuggingFace) {
  const SafetensorsFile ref = SafetensorsFile::open(
      (test::golden_dir() / "bundled" / "gpt2_reference.safetensors").string());
  test::TempDir dir;
  write_npy(dir.file("ids.npy"), ref.tensor("input_ids"));
  const auto result =
      test::run_command(test::eaq_binary() + " perplexity --model " + bundled_model() + " --ids " +
                        dir.file("ids.npy") + " --context 64 --stride 64");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const double expected = std::stod(ref.metadata().at("perplexity_of_these_63_tokens"));
  const std::size_t at = result.output.find("perplexity:");
  ASSERT_NE(at, std::string::npos) << result.output;
  EXPECT_NEAR(std::stod(result.output.substr(at + 11)), expected, 1e-4 * expected) << result.output;
  EXPECT_NE(result.output.find("tokens evaluated: 63"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("bits per byte:    n/a"), std::string::npos) << result.output;
}

TEST(PerplexityCommand, TextFileGivesBitsPerByte) {
  const SafetensorsFile ref = SafetensorsFile::open(
      (test::golden_dir() / "bundled" / "gpt2_reference.safetensors").string());
  test::TempDir dir;
  const std::string text = ref.metadata().at("text");
  test::write_text(dir.file("text.txt"), text);
  const auto result =
      test::run_command(test::eaq_binary() + " perplexity --model " + bundled_model() + " --text " +
                        dir.file("text.txt") + " --context 32 --stride 16");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find(fmt::format("({} bytes)", text.size())), std::string::npos)
      << result.output;
  const std::size_t at = result.output.find("bits per byte:");
  ASSERT_NE(at, std::string::npos) << result.output;
  const double bpb = std::stod(result.output.substr(at + 14));
  EXPECT_GT(bpb, 0.5);  // a small model on held-out prose: a few bits per character at most
  EXPECT_LT(bpb, 4.0);
  // --max-tokens cuts the text: fewer tokens, and the bytes of those tokens only.
  const auto cut = test::run_command(test::eaq_binary() + " perplexity --model " + bundled_model() +
                                     " --text " + dir.file("text.txt") + " --max-tokens 20");
  ASSERT_EQ(cut.exit_code, 0) << cut.output;
  EXPECT_NE(cut.output.find("tokens evaluated: 19"), std::string::npos) << cut.output;
  EXPECT_NE(cut.output.find("cut at --max-tokens 20"), std::string::npos) << cut.output;
}

TEST(PerplexityCommand, BadInputsGetClearErrors) {
  test::TempDir dir;
  test::write_text(dir.file("empty.txt"), "");
  test::write_text(dir.file("text.txt"), "Some words to score, and a few more of them.");
  const std::string eaq = test::eaq_binary() + " perplexity ";
  const auto empty =
      test::run_command(eaq + "--model " + bundled_model() + " --text " + dir.file("empty.txt"));
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_NE(empty.output.find("the file is empty"), std::string::npos) << empty.output;
  const auto encoder =
      test::run_command(eaq + "--model " + (test::golden_dir() / "distilbert_tiny").string() +
                        " --text " + dir.file("text.txt"));
  EXPECT_EQ(encoder.exit_code, 1);
  EXPECT_NE(encoder.output.find("model_type \"distilbert\" is not a causal language model"),
            std::string::npos)
      << encoder.output;
  const auto long_context = test::run_command(eaq + "--model " + bundled_model() + " --text " +
                                              dir.file("text.txt") + " --context 1024");
  EXPECT_EQ(long_context.exit_code, 1);
  EXPECT_NE(long_context.output.find(
                "--context 1024 is longer than the model's context (n_positions 256)"),
            std::string::npos)
      << long_context.output;
  const auto stride = test::run_command(eaq + "--model " + bundled_model() + " --text " +
                                        dir.file("text.txt") + " --context 8 --stride 9");
  EXPECT_EQ(stride.exit_code, 1);
  EXPECT_NE(stride.output.find("--stride 9 is larger than --context 8"), std::string::npos)
      << stride.output;
  const auto both = test::run_command(eaq + "--model " + bundled_model());
  EXPECT_EQ(both.exit_code, 1);
  EXPECT_NE(both.output.find("exactly one of --text and --ids"), std::string::npos) << both.output;
}

}  // namespace
}  // namespace eaq
