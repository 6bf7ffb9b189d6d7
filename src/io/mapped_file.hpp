// A read-only memory mapping of a whole file, shared by the tensors that view it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace eaq {

class MappedFile {
 public:
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  MappedFile() = default;
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

// Writes bytes to `path` atomically: a temporary file beside it, fsync, then rename.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace eaq
