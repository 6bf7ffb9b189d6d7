#include "io/model_folder.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>

#include "core/error.hpp"

namespace eaq {
namespace fs = std::filesystem;

std::vector<fs::path> hf_cache_roots() {
  std::vector<fs::path> roots;
  if (const char* hub_cache = std::getenv("HF_HUB_CACHE"); hub_cache && *hub_cache) {
    roots.emplace_back(hub_cache);
  }
  if (const char* hf_home = std::getenv("HF_HOME"); hf_home && *hf_home) {
    roots.push_back(fs::path(hf_home) / "hub");
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    roots.push_back(fs::path(home) / ".cache" / "huggingface" / "hub");
  }
  return roots;
}

namespace {

bool looks_like_hub_name(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.front() == '.' || name.back() == '/')
    return false;
  if (std::count(name.begin(), name.end(), '/') > 1) return false;
  return name.find("..") == std::string::npos;
}

// models--org--name/snapshots/<rev>: refs/main names the revision; with no refs/main, a single
// snapshot is unambiguous.
fs::path snapshot_in(const fs::path& repo_dir) {
  const fs::path snapshots = repo_dir / "snapshots";
  const fs::path ref = repo_dir / "refs" / "main";
  if (fs::exists(ref)) {
    std::ifstream in(ref);
    std::string revision;
    std::getline(in, revision);
    while (!revision.empty() && std::isspace(static_cast<unsigned char>(revision.back()))) {
      revision.pop_back();
    }
    const fs::path snapshot = snapshots / revision;
    EAQ_CHECK(!revision.empty() && fs::is_directory(snapshot),
              "{}: refs/main names revision '{}' but {} does not exist", repo_dir.string(),
              revision, snapshot.string());
    return snapshot;
  }
  std::vector<fs::path> found;
  if (fs::is_directory(snapshots)) {
    for (const auto& entry : fs::directory_iterator(snapshots)) {
      if (entry.is_directory()) found.push_back(entry.path());
    }
  }
  EAQ_CHECK(!found.empty(), "{}: no snapshots in the cache entry", repo_dir.string());
  EAQ_CHECK(found.size() == 1,
            "{}: {} snapshots and no refs/main to choose between them; pass the snapshot folder "
            "with --model",
            repo_dir.string(), found.size());
  return found.front();
}

}  // namespace

fs::path resolve_model_path(const std::string& name_or_dir) {
  const fs::path as_path(name_or_dir);
  if (fs::is_directory(as_path)) return as_path;
  EAQ_CHECK(!fs::exists(as_path), "{}: is a file, expected a model folder or a hub name",
            name_or_dir);
  EAQ_CHECK(looks_like_hub_name(name_or_dir),
            "{}: no such folder (and it is not a Hugging Face hub name like org/name)",
            name_or_dir);

  std::string repo_folder = "models--" + name_or_dir;
  for (std::size_t pos = 0; (pos = repo_folder.find('/', pos)) != std::string::npos;) {
    repo_folder.replace(pos, 1, "--");
  }
  std::vector<std::string> looked;
  for (const fs::path& root : hf_cache_roots()) {
    const fs::path repo_dir = root / repo_folder;
    looked.push_back(repo_dir.string());
    if (fs::is_directory(repo_dir)) return snapshot_in(repo_dir);
  }
  fail(
      "model '{}' is neither a folder nor in the Hugging Face cache. Looked in:\n  {}\n"
      "eaq does not download models. With network access, fetch it once, e.g.\n"
      "  huggingface-cli download {}\n"
      "or  git clone https://huggingface.co/{}  and pass that folder to --model.",
      name_or_dir,
      looked.empty() ? std::string("(no cache folder: HOME, HF_HOME and HF_HUB_CACHE are unset)")
                     : fmt::format("{}", fmt::join(looked, "\n  ")),
      name_or_dir, name_or_dir);
}

}  // namespace eaq
