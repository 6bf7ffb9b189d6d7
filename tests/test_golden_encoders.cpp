// Parity with Hugging Face: tiny random models saved by tools/make_golden.py with their reference
// outputs. Our CPU fp32 must match within max|ours - HF| / max|HF| <= 1e-4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "backend/cpu/cpu_backend.hpp"
#include "golden.hpp"
#include "io/safetensors.hpp"
#include "model/encoder.hpp"

namespace eaq {
namespace {

class GoldenEncoder : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenEncoder, CpuFp32MatchesHuggingFace) {
  const std::filesystem::path dir = test::golden_dir() / GetParam();
  ASSERT_TRUE(std::filesystem::exists(dir / "reference.safetensors"))
      << dir << " is missing: run tools/make_golden.py (see tools/README.md)";
  const SafetensorsFile reference = SafetensorsFile::open((dir / "reference.safetensors").string());
  auto backend = make_cpu_backend(Precision::Fp32);
  auto model = EncoderModel::load(dir, *backend);

  const HostTensor& ids = reference.tensor("input_ids");
  const HostTensor& mask = reference.tensor("attention_mask");
  validate_encoder_inputs(
      model->config(), ids, &mask,
      reference.contains("token_type_ids") ? &reference.tensor("token_type_ids") : nullptr,
      "reference.safetensors");
  EncoderBatch batch;
  batch.input_ids = backend->upload(ids, DType::I32);
  batch.attention_mask = backend->upload(mask, DType::I32);
  if (reference.contains("token_type_ids")) {
    batch.token_type_ids = backend->upload(reference.tensor("token_type_ids"), DType::I32);
  }
  const EncoderOutputs outputs = model->forward(batch);
  int compared = 0;
  if (reference.contains("logits")) {
    const double error =
        test::max_relative_error(backend->download(outputs.logits), reference.tensor("logits"));
    EXPECT_LE(error, 1e-4) << "logits";
    ++compared;
  }
  if (reference.contains("last_hidden_state")) {
    const double error = test::max_relative_error(backend->download(outputs.hidden),
                                                  reference.tensor("last_hidden_state"));
    EXPECT_LE(error, 1e-4) << "last_hidden_state";
    ++compared;
  }
  if (reference.contains("pooler_output")) {
    ASSERT_NE(outputs.pooled.data, nullptr);
    const double error = test::max_relative_error(backend->download(outputs.pooled),
                                                  reference.tensor("pooler_output"));
    EXPECT_LE(error, 1e-4) << "pooler_output";
    ++compared;
  }
  EXPECT_GT(compared, 0) << "reference.safetensors holds no outputs to compare";
  backend->release(batch.input_ids);
  backend->release(batch.attention_mask);
  backend->release(batch.token_type_ids);
}

INSTANTIATE_TEST_SUITE_P(HuggingFace, GoldenEncoder,
                         ::testing::ValuesIn(test::golden_fixtures_with_prefix({"distilbert",
                                                                                "bert"})));

}  // namespace
}  // namespace eaq
