// The bundled classifier (models/sentiment-distilbert) through our CPU engine: the logits Hugging
// Face produced at export, and the held-out accuracy its model card reports.
#include <gtest/gtest.h>

#include "backend/cpu/cpu_backend.hpp"
#include "golden.hpp"
#include "io/dataset.hpp"
#include "io/safetensors.hpp"
#include "model/encoder.hpp"
#include "run/classification_harness.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

std::filesystem::path repo() {
  return test::source_dir();
}

TEST(BundledSentiment, CpuFp32MatchesHuggingFaceAtExport) {
  const SafetensorsFile reference = SafetensorsFile::open(
      (repo() / "tests/golden/bundled/sentiment_reference.safetensors").string());
  auto backend = make_cpu_backend(Precision::Fp32);
  auto model = EncoderModel::load(repo() / "models/sentiment-distilbert", *backend);
  EXPECT_EQ(model->config().label_names, (std::vector<std::string>{"negative", "positive"}));
  EXPECT_EQ(model->stored_dtype(), DType::F16);
  EncoderBatch batch;
  batch.input_ids = backend->upload(reference.tensor("input_ids"), DType::I32);
  batch.attention_mask = backend->upload(reference.tensor("attention_mask"), DType::I32);
  const HostTensor logits = backend->download(model->forward(batch).logits);
  EXPECT_LE(test::max_relative_error(logits, reference.tensor("logits")), 1e-4);
  backend->release(batch.input_ids);
  backend->release(batch.attention_mask);
}

TEST(BundledSentiment, HeldOutAccuracyAsReported) {
  // datasets/sentiment-large is all 1,000 imdb sentences, never seen in training. The model card
  // reports 0.7570 from Hugging Face on the same sentences.
  const Dataset dataset = Dataset::load(repo() / "datasets/sentiment-large", 30522);
  auto backend = make_cpu_backend(Precision::Fp32);
  auto model = EncoderModel::load(repo() / "models/sentiment-distilbert", *backend);
  run::ClassificationHarness harness(*backend, *model, dataset, 50, false);
  const run::AccuracyResult accuracy = harness.accuracy();
  EXPECT_EQ(accuracy.num_samples, 1000);
  EXPECT_GE(accuracy.accuracy(), 0.75);
  EXPECT_NEAR(accuracy.accuracy(), 0.757, 0.003);
}

}  // namespace
}  // namespace eaq
