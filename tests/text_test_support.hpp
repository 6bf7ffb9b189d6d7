// Helpers for the tokenizer, dataset and `eaq tokenize` tests (on top of test_util.hpp).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "test_util.hpp"
#include "text/tokenizer.hpp"
#include "text/tokenizer_loader.hpp"

namespace eaq::test {

inline std::filesystem::path repo_path(const std::string& relative) {
  return std::filesystem::path(EAQ_SOURCE_DIR) / relative;
}

// The tokenizers in data/tokenizers/, loaded once per test process.
inline const text::Tokenizer& bert_tokenizer() {
  static const text::Tokenizer tokenizer =
      text::load_tokenizer(repo_path("data/tokenizers/bert-base-uncased"));
  return tokenizer;
}
inline const text::Tokenizer& gpt2_tokenizer() {
  static const text::Tokenizer tokenizer = text::load_tokenizer(repo_path("data/tokenizers/gpt2"));
  return tokenizer;
}

// write_text, creating the folders on the way.
inline void write_file(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  write_text(path, text);
}

// Runs the built `eaq` binary with these arguments, each passed as is (quoted for the shell).
inline CommandResult run_eaq(const std::vector<std::string>& args) {
  std::string command = "'" + eaq_binary() + "'";
  for (const std::string& arg : args) {
    command += " '";
    for (char c : arg) command += c == '\'' ? std::string("'\\''") : std::string(1, c);
    command += "'";
  }
  return run_command(command + " </dev/null");
}

}  // namespace eaq::test
