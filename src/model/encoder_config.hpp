// The hyper-parameters of a BERT-family encoder, read from a Hugging Face config.json. Only
// fields that change the math are kept; unsupported values are refused when parsed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"

namespace eaq {

enum class EncoderArch { DistilBert, Bert };
enum class EncoderHead { None, DistilBertClassifier, BertClassifier };

struct EncoderConfig {
  EncoderArch arch = EncoderArch::DistilBert;
  EncoderHead head = EncoderHead::None;
  std::string architecture;  // e.g. "DistilBertForSequenceClassification"
  std::int64_t vocab_size = 0;
  std::int64_t hidden = 0;
  std::int64_t layers = 0;
  std::int64_t heads = 0;
  std::int64_t intermediate = 0;
  std::int64_t max_positions = 0;
  std::int64_t type_vocab_size = 0;  // 0: no token type embeddings (DistilBERT)
  std::int64_t num_labels = 0;       // 0 for bare encoders
  bool bert_pooler = false;          // BertModel's pooler (dense + tanh on [CLS])
  Activation activation = Activation::Gelu;
  float layer_norm_eps = 1e-12f;
  bool sinusoidal_positions = false;
  std::vector<std::string> label_names;  // id2label, in id order

  std::int64_t head_dim() const { return hidden / heads; }
};

// Parses config.json of a DistilBERT or BERT model; the class comes from "architectures"
// (a bare encoder when absent).
EncoderConfig parse_encoder_config(const nlohmann::json& config, const std::filesystem::path& path);

// Maps a Hugging Face activation name (hidden_act / activation) to ours; throws naming the file.
Activation parse_activation(const std::string& name, const std::filesystem::path& path,
                            const std::string& field);

}  // namespace eaq
