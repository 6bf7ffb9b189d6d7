// File helpers for the measure/report tests (temporary folders come from test_util.hpp).
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace eaq::test {

// Writes `content` to `path`, creating its folders; optionally executable (a fake program).
inline std::filesystem::path write_file(const std::filesystem::path& path, std::string_view content,
                                        bool executable = false) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
  if (executable) ::chmod(path.c_str(), 0755);
  return path;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace eaq::test
