// SHA-256 (FIPS 180-4), for provenance: the hash of a dataset's source file, of a fixture's input.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace eaq {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  // The digest; the object must not be updated afterwards.
  std::array<std::uint8_t, 32> finish();
  // The digest as 64 lower-case hex digits.
  std::string finish_hex();

 private:
  void compress(const std::uint8_t* block);

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

std::string sha256_hex(std::string_view bytes);
// Hashes a file in chunks; throws eaq::Error naming a file it cannot read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace eaq
