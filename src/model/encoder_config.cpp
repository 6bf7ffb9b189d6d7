#include "model/encoder_config.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace eaq {
namespace {

using json = nlohmann::json;

std::int64_t positive_int(const json& config, const std::filesystem::path& path,
                          const std::string& field) {
  const auto it = config.find(field);
  EAQ_CHECK(it != config.end(), "{}: missing \"{}\"", path.string(), field);
  EAQ_CHECK(it->is_number_integer() && it->get<std::int64_t>() > 0,
            "{}: \"{}\" must be a positive integer, got {}", path.string(), field, it->dump());
  return it->get<std::int64_t>();
}

// The path of the config being parsed, for messages from optional_value().
thread_local const std::filesystem::path* current_path = nullptr;

template <class T>
T optional_value(const json& config, const std::string& field, T fallback) {
  const auto it = config.find(field);
  if (it == config.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail("{}: \"{}\" has the wrong type: {}", current_path ? current_path->string() : "config",
         field, it->dump());
  }
}

std::vector<std::string> label_names(const json& config, const std::filesystem::path& path,
                                     std::int64_t num_labels) {
  std::vector<std::string> names(static_cast<std::size_t>(num_labels));
  for (std::int64_t i = 0; i < num_labels; ++i) names[i] = fmt::format("LABEL_{}", i);
  const auto it = config.find("id2label");
  if (it == config.end() || !it->is_object()) return names;
  for (const auto& [key, value] : it->items()) {
    std::int64_t id = -1;
    try {
      id = std::stoll(key);
    } catch (const std::exception&) {
      fail("{}: id2label key '{}' is not an integer", path.string(), key);
    }
    EAQ_CHECK(id >= 0 && id < num_labels && value.is_string(),
              "{}: id2label entry '{}' is out of range for {} labels or not a string",
              path.string(), key, num_labels);
    names[id] = value.get<std::string>();
  }
  return names;
}

std::int64_t num_labels_of(const json& config, const std::filesystem::path& path) {
  if (config.contains("num_labels")) return positive_int(config, path, "num_labels");
  if (config.contains("id2label") && config["id2label"].is_object()) {
    return static_cast<std::int64_t>(config["id2label"].size());
  }
  return 2;  // PretrainedConfig's default
}

std::string single_architecture(const json& config, const std::filesystem::path& path,
                                const std::string& fallback) {
  const auto it = config.find("architectures");
  if (it == config.end() || it->is_null()) return fallback;
  EAQ_CHECK(it->is_array() && it->size() == 1 && (*it)[0].is_string(),
            "{}: \"architectures\" must list exactly one class name, got {}", path.string(),
            it->dump());
  return (*it)[0].get<std::string>();
}

void refuse_if(bool condition, const std::filesystem::path& path, const std::string& what) {
  EAQ_CHECK(!condition, "{}: {} is not supported by eaq", path.string(), what);
}

EncoderConfig parse_distilbert(const json& c, const std::filesystem::path& path) {
  EncoderConfig config;
  config.arch = EncoderArch::DistilBert;
  config.architecture = single_architecture(c, path, "DistilBertModel");
  config.vocab_size = positive_int(c, path, "vocab_size");
  config.hidden = positive_int(c, path, "dim");
  config.layers = positive_int(c, path, "n_layers");
  config.heads = positive_int(c, path, "n_heads");
  config.intermediate = positive_int(c, path, "hidden_dim");
  config.max_positions = positive_int(c, path, "max_position_embeddings");
  config.activation =
      parse_activation(optional_value<std::string>(c, "activation", "gelu"), path, "activation");
  config.sinusoidal_positions = optional_value<bool>(c, "sinusoidal_pos_embds", false);
  config.layer_norm_eps = 1e-12f;  // hard-coded in Hugging Face's DistilBERT modules
  if (config.architecture == "DistilBertForSequenceClassification") {
    config.head = EncoderHead::DistilBertClassifier;
  } else if (config.architecture != "DistilBertModel") {
    fail(
        "{}: architecture {} is not supported (eaq runs DistilBertModel and "
        "DistilBertForSequenceClassification)",
        path.string(), config.architecture);
  }
  return config;
}

EncoderConfig parse_bert(const json& c, const std::filesystem::path& path) {
  EncoderConfig config;
  config.arch = EncoderArch::Bert;
  config.architecture = single_architecture(c, path, "BertModel");
  config.vocab_size = positive_int(c, path, "vocab_size");
  config.hidden = positive_int(c, path, "hidden_size");
  config.layers = positive_int(c, path, "num_hidden_layers");
  config.heads = positive_int(c, path, "num_attention_heads");
  config.intermediate = positive_int(c, path, "intermediate_size");
  config.max_positions = positive_int(c, path, "max_position_embeddings");
  config.type_vocab_size = positive_int(c, path, "type_vocab_size");
  config.activation =
      parse_activation(optional_value<std::string>(c, "hidden_act", "gelu"), path, "hidden_act");
  config.layer_norm_eps = static_cast<float>(optional_value<double>(c, "layer_norm_eps", 1e-12));
  const std::string position_type =
      optional_value<std::string>(c, "position_embedding_type", "absolute");
  refuse_if(position_type != "absolute", path,
            fmt::format("position_embedding_type \"{}\"", position_type));
  refuse_if(optional_value<bool>(c, "is_decoder", false), path, "is_decoder: true");
  refuse_if(optional_value<bool>(c, "add_cross_attention", false), path,
            "add_cross_attention: true");
  if (config.architecture == "BertForSequenceClassification") {
    config.head = EncoderHead::BertClassifier;
    config.bert_pooler = true;
  } else if (config.architecture == "BertModel") {
    config.bert_pooler = true;  // BertModel(add_pooling_layer=True) is what save_pretrained stores
  } else {
    fail(
        "{}: architecture {} is not supported (eaq runs BertModel and "
        "BertForSequenceClassification)",
        path.string(), config.architecture);
  }
  return config;
}

}  // namespace

Activation parse_activation(const std::string& name, const std::filesystem::path& path,
                            const std::string& field) {
  if (name == "gelu") return Activation::Gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") {
    return Activation::GeluTanh;
  }
  if (name == "relu") return Activation::Relu;
  fail(
      "{}: \"{}\": \"{}\" is not supported (eaq supports gelu, gelu_new, gelu_pytorch_tanh, "
      "relu)",
      path.string(), field, name);
}

EncoderConfig parse_encoder_config(const json& c, const std::filesystem::path& path) {
  EAQ_CHECK(c.is_object(), "{}: expected a JSON object", path.string());
  current_path = &path;
  const std::string model_type = optional_value<std::string>(c, "model_type", "");
  EncoderConfig config;
  if (model_type == "distilbert") {
    config = parse_distilbert(c, path);
  } else if (model_type == "bert") {
    config = parse_bert(c, path);
  } else {
    fail("{}: model_type \"{}\" is not an encoder eaq supports (distilbert, bert)", path.string(),
         model_type);
  }
  EAQ_CHECK(config.hidden % config.heads == 0,
            "{}: hidden size {} is not divisible by the number of heads {}", path.string(),
            config.hidden, config.heads);
  if (config.head != EncoderHead::None) {
    config.num_labels = num_labels_of(c, path);
    config.label_names = label_names(c, path, config.num_labels);
    const std::string problem = optional_value<std::string>(c, "problem_type", "");
    refuse_if(problem == "regression" || (problem.empty() && config.num_labels == 1), path,
              "a regression head (num_labels 1 / problem_type regression)");
  }
  return config;
}

}  // namespace eaq
