// Safetensors files (https://github.com/huggingface/safetensors): memory-mapped, validated reads
// and atomic writes. A model's weights may span several files through
// model.safetensors.index.json: see io/checkpoint.hpp.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace eaq {

class SafetensorsFile {
 public:
  // Maps the file and validates its header: length sane and inside the file, JSON well-formed,
  // dtypes known, shape x dtype size = byte length, offsets inside the data and non-overlapping.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws eaq::Error naming the file and the tensor when it is absent.
  const HostTensor& tensor(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::size_t file_size() const { return file_size_; }

 private:
  std::string path_;
  std::size_t file_size_ = 0;
  std::map<std::string, HostTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes atomically (a temporary file in the same folder, then rename). Tensors keep the given
// order. Metadata becomes the "__metadata__" string map.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, HostTensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace eaq
