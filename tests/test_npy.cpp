#include <gtest/gtest.h>

#include "core/error.hpp"
#include "io/npy.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

std::string npy_error(const std::string& path) {
  try {
    read_npy(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A .npy file as NumPy writes it (format 1.0), from a header dict and raw data.
std::string npy_bytes(const std::string& dict, const std::string& data) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string bytes = "\x93NUMPY";
  bytes.push_back('\x01');
  bytes.push_back('\x00');
  bytes.push_back(static_cast<char>(header.size() & 0xff));
  bytes.push_back(static_cast<char>(header.size() >> 8));
  return bytes + header + data;
}

TEST(Npy, RoundTripsEverySupportedDtype) {
  test::TempDir dir;
  const HostTensor f = test::random_f32({2, 3}, 7);
  write_npy(dir.file("f.npy"), f);
  const HostTensor back = read_npy(dir.file("f.npy"));
  EXPECT_EQ(back.dtype(), DType::F32);
  EXPECT_EQ(back.shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back.data<float>()[i], f.data<float>()[i]);

  HostTensor ids = HostTensor::empty(DType::I64, {5});
  for (int i = 0; i < 5; ++i) ids.mutable_data<std::int64_t>()[i] = -2 + i;
  write_npy(dir.file("i.npy"), ids);
  const HostTensor ids_back = read_npy(dir.file("i.npy"));
  EXPECT_EQ(ids_back.shape(), (Shape{5}));
  EXPECT_EQ(ids_back.to_i64(), (std::vector<std::int64_t>{-2, -1, 0, 1, 2}));
  // The header is the one NumPy writes for a 1-d array: "(5,)".
  EXPECT_NE(test::read_text(dir.file("i.npy")).find("'shape': (5,)"), std::string::npos);
}

TEST(Npy, ReadsWhatNumpyWrites) {
  test::TempDir dir;
  std::string data(2 * 2 * 4, '\0');
  data[0] = 7;    // [0,0] = 7
  data[12] = 42;  // [1,1] = 42
  test::write_text(dir.file("a.npy"),
                   npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", data));
  const HostTensor t = read_npy(dir.file("a.npy"));
  EXPECT_EQ(t.dtype(), DType::I32);
  EXPECT_EQ(t.to_i64(), (std::vector<std::int64_t>{7, 0, 0, 42}));
}

TEST(Npy, RefusesWhatItCannotRead) {
  test::TempDir dir;
  test::write_text(
      dir.file("f64.npy"),
      npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", std::string(8, '\0')));
  EXPECT_NE(npy_error(dir.file("f64.npy")).find("'<f8' is not supported"), std::string::npos);
  test::write_text(
      dir.file("big.npy"),
      npy_bytes("{'descr': '>i4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')));
  EXPECT_NE(npy_error(dir.file("big.npy")).find("not supported"), std::string::npos);
  test::write_text(dir.file("fortran.npy"),
                   npy_bytes("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 2), }",
                             std::string(16, '\0')));
  EXPECT_NE(npy_error(dir.file("fortran.npy")).find("Fortran"), std::string::npos);
  test::write_text(dir.file("short.npy"),
                   npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }",
                             std::string(12, '\0')));
  EXPECT_NE(npy_error(dir.file("short.npy")).find("needs 16"), std::string::npos);
  test::write_text(dir.file("junk.npy"), "hello world, not numpy");
  EXPECT_NE(npy_error(dir.file("junk.npy")).find("not a .npy file"), std::string::npos);
}

}  // namespace
}  // namespace eaq
