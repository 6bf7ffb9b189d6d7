#include "text/tokenizer_settings.hpp"

#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "io/json_file.hpp"

namespace eaq::text {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EAQ_CHECK(in.good(), "cannot open {}", path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  EAQ_CHECK(!in.bad(), "cannot read {}", path.string());
  return std::move(buffer).str();
}

std::optional<std::string> read_model_type(const fs::path& folder) {
  const fs::path config = folder / "config.json";
  if (!fs::is_regular_file(config)) return std::nullopt;
  const json root = read_json_file(config);
  if (!root.is_object() || !root.contains("model_type") || !root["model_type"].is_string()) {
    return std::nullopt;
  }
  return root["model_type"].get<std::string>();
}

std::optional<std::string> TokenizerSettings::special(const std::string& key) const {
  const auto it = special_tokens.find(key);
  if (it == special_tokens.end()) return std::nullopt;
  return it->second;
}

namespace {

std::optional<bool> optional_bool(const json& root, const char* key, const fs::path& file) {
  if (!root.contains(key) || root[key].is_null()) return std::nullopt;
  EAQ_CHECK(root[key].is_boolean(), "{}: '{}' must be true, false or null", file.string(), key);
  return root[key].get<bool>();
}

// A special token is written as a string or as an AddedToken object {"content": ...}.
void read_special_tokens(const json& root, const fs::path& file, TokenizerSettings& settings) {
  for (const char* key : {"unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
                          "bos_token", "eos_token"}) {
    if (!root.contains(key) || root[key].is_null()) continue;
    const json& value = root[key];
    if (value.is_string()) {
      settings.special_tokens[key] = value.get<std::string>();
    } else if (value.is_object() && value.contains("content") && value["content"].is_string()) {
      settings.special_tokens[key] = value["content"].get<std::string>();
    } else {
      fail("{}: '{}' must be a string or an object with a 'content' string", file.string(), key);
    }
  }
}

}  // namespace

TokenizerSettings read_tokenizer_settings(const fs::path& folder) {
  TokenizerSettings settings;
  const fs::path config_file = folder / "tokenizer_config.json";
  if (fs::is_regular_file(config_file)) {
    const json root = read_json_file(config_file);
    EAQ_CHECK(root.is_object(), "{}: expected a JSON object", config_file.string());
    settings.do_lower_case = optional_bool(root, "do_lower_case", config_file);
    settings.strip_accents = optional_bool(root, "strip_accents", config_file);
    settings.tokenize_chinese_chars = optional_bool(root, "tokenize_chinese_chars", config_file);
    settings.add_prefix_space = optional_bool(root, "add_prefix_space", config_file);
    if (root.contains("model_max_length") && !root["model_max_length"].is_null()) {
      const json& value = root["model_max_length"];
      EAQ_CHECK(value.is_number() && value.get<double>() > 0,
                "{}: model_max_length must be a positive number", config_file.string());
      // transformers writes 1e30 for "no limit"; anything that large is no limit.
      if (value.is_number_unsigned() && value.get<std::uint64_t>() < (1ULL << 40)) {
        settings.model_max_length = static_cast<std::size_t>(value.get<std::uint64_t>());
      }
    }
    read_special_tokens(root, config_file, settings);
  }
  const fs::path map_file = folder / "special_tokens_map.json";
  if (fs::is_regular_file(map_file)) {
    const json root = read_json_file(map_file);
    EAQ_CHECK(root.is_object(), "{}: expected a JSON object", map_file.string());
    read_special_tokens(root, map_file, settings);
  }
  return settings;
}

}  // namespace eaq::text
