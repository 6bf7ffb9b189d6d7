// GPT-2 config parsing and checkpoint loading: defaults, refusals with clear messages, checkpoint
// layouts (prefixed or not, legacy buffers), and the attention-scaling config fields checked by
// equivalent weight changes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>

#include "backend/cpu/cpu_backend.hpp"
#include "core/error.hpp"
#include "golden.hpp"
#include "gpt2_test_util.hpp"
#include "io/json_file.hpp"
#include "io/safetensors.hpp"
#include "model/gpt2.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

using json = nlohmann::json;

using ::eaq::test::error_of;

TEST(Gpt2Config, DefaultsAreHuggingFaces) {
  const Gpt2Config c = parse_gpt2_config(json{{"model_type", "gpt2"}}, "config.json");
  EXPECT_EQ(c.architecture, "GPT2LMHeadModel");
  EXPECT_EQ(c.vocab_size, 50257);
  EXPECT_EQ(c.positions, 1024);
  EXPECT_EQ(c.hidden, 768);
  EXPECT_EQ(c.layers, 12);
  EXPECT_EQ(c.heads, 12);
  EXPECT_EQ(c.inner, 3072);
  EXPECT_EQ(c.activation, Activation::GeluTanh);
  EXPECT_FLOAT_EQ(c.layer_norm_eps, 1e-5f);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.attention_scale(0), 0.125f);
  EXPECT_FLOAT_EQ(c.attention_scale(5), 0.125f);
}

TEST(Gpt2Config, ReadsTheFieldsThatChangeTheMath) {
  const Gpt2Config c = parse_gpt2_config(json{{"model_type", "gpt2"},
                                              {"n_embd", 48},
                                              {"n_head", 3},
                                              {"n_inner", 80},
                                              {"activation_function", "relu"},
                                              {"layer_norm_epsilon", 1e-3},
                                              {"scale_attn_by_inverse_layer_idx", true},
                                              {"tie_word_embeddings", false},
                                              {"eos_token_id", 7},
                                              {"pad_token_id", nullptr},
                                              {"reorder_and_upcast_attn", true}},
                                         "config.json");
  EXPECT_EQ(c.inner, 80);
  EXPECT_EQ(c.activation, Activation::Relu);
  EXPECT_FLOAT_EQ(c.layer_norm_eps, 1e-3f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_id, 7);
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_FLOAT_EQ(c.attention_scale(0), 0.25f);  // head_dim 16
  EXPECT_FLOAT_EQ(c.attention_scale(3), 0.25f / 4.0f);
  const Gpt2Config unscaled =
      parse_gpt2_config(json{{"model_type", "gpt2"}, {"scale_attn_weights", false}}, "c.json");
  EXPECT_FLOAT_EQ(unscaled.attention_scale(2), 1.0f);
  EXPECT_EQ(parse_gpt2_config(
                json{{"model_type", "gpt2"}, {"n_inner", nullptr}, {"n_embd", 64}, {"n_head", 4}},
                "c.json")
                .inner,
            256);
}

TEST(Gpt2Config, RefusesWhatItCannotRun) {
  const json base = {{"model_type", "gpt2"}};
  const auto with = [&](const char* key, json value) {
    json c = base;
    c[key] = std::move(value);
    return c;
  };
  EXPECT_ERROR_HAS(parse_gpt2_config(json{{"model_type", "distilbert"}}, "m/config.json"),
                   "m/config.json: model_type \"distilbert\" is not a causal language model");
  EXPECT_ERROR_HAS(parse_gpt2_config(with("activation_function", "swish"), "c.json"),
                   "\"activation_function\": \"swish\" is not supported");
  EXPECT_ERROR_HAS(parse_gpt2_config(with("add_cross_attention", true), "c.json"),
                   "add_cross_attention");
  EXPECT_ERROR_HAS(
      parse_gpt2_config(with("architectures", json::array({"GPT2ForSequenceClassification"})),
                        "c.json"),
      "architecture GPT2ForSequenceClassification is not supported");
  EXPECT_ERROR_HAS(parse_gpt2_config(with("n_head", 5), "c.json"),
                   "n_embd 768 is not divisible by n_head 5");
  EXPECT_ERROR_HAS(parse_gpt2_config(with("n_layer", 0), "c.json"),
                   "\"n_layer\" must be a positive integer");
  EXPECT_ERROR_HAS(parse_gpt2_config(with("scale_attn_weights", "yes"), "c.json"),
                   "\"scale_attn_weights\" must be true or false");
  EXPECT_ERROR_HAS(parse_gpt2_config(with("layer_norm_epsilon", -1.0), "c.json"),
                   "\"layer_norm_epsilon\" must be a positive number");
}

TEST(Gpt2Load, AnEncoderIsNotACausalLanguageModel) {
  auto cpu = make_cpu_backend(Precision::Fp32);
  EXPECT_ERROR_HAS(Gpt2Model::load(test::golden_dir() / "distilbert_tiny", *cpu),
                   "is not a causal language model");
}

TEST(Gpt2Load, CheckpointLayouts) {
  auto cpu = make_cpu_backend(Precision::Fp32);
  test::TempDir dir;
  test::RandomGpt2Spec spec;
  test::write_random_gpt2(dir.path() / "prefixed", spec);
  spec.prefixed = false;  // GPT2Model: no "transformer." prefix, LM head tied to wte
  spec.legacy_buffers = true;
  test::write_random_gpt2(dir.path() / "bare", spec);
  auto prefixed = Gpt2Model::load(dir.path() / "prefixed", *cpu);
  auto bare = Gpt2Model::load(dir.path() / "bare", *cpu);
  EXPECT_EQ(prefixed->num_parameters(), bare->num_parameters());
  EXPECT_TRUE(prefixed->unused_tensors().empty());
  EXPECT_EQ(bare->unused_tensors().size(), 4u);  // 2 layers x (attn.bias, attn.masked_bias)
  EXPECT_EQ(bare->linear_layers().size(), 9u);   // 4 per layer + lm_head
  DeviceTensor ids = cpu->upload(HostTensor::from_i32({1, 6}, {1, 5, 9, 2, 60, 3}), DType::I32);
  const HostTensor a = cpu->download(prefixed->forward_logits(ids));
  const HostTensor b = cpu->download(bare->forward_logits(ids));
  EXPECT_EQ(test::max_relative_error(a, b), 0.0);
  cpu->release(ids);
}

TEST(Gpt2Load, MissingOrMisshapenTensorsAreNamed) {
  auto cpu = make_cpu_backend(Precision::Fp32);
  test::TempDir dir;
  test::RandomGpt2Spec spec;
  test::write_random_gpt2(dir.path(), spec);
  json config = read_json_file(dir.path() / "config.json");
  config["tie_word_embeddings"] = false;
  test::write_text(dir.path() / "config.json", config.dump());
  EXPECT_ERROR_HAS(Gpt2Model::load(dir.path(), *cpu), "missing tensor 'lm_head.weight'");
  config["tie_word_embeddings"] = true;
  config["n_positions"] = 100;
  test::write_text(dir.path() / "config.json", config.dump());
  EXPECT_ERROR_HAS(Gpt2Model::load(dir.path(), *cpu),
                   "tensor 'transformer.wpe.weight' has shape [48, 32] but config.json");
}

// Copies a golden GPT-2 into `dir` with config changes and the query weights of layer i (the
// first n_embd columns of c_attn's Conv1D weight and bias) multiplied by q_scale(i).
void write_variant(const std::filesystem::path& from, const std::filesystem::path& dir,
                   const json& config_changes, const std::function<float(int)>& q_scale) {
  std::filesystem::create_directories(dir);
  json config = read_json_file(from / "config.json");
  config.update(config_changes);
  test::write_text(dir / "config.json", config.dump());
  const SafetensorsFile file = SafetensorsFile::open((from / "model.safetensors").string());
  const std::int64_t e = config["n_embd"].get<std::int64_t>();
  std::vector<std::pair<std::string, HostTensor>> tensors;
  for (const std::string& name : file.names()) {
    HostTensor t = file.tensor(name).to_f32();
    for (int layer = 0; layer < config["n_layer"].get<int>(); ++layer) {
      const std::string prefix = fmt::format("transformer.h.{}.attn.c_attn.", layer);
      const float s = q_scale(layer);
      if (name == prefix + "weight") {
        for (std::int64_t r = 0; r < t.dim(0); ++r) {
          for (std::int64_t c = 0; c < e; ++c) t.mutable_data<float>()[r * 3 * e + c] *= s;
        }
      } else if (name == prefix + "bias") {
        for (std::int64_t c = 0; c < e; ++c) t.mutable_data<float>()[c] *= s;
      }
    }
    tensors.emplace_back(name, t);
  }
  write_safetensors((dir / "model.safetensors").string(), tensors);
}

HostTensor full_logits(const std::filesystem::path& dir, Backend& backend) {
  auto model = Gpt2Model::load(dir, backend);
  const SafetensorsFile ref =
      SafetensorsFile::open((test::golden_dir() / "gpt2_tiny" / "reference.safetensors").string());
  DeviceTensor ids = backend.upload(ref.tensor("full_input_ids"), DType::I32);
  HostTensor logits = backend.download(model->forward_logits(ids));
  backend.release(ids);
  return logits;
}

TEST(Gpt2Load, AttentionScalingFieldsEqualScaledQueries) {
  auto cpu = make_cpu_backend(Precision::Fp32);
  const std::filesystem::path golden = test::golden_dir() / "gpt2_tiny";
  test::TempDir dir;
  const HostTensor original = full_logits(golden, *cpu);
  // scores / (layer + 1) is the same as queries / (layer + 1).
  write_variant(golden, dir.path() / "inverse_flag", {{"scale_attn_by_inverse_layer_idx", true}},
                [](int) { return 1.0f; });
  write_variant(golden, dir.path() / "inverse_weights", json::object(),
                [](int layer) { return 1.0f / static_cast<float>(layer + 1); });
  const HostTensor by_flag = full_logits(dir.path() / "inverse_flag", *cpu);
  EXPECT_LE(test::max_relative_error(by_flag, full_logits(dir.path() / "inverse_weights", *cpu)),
            1e-5);
  EXPECT_GE(test::max_relative_error(by_flag, original), 1e-3) << "the flag must change the logits";
  // No 1 / sqrt(head_dim): the same as queries * sqrt(head_dim) (head_dim 8).
  write_variant(golden, dir.path() / "unscaled_flag", {{"scale_attn_weights", false}},
                [](int) { return 1.0f; });
  write_variant(golden, dir.path() / "unscaled_weights", json::object(),
                [](int) { return std::sqrt(8.0f); });
  const HostTensor unscaled = full_logits(dir.path() / "unscaled_flag", *cpu);
  EXPECT_LE(test::max_relative_error(unscaled, full_logits(dir.path() / "unscaled_weights", *cpu)),
            1e-5);
  EXPECT_GE(test::max_relative_error(unscaled, original), 1e-3);
}

}  // namespace
}  // namespace eaq
