// Shared helpers for the tokenizer, dataset and `eaq tokenize` tests.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "text/tokenizer.hpp"
#include "text/tokenizer_loader.hpp"

namespace eaq::testing {

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

// A fresh empty directory under the system temp dir, removed when the object goes.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "eaq-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return std::move(buffer).str();
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the built `eaq` binary with these arguments (no shell interpretation of them).
inline CommandResult run_eaq(const std::vector<std::string>& args) {
  TempDir capture;
  std::string command = std::string("'") + EAQ_BINARY + "'";
  for (const std::string& arg : args) {
    std::string quoted = "'";
    for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    command += " " + quoted + "'";
  }
  command += " >'" + (capture / "out").string() + "' 2>'" + (capture / "err").string() + "'";
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = read_file(capture / "out");
  result.err = read_file(capture / "err");
  return result;
}

}  // namespace eaq::testing
