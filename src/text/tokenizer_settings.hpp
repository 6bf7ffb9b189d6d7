// The settings Hugging Face keeps beside a tokenizer's files (tokenizer_config.json, then
// special_tokens_map.json), and the file helpers the tokenizer loaders share.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace eaq::text {

struct TokenizerSettings {
  std::optional<bool> do_lower_case;
  std::optional<bool> strip_accents;  // null in the file: unset
  std::optional<bool> tokenize_chinese_chars;
  std::optional<bool> add_prefix_space;
  // Absent, or Hugging Face's "no limit" placeholder (a huge number): unset.
  std::optional<std::size_t> model_max_length;
  // unk_token, sep_token, pad_token, cls_token, mask_token, bos_token, eos_token when given.
  std::map<std::string, std::string> special_tokens;

  std::optional<std::string> special(const std::string& key) const;
};

// Reads tokenizer_config.json and special_tokens_map.json in `folder` when they exist (the
// latter's tokens win, as in transformers). Throws eaq::Error naming a file that is not valid.
TokenizerSettings read_tokenizer_settings(const std::filesystem::path& folder);

// The whole file; errors name it.
std::string read_text_file(const std::filesystem::path& path);
// config.json's model_type in `folder`, if the file exists and has one.
std::optional<std::string> read_model_type(const std::filesystem::path& folder);

}  // namespace eaq::text
