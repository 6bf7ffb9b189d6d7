// The CPU encoder on random checkpoints: properties that must hold whatever the weights are, and
// every way a model folder can be wrong. Parity with Hugging Face is in test_golden_encoders.cpp.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cpu/cpu_backend.hpp"
#include "core/error.hpp"
#include "io/npy.hpp"
#include "io/safetensors.hpp"
#include "model/encoder.hpp"
#include "random_models.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

using test::RandomEncoderSpec;
using test::TempDir;

using ::eaq::test::error_of;

// Runs the model on host ids/mask and returns host logits.
HostTensor run_logits(EncoderModel& model, Backend& backend, const HostTensor& ids,
                      const HostTensor& mask) {
  EncoderBatch batch;
  batch.input_ids = backend.upload(ids, DType::I32);
  batch.attention_mask = backend.upload(mask, DType::I32);
  HostTensor logits = backend.download(model.forward(batch).logits);
  backend.release(batch.input_ids);
  backend.release(batch.attention_mask);
  return logits;
}

class EncoderProperties : public ::testing::TestWithParam<std::string> {};

TEST_P(EncoderProperties, PaddingAndBatchingDoNotChangeLogits) {
  TempDir dir;
  RandomEncoderSpec spec;
  spec.model_type = GetParam();
  test::write_random_encoder(dir.path(), spec);
  auto backend = make_cpu_backend(Precision::Fp32);
  auto model = EncoderModel::load(dir.path(), *backend);
  ASSERT_EQ(model->config().num_labels, 3);

  // Row 0: 5 real tokens then padding; row 1: 9 real tokens.
  const std::vector<std::int32_t> row0 = {2, 17, 33, 5, 3, 0, 0, 0, 0};
  const std::vector<std::int32_t> row1 = {2, 8, 99, 41, 7, 12, 64, 101, 3};
  std::vector<std::int32_t> ids(row0), mask(9, 1);
  ids.insert(ids.end(), row1.begin(), row1.end());
  for (int i = 5; i < 9; ++i) mask[i] = 0;
  mask.insert(mask.end(), 9, 1);
  const HostTensor batched = run_logits(*model, *backend, HostTensor::from_i32({2, 9}, ids),
                                        HostTensor::from_i32({2, 9}, mask));
  ASSERT_EQ(batched.shape(), (Shape{2, 3}));

  const HostTensor alone0 =
      run_logits(*model, *backend, HostTensor::from_i32({1, 5}, {2, 17, 33, 5, 3}),
                 HostTensor::from_i32({1, 5}, {1, 1, 1, 1, 1}));
  const HostTensor alone1 =
      run_logits(*model, *backend, HostTensor::from_i32({1, 9}, row1),
                 HostTensor::from_i32({1, 9}, std::vector<std::int32_t>(9, 1)));
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(batched.data<float>()[j], alone0.data<float>()[j], 1e-5f);
    EXPECT_NEAR(batched.data<float>()[3 + j], alone1.data<float>()[j], 1e-5f);
    EXPECT_TRUE(std::isfinite(batched.data<float>()[j]));
  }
  // And the padded row really differs from the other one (the test could fail).
  EXPECT_GT(std::fabs(batched.data<float>()[0] - batched.data<float>()[3]), 1e-4f);
}

INSTANTIATE_TEST_SUITE_P(Architectures, EncoderProperties, ::testing::Values("distilbert", "bert"));

// Rewrites model.safetensors with one tensor dropped or replaced.
void edit_checkpoint(const std::filesystem::path& dir, const std::string& name,
                     const HostTensor* replacement) {
  const std::string path = (dir / "model.safetensors").string();
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::vector<std::pair<std::string, HostTensor>> tensors;
  for (const std::string& n : file.names()) {
    if (n != name)
      tensors.emplace_back(n, file.tensor(n));
    else if (replacement)
      tensors.emplace_back(n, *replacement);
  }
  write_safetensors(path, tensors);
}

TEST(EncoderLoading, MissingTensorIsNamed) {
  TempDir dir;
  test::write_random_encoder(dir.path(), {});
  edit_checkpoint(dir.path(), "distilbert.transformer.layer.1.ffn.lin1.weight", nullptr);
  auto backend = make_cpu_backend(Precision::Fp32);
  const std::string message = error_of([&] { EncoderModel::load(dir.path(), *backend); });
  EXPECT_NE(message.find("missing tensor 'distilbert.transformer.layer.1.ffn.lin1.weight'"),
            std::string::npos)
      << message;
}

TEST(EncoderLoading, ShapeThatDisagreesWithConfig) {
  TempDir dir;
  test::write_random_encoder(dir.path(), {});
  const HostTensor wrong = test::random_f32({48, 32}, 5);
  edit_checkpoint(dir.path(), "distilbert.transformer.layer.0.ffn.lin1.weight", &wrong);
  auto backend = make_cpu_backend(Precision::Fp32);
  const std::string message = error_of([&] { EncoderModel::load(dir.path(), *backend); });
  EXPECT_NE(message.find("has shape [48, 32]"), std::string::npos) << message;
  EXPECT_NE(message.find("[64, 32]"), std::string::npos) << message;
}

TEST(EncoderLoading, NonFloatWeight) {
  TempDir dir;
  test::write_random_encoder(dir.path(), {});
  const HostTensor ints = HostTensor::empty(DType::I32, {32});
  edit_checkpoint(dir.path(), "classifier.weight", nullptr);
  edit_checkpoint(dir.path(), "distilbert.embeddings.LayerNorm.bias", &ints);
  auto backend = make_cpu_backend(Precision::Fp32);
  const std::string message = error_of([&] { EncoderModel::load(dir.path(), *backend); });
  EXPECT_NE(message.find("dtype I32"), std::string::npos) << message;
}

TEST(EncoderLoading, BadConfigs) {
  auto backend = make_cpu_backend(Precision::Fp32);
  const auto load_with = [&](const std::string& config_text) {
    TempDir dir;
    test::write_random_encoder(dir.path(), {});
    test::write_text(dir.path() / "config.json", config_text);
    return error_of([&] { EncoderModel::load(dir.path(), *backend); });
  };
  EXPECT_NE(
      load_with("{\n\"model_type\": \"distilbert\",\n  oops").find("config.json:3: malformed JSON"),
      std::string::npos);
  EXPECT_NE(load_with(R"({"model_type": "t5"})").find("model_type \"t5\""), std::string::npos);

  nlohmann::json c = test::random_encoder_config({});
  c["activation"] = "swish";
  EXPECT_NE(load_with(c.dump()).find("\"activation\": \"swish\" is not supported"),
            std::string::npos);
  c = test::random_encoder_config({});
  c["architectures"] = {"DistilBertForQuestionAnswering"};
  EXPECT_NE(load_with(c.dump()).find("DistilBertForQuestionAnswering is not supported"),
            std::string::npos);
  c = test::random_encoder_config({});
  c.erase("n_layers");
  EXPECT_NE(load_with(c.dump()).find("missing \"n_layers\""), std::string::npos);
  c = test::random_encoder_config({});
  c["n_heads"] = 5;
  EXPECT_NE(load_with(c.dump()).find("not divisible"), std::string::npos);
  c = test::random_encoder_config({});
  c["sinusoidal_pos_embds"] = "yes";
  EXPECT_NE(load_with(c.dump()).find("wrong type"), std::string::npos);

  RandomEncoderSpec bert;
  bert.model_type = "bert";
  c = test::random_encoder_config(bert);
  c["position_embedding_type"] = "relative_key";
  TempDir dir;
  test::write_random_encoder(dir.path(), bert);
  test::write_text(dir.path() / "config.json", c.dump());
  EXPECT_NE(error_of([&] {
              EncoderModel::load(dir.path(), *backend);
            }).find("position_embedding_type \"relative_key\" is not supported"),
            std::string::npos);
}

TEST(EncoderInputs, ValidationNamesTheProblem) {
  EncoderConfig config;
  config.vocab_size = 100;
  config.max_positions = 8;
  config.architecture = "DistilBertModel";
  const HostTensor ok = HostTensor::from_i32({1, 3}, {1, 2, 3});
  EXPECT_NO_THROW(validate_encoder_inputs(config, ok, nullptr, nullptr, "ids.npy"));
  EXPECT_NE(error_of([&] {
              validate_encoder_inputs(config, HostTensor::from_i32({1, 3}, {1, 100, 3}), nullptr,
                                      nullptr, "ids.npy");
            }).find("input_ids[0, 1] = 100 is outside the model's vocabulary of 100"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              validate_encoder_inputs(config,
                                      HostTensor::from_i32({1, 9}, std::vector<std::int32_t>(9, 1)),
                                      nullptr, nullptr, "ids.npy");
            }).find("exceeds the model's max_position_embeddings 8"),
            std::string::npos);
  const HostTensor bad_mask = HostTensor::from_i32({1, 3}, {1, 2, 0});
  EXPECT_NE(error_of([&] {
              validate_encoder_inputs(config, ok, &bad_mask, nullptr, "ids.npy");
            }).find("attention_mask holds 2"),
            std::string::npos);
  const HostTensor zero_types = HostTensor::from_i32({1, 3}, {0, 0, 0});
  EXPECT_NO_THROW(validate_encoder_inputs(config, ok, nullptr, &zero_types, "ids.npy"));
  const HostTensor types = HostTensor::from_i32({1, 3}, {0, 1, 0});
  EXPECT_NE(error_of([&] {
              validate_encoder_inputs(config, ok, nullptr, &types, "ids.npy");
            }).find("token_type_ids holds 1, but DistilBertModel has no token type embeddings"),
            std::string::npos);
}

TEST(ForwardCommand, WritesLogitsAndRefusesBadArrays) {
  TempDir dir;
  test::write_random_encoder(dir.path() / "model", {});
  write_npy(dir.file("ids.npy"), HostTensor::from_i32({2, 4}, {2, 5, 6, 3, 2, 9, 3, 0}));
  write_npy(dir.file("mask.npy"), HostTensor::from_i32({2, 4}, {1, 1, 1, 1, 1, 1, 1, 0}));
  const std::string base = test::eaq_binary() + " forward --model " + dir.file("model");
  auto result =
      test::run_command(base + " --input-ids " + dir.file("ids.npy") + " --attention-mask " +
                        dir.file("mask.npy") + " --output " + dir.file("logits.npy"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const HostTensor logits = read_npy(dir.file("logits.npy"));
  EXPECT_EQ(logits.dtype(), DType::F32);
  EXPECT_EQ(logits.shape(), (Shape{2, 3}));

  write_npy(dir.file("float_ids.npy"), test::random_f32({2, 4}, 1));
  result = test::run_command(base + " --input-ids " + dir.file("float_ids.npy") + " --output " +
                             dir.file("x.npy"));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("--input-ids"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("dtype F32 is not supported"), std::string::npos) << result.output;

  write_npy(dir.file("mask3.npy"), HostTensor::from_i32({3, 4}, std::vector<std::int32_t>(12, 1)));
  result = test::run_command(base + " --input-ids " + dir.file("ids.npy") + " --attention-mask " +
                             dir.file("mask3.npy") + " --output " + dir.file("x.npy"));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("does not match --input-ids shape [2, 4]"), std::string::npos)
      << result.output;

  write_npy(dir.file("ids3d.npy"), HostTensor::from_i32({1, 2, 2}, {1, 2, 3, 4}));
  result = test::run_command(base + " --input-ids " + dir.file("ids3d.npy") + " --output " +
                             dir.file("x.npy"));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("expected a [batch, seq] array"), std::string::npos)
      << result.output;

  result = test::run_command(base + " --input-ids " + dir.file("ids.npy") + " --output " +
                             dir.file("x.npy") + " --precision fp7");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("--precision fp7: unknown precision"), std::string::npos)
      << result.output;
}

}  // namespace
}  // namespace eaq
