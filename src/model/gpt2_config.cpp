#include "model/gpt2_config.hpp"

#include <fmt/format.h>

#include <cmath>

#include "core/error.hpp"
#include "io/json_file.hpp"
#include "model/encoder_config.hpp"

namespace eaq {
namespace {

using json = nlohmann::json;

// A positive integer field, or `fallback` (GPT2Config's default) when absent or null.
std::int64_t positive_int(const json& c, const std::filesystem::path& path,
                          const std::string& field, std::int64_t fallback) {
  const auto it = c.find(field);
  if (it == c.end() || it->is_null()) return fallback;
  EAQ_CHECK(it->is_number_integer() && it->get<std::int64_t>() > 0,
            "{}: \"{}\" must be a positive integer, got {}", path.string(), field, it->dump());
  return it->get<std::int64_t>();
}

bool boolean(const json& c, const std::filesystem::path& path, const std::string& field,
             bool fallback) {
  const auto it = c.find(field);
  if (it == c.end() || it->is_null()) return fallback;
  EAQ_CHECK(it->is_boolean(), "{}: \"{}\" must be true or false, got {}", path.string(), field,
            it->dump());
  return it->get<bool>();
}

std::optional<std::int64_t> token_id(const json& c, const std::filesystem::path& path,
                                     const std::string& field) {
  const auto it = c.find(field);
  if (it == c.end() || it->is_null()) return std::nullopt;
  // generate() accepts a list of end tokens; the first one is the padding fallback.
  const json& value = it->is_array() && !it->empty() ? (*it)[0] : *it;
  EAQ_CHECK(value.is_number_integer() && value.get<std::int64_t>() >= 0,
            "{}: \"{}\" must be a token id, got {}", path.string(), field, it->dump());
  return value.get<std::int64_t>();
}

std::string architecture_of(const json& c, const std::filesystem::path& path) {
  const auto it = c.find("architectures");
  if (it == c.end() || it->is_null()) return "GPT2LMHeadModel";
  EAQ_CHECK(it->is_array() && it->size() == 1 && (*it)[0].is_string(),
            "{}: \"architectures\" must list exactly one class name, got {}", path.string(),
            it->dump());
  return (*it)[0].get<std::string>();
}

}  // namespace

float Gpt2Config::attention_scale(std::int64_t layer) const {
  double scale = scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(head_dim())) : 1.0;
  if (scale_attn_by_inverse_layer_idx) scale /= static_cast<double>(layer + 1);
  return static_cast<float>(scale);
}

Gpt2Config parse_gpt2_config(const json& c, const std::filesystem::path& path) {
  EAQ_CHECK(c.is_object(), "{}: expected a JSON object", path.string());
  const std::string model_type = c.contains("model_type") && c["model_type"].is_string()
                                     ? c["model_type"].get<std::string>()
                                     : "";
  EAQ_CHECK(model_type == "gpt2",
            "{}: model_type \"{}\" is not a causal language model eaq runs (eaq runs GPT-2: "
            "model_type \"gpt2\")",
            path.string(), model_type);
  Gpt2Config config;
  config.architecture = architecture_of(c, path);
  EAQ_CHECK(config.architecture == "GPT2LMHeadModel" || config.architecture == "GPT2Model",
            "{}: architecture {} is not supported (eaq runs GPT2LMHeadModel, and GPT2Model with "
            "the LM head tied to the token embeddings)",
            path.string(), config.architecture);
  // Defaults: transformers' GPT2Config.
  config.vocab_size = positive_int(c, path, "vocab_size", 50257);
  config.positions = positive_int(c, path, "n_positions", 1024);
  config.hidden = positive_int(c, path, "n_embd", 768);
  config.layers = positive_int(c, path, "n_layer", 12);
  config.heads = positive_int(c, path, "n_head", 12);
  config.inner = positive_int(c, path, "n_inner", 4 * config.hidden);
  EAQ_CHECK(config.hidden % config.heads == 0, "{}: n_embd {} is not divisible by n_head {}",
            path.string(), config.hidden, config.heads);
  const auto activation = c.find("activation_function");
  std::string activation_name = "gelu_new";
  if (activation != c.end() && !activation->is_null()) {
    EAQ_CHECK(activation->is_string(), "{}: \"activation_function\" must be a string, got {}",
              path.string(), activation->dump());
    activation_name = activation->get<std::string>();
  }
  config.activation = parse_activation(activation_name, path, "activation_function");
  const auto eps = c.find("layer_norm_epsilon");
  if (eps != c.end() && !eps->is_null()) {
    EAQ_CHECK(eps->is_number() && eps->get<double>() > 0.0,
              "{}: \"layer_norm_epsilon\" must be a positive number, got {}", path.string(),
              eps->dump());
    config.layer_norm_eps = static_cast<float>(eps->get<double>());
  }
  config.scale_attn_weights = boolean(c, path, "scale_attn_weights", true);
  config.scale_attn_by_inverse_layer_idx =
      boolean(c, path, "scale_attn_by_inverse_layer_idx", false);
  // reorder_and_upcast_attn only changes the order and precision of fp16 training math.
  (void)boolean(c, path, "reorder_and_upcast_attn", false);
  config.tie_word_embeddings = boolean(c, path, "tie_word_embeddings", true);
  EAQ_CHECK(!boolean(c, path, "add_cross_attention", false),
            "{}: add_cross_attention: true (an encoder-decoder GPT-2) is not supported by eaq",
            path.string());
  config.bos_token_id = token_id(c, path, "bos_token_id");
  config.eos_token_id = token_id(c, path, "eos_token_id");
  config.pad_token_id = token_id(c, path, "pad_token_id");
  return config;
}

std::string model_type_of(const std::filesystem::path& model_dir) {
  const std::filesystem::path path = model_dir / "config.json";
  EAQ_CHECK(std::filesystem::exists(path), "{}: no config.json in the model folder",
            model_dir.string());
  const json c = read_json_file(path);
  const auto it = c.find("model_type");
  return it != c.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace eaq
