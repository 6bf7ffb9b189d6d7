#include "io/checkpoint.hpp"

#include <fmt/format.h>

#include <set>

#include "core/error.hpp"
#include "io/json_file.hpp"

namespace eaq {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail_unsupported_format(const fs::path& dir, const std::string& found) {
  fail(
      "{}: found {} but no model.safetensors: eaq reads only safetensors weights (pickled .bin "
      "files can run arbitrary code and are not supported). Convert once with Python:\n"
      "  from transformers import AutoModelForSequenceClassification as M  # or AutoModel, "
      "AutoModelForCausalLM\n"
      "  M.from_pretrained('{}').save_pretrained('{}-safetensors', safe_serialization=True)",
      dir.string(), found, dir.string(), dir.string());
}

}  // namespace

Checkpoint Checkpoint::open_files(const std::vector<std::string>& paths) {
  Checkpoint checkpoint;
  for (const std::string& path : paths) {
    checkpoint.files_.push_back(SafetensorsFile::open(path));
    const std::size_t position = checkpoint.files_.size() - 1;
    for (const std::string& name : checkpoint.files_.back().names()) {
      const auto [it, inserted] = checkpoint.index_.emplace(name, position);
      EAQ_CHECK(inserted, "tensor '{}' is in both {} and {}", name,
                checkpoint.files_[it->second].path(), path);
    }
  }
  checkpoint.description_ =
      paths.size() == 1 ? paths.front() : fmt::format("{}", fmt::join(paths, ", "));
  return checkpoint;
}

Checkpoint Checkpoint::open_folder(const fs::path& dir) {
  EAQ_CHECK(fs::is_directory(dir), "{}: not a directory", dir.string());
  const fs::path single = dir / "model.safetensors";
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::exists(single)) {
    Checkpoint checkpoint = open_files({single.string()});
    return checkpoint;
  }
  if (fs::exists(index_path)) {
    const nlohmann::json index = read_json_file(index_path);
    EAQ_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
              "{}: missing the \"weight_map\" object", index_path.string());
    std::set<std::string> shard_names;
    for (const auto& [name, shard] : index["weight_map"].items()) {
      EAQ_CHECK(shard.is_string(), "{}: weight_map entry '{}' is not a file name",
                index_path.string(), name);
      const std::string shard_name = shard.get<std::string>();
      EAQ_CHECK(
          shard_name.find('/') == std::string::npos && shard_name != ".." && !shard_name.empty(),
          "{}: weight_map entry '{}' names '{}', which is not a file in this folder",
          index_path.string(), name, shard_name);
      shard_names.insert(shard_name);
    }
    std::vector<std::string> paths;
    for (const std::string& shard : shard_names) {
      const fs::path shard_path = dir / shard;
      EAQ_CHECK(fs::exists(shard_path), "{}: shard {} listed in the index does not exist",
                index_path.string(), shard_path.string());
      paths.push_back(shard_path.string());
    }
    Checkpoint checkpoint = open_files(paths);
    for (const auto& [name, shard] : index["weight_map"].items()) {
      EAQ_CHECK(checkpoint.contains(name),
                "{}: the index maps tensor '{}' to {}, but that shard does not contain it",
                index_path.string(), name, shard.get<std::string>());
      const std::string& actual = checkpoint.file_of(name);
      EAQ_CHECK(fs::path(actual).filename() == shard.get<std::string>(),
                "{}: the index maps tensor '{}' to {}, but it is in {}", index_path.string(), name,
                shard.get<std::string>(), actual);
    }
    checkpoint.description_ =
        fmt::format("{} ({} shards)", index_path.string(), checkpoint.files_.size());
    return checkpoint;
  }
  for (const char* other : {"pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5",
                            "flax_model.msgpack", "model.ckpt.index"}) {
    if (fs::exists(dir / other)) fail_unsupported_format(dir, other);
  }
  fail("{}: no model.safetensors or model.safetensors.index.json in this folder", dir.string());
}

const HostTensor& Checkpoint::tensor(const std::string& name) const {
  const auto it = index_.find(name);
  EAQ_CHECK(it != index_.end(), "{}: no tensor named '{}'", description_, name);
  return files_[it->second].tensor(name);
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  const auto it = index_.find(name);
  EAQ_CHECK(it != index_.end(), "{}: no tensor named '{}'", description_, name);
  return files_[it->second].path();
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, position] : index_) out.push_back(name);
  return out;
}

std::string Checkpoint::description() const {
  return description_;
}

}  // namespace eaq
