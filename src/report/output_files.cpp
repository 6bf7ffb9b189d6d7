#include "report/output_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "report/csv_writer.hpp"
#include "report/json_writer.hpp"

namespace eaq::report {
namespace fs = std::filesystem;
namespace {

fs::path folder_of(const fs::path& path) {
  const fs::path parent = path.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

std::string trial_stem(int trial, std::string_view timestamp) {
  return fmt::format("trial_{}_{}", trial, timestamp);
}

// Why a folder cannot be created, in words: the nearest existing ancestor that is not a folder.
std::string blocking_file(const fs::path& dir) {
  std::error_code ec;
  for (fs::path p = dir; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    if (fs::exists(p, ec)) {
      if (!fs::is_directory(p, ec))
        return fmt::format(" ('{}' is a file, not a folder)", p.string());
      return {};
    }
  }
  return {};
}

// A temporary file next to where `path` will go: "<folder>/.<name>.tmp.XXXXXX".
int make_temp_file(const fs::path& folder, const std::string& name, std::string* temp_path) {
  std::string pattern = (folder / ("." + name + ".tmp.XXXXXX")).string();
  const int fd = ::mkostemp(pattern.data(), O_CLOEXEC);
  *temp_path = pattern;
  return fd;
}

void write_all(int fd, std::string_view content, const std::string& what) {
  const char* data = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write {}: {}", what, std::strerror(errno));
    }
    data += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace

OutputPaths default_output_paths(const fs::path& results_root, std::string_view precision,
                                 int trial, std::string_view timestamp) {
  EAQ_CHECK(!precision.empty() && precision != "." && precision != ".." &&
                precision.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789._-") == std::string_view::npos,
            "precision '{}' cannot name a results folder (letters, digits, '.', '_', '-' only)",
            precision);
  EAQ_CHECK(trial >= 0, "--trial must be >= 0, got {}", trial);
  const fs::path stem = results_root / std::string(precision) / trial_stem(trial, timestamp);
  return {fs::path(stem).concat(".csv"), fs::path(stem).concat(".json")};
}

OutputPaths resolve_output_paths(std::string_view output_flag, std::string_view precision,
                                 int trial, std::string_view timestamp,
                                 const fs::path& results_root) {
  if (output_flag.empty()) return default_output_paths(results_root, precision, trial, timestamp);
  EAQ_CHECK(trial >= 0, "--trial must be >= 0, got {}", trial);
  const fs::path given{std::string(output_flag)};
  std::error_code ec;
  if (output_flag.back() == '/' || fs::is_directory(given, ec)) {
    const fs::path stem = given / trial_stem(trial, timestamp);
    return {fs::path(stem).concat(".csv"), fs::path(stem).concat(".json")};
  }
  const fs::path extension = given.extension();
  if (extension == ".csv") return {given, fs::path(given).replace_extension(".json")};
  if (extension == ".json") return {fs::path(given).replace_extension(".csv"), given};
  fail(
      "--output '{}' must end in .csv or .json (the other file goes beside it), or name a folder "
      "(end it with '/') that receives trial_<N>_<timestamp>.csv and .json",
      output_flag);
}

OutputPaths avoid_existing(const OutputPaths& paths) {
  std::error_code ec;
  const auto taken = [&](const OutputPaths& p) {
    return fs::exists(p.csv, ec) || fs::exists(p.json, ec);
  };
  if (!taken(paths)) return paths;
  for (int n = 2;; ++n) {
    OutputPaths candidate{
        folder_of(paths.csv) / fmt::format("{}_{}.csv", paths.csv.stem().string(), n),
        folder_of(paths.json) / fmt::format("{}_{}.json", paths.json.stem().string(), n)};
    if (!taken(candidate)) return candidate;
  }
}

void ensure_writable_output_dir(const fs::path& dir_in) {
  const fs::path dir = dir_in.empty() ? fs::path(".") : dir_in;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    fail("output folder '{}' is a file, not a folder", dir.string());
  }
  fs::create_directories(dir, ec);
  if (ec) {
    fail("cannot create output folder '{}': {}{}", dir.string(), ec.message(), blocking_file(dir));
  }
  std::string probe;
  const int fd = make_temp_file(dir, "eaq-write-check", &probe);
  if (fd < 0) fail("output folder '{}' is not writable: {}", dir.string(), std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  EAQ_CHECK(!path.filename().empty(), "output path '{}' names no file", path.string());
  const fs::path folder = folder_of(path);
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) {
    fail("cannot create output folder '{}': {}{}", folder.string(), ec.message(),
         blocking_file(folder));
  }
  std::string temp;
  const int fd = make_temp_file(folder, path.filename().string(), &temp);
  if (fd < 0) {
    fail("cannot create a file in '{}' to write {}: {}", folder.string(), path.string(),
         std::strerror(errno));
  }
  try {
    write_all(fd, content, path.string());
    if (::fchmod(fd, 0644) != 0 || ::fsync(fd) != 0) {
      fail("cannot flush {}: {}", path.string(), std::strerror(errno));
    }
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    fail("cannot close {}: {}", path.string(), std::strerror(error));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    fail("cannot move the finished file to {}: {}", path.string(), std::strerror(error));
  }
  // Make the rename itself durable.
  const int dir_fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void write_result_files(const Result& result, const OutputPaths& paths) {
  write_file_atomic(paths.csv, to_csv(result));
  write_file_atomic(paths.json, to_json(result));
}

}  // namespace eaq::report
