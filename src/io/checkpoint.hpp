// A model's weights: one model.safetensors, or several shards listed in
// model.safetensors.index.json. Tensor names are looked up across all shards.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.hpp"

namespace eaq {

class Checkpoint {
 public:
  // Opens the weights in a Hugging Face model folder. A folder holding only pytorch_model.bin
  // (or other pickled formats) gets an error explaining how to convert it.
  static Checkpoint open_folder(const std::filesystem::path& dir);
  static Checkpoint open_files(const std::vector<std::string>& paths);

  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const HostTensor& tensor(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  const std::vector<SafetensorsFile>& files() const { return files_; }
  std::string description()
      const;  // "dir/model.safetensors" or "dir/model.safetensors.index.json (3 shards)"

 private:
  std::string description_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::size_t> index_;  // tensor name -> position in files_
};

}  // namespace eaq
