// Helpers shared by the tests: temporary folders, file writing, running the eaq binary.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace eaq::test {

// The message of the eaq::Error that `f` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Expects `statement` to throw an eaq::Error whose message contains `text`.
#define EXPECT_ERROR_HAS(statement, text)                                  \
  do {                                                                     \
    const std::string message = ::eaq::test::error_of([&] { statement; }); \
    EXPECT_NE(message.find(text), std::string::npos) << message;           \
  } while (0)

// A fresh folder under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("eaq-test-" + std::to_string(rd()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Deterministic uniform values in [-scale, scale].
inline HostTensor random_f32(Shape shape, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  HostTensor t = HostTensor::empty(DType::F32, std::move(shape));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.mutable_data<float>()[i] = dist(rng);
  return t;
}

// `t` as f32 with every value rounded through `dtype` (F16 or BF16; F32 leaves it): what a GPU
// of that dtype sees, so that only a kernel's own error is measured against the CPU.
inline HostTensor rounded_to(const HostTensor& t, DType dtype) {
  HostTensor out = t.to_f32();
  for (std::int64_t i = 0; i < out.numel(); ++i) {
    float& v = out.mutable_data<float>()[i];
    if (dtype == DType::F16) v = f16_bits_to_f32(f32_to_f16_bits(v));
    if (dtype == DType::BF16) v = bf16_bits_to_f32(f32_to_bf16_bits(v));
  }
  return out;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Sets an environment variable for a scope (nullptr unsets it) and restores it after: the
// backends read their EAQ_* switches at each launch, so a test can run both sides of one.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ScopedEnv(const char* name, const std::string& value) : ScopedEnv(name, value.c_str()) {}
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

// Runs a shell command line, capturing its output.
CommandResult run_command(const std::string& command_line);

// The repository and the eaq binary: compiled-in paths, overridable by the environment variables
// of the same names (the GPU machine runs binaries built elsewhere on a copy of the tree).
inline std::string source_dir() {
  const char* env = std::getenv("EAQ_SOURCE_DIR");
  return env && *env ? env : EAQ_SOURCE_DIR;
}
inline std::string eaq_binary() {
  const char* env = std::getenv("EAQ_BINARY");
  return env && *env ? env : EAQ_BINARY;
}

}  // namespace eaq::test
