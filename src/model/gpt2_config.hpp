// The hyper-parameters of a GPT-2 causal language model, read from a Hugging Face config.json.
// Only fields that change the math are kept; unsupported values are refused when parsed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"

namespace eaq {

struct Gpt2Config {
  std::string architecture;  // "GPT2LMHeadModel" or "GPT2Model" (run with the tied LM head)
  std::int64_t vocab_size = 0;
  std::int64_t positions = 0;  // n_positions: the longest sequence (the context)
  std::int64_t hidden = 0;     // n_embd
  std::int64_t layers = 0;     // n_layer
  std::int64_t heads = 0;      // n_head
  std::int64_t inner = 0;      // n_inner (4 * n_embd when null)
  Activation activation = Activation::GeluTanh;
  float layer_norm_eps = 1e-5f;
  bool scale_attn_weights = true;                // scores / sqrt(head_dim)
  bool scale_attn_by_inverse_layer_idx = false;  // scores / (layer index + 1)
  bool tie_word_embeddings = true;               // lm_head = wte
  std::optional<std::int64_t> bos_token_id, eos_token_id, pad_token_id;

  std::int64_t head_dim() const { return hidden / heads; }
  // The softmax scale of layer `layer` (0-based), as Hugging Face's GPT2Attention.
  float attention_scale(std::int64_t layer) const;
};

// Parses config.json of a GPT-2 model (model_type "gpt2"). A model of another type gets an error
// saying it is not a causal language model eaq runs. Fields missing from the file take
// GPT2Config's defaults, as Hugging Face does.
Gpt2Config parse_gpt2_config(const nlohmann::json& config, const std::filesystem::path& path);

// The model_type of a model folder's config.json ("" when absent); throws naming the file when
// config.json is missing or not JSON.
std::string model_type_of(const std::filesystem::path& model_dir);

}  // namespace eaq
