#include "io/bundled.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>

#include "core/error.hpp"

namespace eaq {
namespace fs = std::filesystem;

namespace {

fs::path executable_dir() {
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  return error ? fs::path() : exe.parent_path();
}

}  // namespace

std::vector<fs::path> bundled_candidates(const std::string& relative) {
  std::vector<fs::path> candidates;
  if (const char* home = std::getenv("EAQ_HOME"); home && *home)
    candidates.push_back(fs::path(home) / relative);
  const fs::path exe_dir = executable_dir();
  if (!exe_dir.empty()) {
    candidates.push_back(exe_dir.parent_path() / relative);                    // build/eaq
    candidates.push_back(exe_dir.parent_path() / "share" / "eaq" / relative);  // prefix/bin/eaq
  }
  candidates.push_back(fs::current_path() / relative);
  return candidates;
}

fs::path bundled_path(const std::string& relative) {
  const std::vector<fs::path> candidates = bundled_candidates(relative);
  for (const fs::path& candidate : candidates) {
    if (fs::exists(candidate)) return candidate;
  }
  std::vector<std::string> names;
  for (const fs::path& c : candidates) names.push_back(c.string());
  fail(
      "bundled file {} not found; looked in:\n  {}\nset EAQ_HOME to the eaq source or install "
      "folder",
      relative, fmt::join(names, "\n  "));
}

}  // namespace eaq
