// Random encoder checkpoints in Hugging Face layout, written by the tests themselves: for loader
// errors, invariance properties and backend agreement where no golden fixture is needed.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace eaq::test {

struct RandomEncoderSpec {
  std::string model_type = "distilbert";  // or "bert"
  bool classifier = true;
  int vocab = 120, hidden = 32, layers = 2, heads = 4, intermediate = 64, positions = 64;
  int labels = 3;
  std::string activation = "gelu";
  float weight_scale = 0.2f;
  unsigned seed = 1;
};

// The config.json Hugging Face would write for the spec.
nlohmann::json random_encoder_config(const RandomEncoderSpec& spec);
// Writes config.json and model.safetensors (F32) into `dir`.
void write_random_encoder(const std::filesystem::path& dir, const RandomEncoderSpec& spec);

}  // namespace eaq::test
