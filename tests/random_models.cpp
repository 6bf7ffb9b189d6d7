#include "random_models.hpp"

#include <fmt/format.h>

#include <random>

#include "io/safetensors.hpp"
#include "test_util.hpp"

namespace eaq::test {

nlohmann::json random_encoder_config(const RandomEncoderSpec& s) {
  nlohmann::json c;
  c["model_type"] = s.model_type;
  c["vocab_size"] = s.vocab;
  c["max_position_embeddings"] = s.positions;
  if (s.model_type == "distilbert") {
    c["architectures"] = {s.classifier ? "DistilBertForSequenceClassification" : "DistilBertModel"};
    c["dim"] = s.hidden;
    c["n_layers"] = s.layers;
    c["n_heads"] = s.heads;
    c["hidden_dim"] = s.intermediate;
    c["activation"] = s.activation;
    c["sinusoidal_pos_embds"] = false;
  } else {
    c["architectures"] = {s.classifier ? "BertForSequenceClassification" : "BertModel"};
    c["hidden_size"] = s.hidden;
    c["num_hidden_layers"] = s.layers;
    c["num_attention_heads"] = s.heads;
    c["intermediate_size"] = s.intermediate;
    c["hidden_act"] = s.activation;
    c["type_vocab_size"] = 2;
    c["layer_norm_eps"] = 1e-12;
  }
  if (s.classifier) {
    nlohmann::json id2label = nlohmann::json::object();
    for (int i = 0; i < s.labels; ++i) id2label[std::to_string(i)] = fmt::format("LABEL_{}", i);
    c["id2label"] = id2label;
  }
  return c;
}

void write_random_encoder(const std::filesystem::path& dir, const RandomEncoderSpec& s) {
  std::filesystem::create_directories(dir);
  write_text(dir / "config.json", random_encoder_config(s).dump(2));
  std::vector<std::pair<std::string, HostTensor>> tensors;
  unsigned seed = s.seed * 1000;
  const auto add = [&](const std::string& name, Shape shape) {
    tensors.emplace_back(name, random_f32(std::move(shape), ++seed, s.weight_scale));
  };
  const auto add_norm = [&](const std::string& name) {
    HostTensor w = random_f32({s.hidden}, ++seed, 0.1f);
    for (std::int64_t i = 0; i < w.numel(); ++i) w.mutable_data<float>()[i] += 1.0f;
    tensors.emplace_back(name + ".weight", w);
    add(name + ".bias", {s.hidden});
  };
  const auto add_linear = [&](const std::string& name, int out, int in) {
    add(name + ".weight", {out, in});
    add(name + ".bias", {out});
  };
  const bool distil = s.model_type == "distilbert";
  const std::string base = s.classifier ? (distil ? "distilbert." : "bert.") : "";
  add(base + "embeddings.word_embeddings.weight", {s.vocab, s.hidden});
  add(base + "embeddings.position_embeddings.weight", {s.positions, s.hidden});
  if (!distil) add(base + "embeddings.token_type_embeddings.weight", {2, s.hidden});
  add_norm(base + "embeddings.LayerNorm");
  for (int l = 0; l < s.layers; ++l) {
    if (distil) {
      const std::string p = fmt::format("{}transformer.layer.{}.", base, l);
      add_linear(p + "attention.q_lin", s.hidden, s.hidden);
      add_linear(p + "attention.k_lin", s.hidden, s.hidden);
      add_linear(p + "attention.v_lin", s.hidden, s.hidden);
      add_linear(p + "attention.out_lin", s.hidden, s.hidden);
      add_norm(p + "sa_layer_norm");
      add_linear(p + "ffn.lin1", s.intermediate, s.hidden);
      add_linear(p + "ffn.lin2", s.hidden, s.intermediate);
      add_norm(p + "output_layer_norm");
    } else {
      const std::string p = fmt::format("{}encoder.layer.{}.", base, l);
      add_linear(p + "attention.self.query", s.hidden, s.hidden);
      add_linear(p + "attention.self.key", s.hidden, s.hidden);
      add_linear(p + "attention.self.value", s.hidden, s.hidden);
      add_linear(p + "attention.output.dense", s.hidden, s.hidden);
      add_norm(p + "attention.output.LayerNorm");
      add_linear(p + "intermediate.dense", s.intermediate, s.hidden);
      add_linear(p + "output.dense", s.hidden, s.intermediate);
      add_norm(p + "output.LayerNorm");
    }
  }
  if (!distil) add_linear(base + "pooler.dense", s.hidden, s.hidden);
  if (s.classifier) {
    if (distil) add_linear("pre_classifier", s.hidden, s.hidden);
    add_linear("classifier", s.labels, s.hidden);
  }
  write_safetensors((dir / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

}  // namespace eaq::test
