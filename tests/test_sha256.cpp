#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"
#include "core/sha256.hpp"
#include "text_test_support.hpp"

namespace eaq {
namespace {

TEST(Sha256, KnownVectors) {
  // FIPS 180-4 / NIST examples.
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalUpdatesMatchOneShot) {
  // Chunk sizes that cross the 64-byte block and the 56-byte padding boundaries.
  std::string message;
  for (int i = 0; i < 300; ++i) message += static_cast<char>(i * 7);
  for (std::size_t chunk : {1, 3, 55, 56, 63, 64, 65, 128}) {
    Sha256 hash;
    for (std::size_t pos = 0; pos < message.size(); pos += chunk) {
      hash.update(std::string_view(message).substr(pos, chunk));
    }
    EXPECT_EQ(hash.finish_hex(), sha256_hex(message)) << "chunk " << chunk;
  }
}

TEST(Sha256, FileHashMatchesItsBytes) {
  test::TempDir dir;
  test::write_file(dir.path() / "f.bin", "abc");
  EXPECT_EQ(sha256_file_hex(dir.path() / "f.bin"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // The vocabulary we ship is byte-identical to bert-base-uncased's (PROVENANCE.md).
  EXPECT_EQ(sha256_file_hex(test::repo_path("data/tokenizers/bert-base-uncased/vocab.txt")),
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3");
  EXPECT_THROW(sha256_file_hex(dir.path() / "missing"), Error);
}

}  // namespace
}  // namespace eaq
