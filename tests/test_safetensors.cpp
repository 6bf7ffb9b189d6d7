#include <gtest/gtest.h>

#include <cstring>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

using test::TempDir;

// A safetensors file with a hand-written header, to build corrupt files byte by byte.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               std::uint64_t header_len_override = 0) {
  const std::uint64_t len = header_len_override ? header_len_override : header.size();
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  test::write_text(path, bytes + header + data);
}

using ::eaq::test::error_of;

TEST(Safetensors, WriteThenReadRoundTrips) {
  TempDir dir;
  const HostTensor a = test::random_f32({2, 3}, 1);
  HostTensor b = HostTensor::empty(DType::I64, {4});
  for (int i = 0; i < 4; ++i) b.mutable_data<std::int64_t>()[i] = 1000 + i;
  HostTensor c = HostTensor::empty(DType::I8, {3});  // odd size: the next tensor is misaligned
  HostTensor d = HostTensor::empty(DType::F16, {5});
  for (int i = 0; i < 5; ++i) d.mutable_data<std::uint16_t>()[i] = f32_to_f16_bits(0.5f * i);
  write_safetensors(dir.file("t.safetensors"), {{"a", a}, {"b", b}, {"c", c}, {"d", d}},
                    {{"format", "pt"}, {"note", "hello"}});

  const SafetensorsFile file = SafetensorsFile::open(dir.file("t.safetensors"));
  EXPECT_EQ(file.names(), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(file.metadata().at("note"), "hello");
  EXPECT_EQ(file.tensor("a").shape(), (Shape{2, 3}));
  EXPECT_EQ(std::memcmp(file.tensor("a").raw(), a.raw(), a.nbytes()), 0);
  EXPECT_EQ(file.tensor("b").data<std::int64_t>()[3], 1003);
  EXPECT_EQ(file.tensor("d").dtype(), DType::F16);
  EXPECT_EQ(file.tensor("d").to_f32().data<float>()[4], 2.0f);
  EXPECT_NE(error_of([&] { file.tensor("missing"); }).find("no tensor named 'missing'"),
            std::string::npos);
}

TEST(Safetensors, EmptyTensorsAndZeroDims) {
  TempDir dir;
  write_safetensors(dir.file("e.safetensors"), {{"empty", HostTensor::empty(DType::F32, {0, 4})},
                                                {"scalar", HostTensor::from_f32({}, {3.0f})}});
  const SafetensorsFile file = SafetensorsFile::open(dir.file("e.safetensors"));
  EXPECT_EQ(file.tensor("empty").numel(), 0);
  EXPECT_EQ(file.tensor("scalar").data<float>()[0], 3.0f);
}

struct BadFileCase {
  const char* name;
  std::string header;
  std::string data;
  std::uint64_t header_len_override;
  const char* expected_message;
};

class SafetensorsBadFile : public ::testing::TestWithParam<BadFileCase> {};

TEST_P(SafetensorsBadFile, IsRefusedWithAClearMessage) {
  TempDir dir;
  const BadFileCase& c = GetParam();
  const std::string path = dir.file("bad.safetensors");
  write_raw(path, c.header, c.data, c.header_len_override);
  const std::string message = error_of([&] { SafetensorsFile::open(path); });
  EXPECT_NE(message.find(c.expected_message), std::string::npos) << message;
  EXPECT_NE(message.find(path), std::string::npos) << "message must name the file: " << message;
}

const std::string kEightBytes(8, '\0');

INSTANTIATE_TEST_SUITE_P(
    Corrupt, SafetensorsBadFile,
    ::testing::Values(
        BadFileCase{"header_too_long", R"({})", "", 1000, "larger than the file"},
        BadFileCase{"malformed_json", R"({"a": {"dtype": "F32", )", "", 0, "malformed JSON"},
        BadFileCase{"not_object", R"([1, 2])", "", 0, "not an object"},
        BadFileCase{"unknown_dtype", R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})",
                    kEightBytes, 0, "dtype F64 is not supported"},
        BadFileCase{"size_mismatch", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                    kEightBytes, 0, "needs 12 bytes"},
        BadFileCase{"out_of_bounds", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                    kEightBytes, 0, "run past the end"},
        BadFileCase{
            "overlap",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
            kEightBytes, 0, "overlap"},
        BadFileCase{"reversed_offsets", R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}})",
                    kEightBytes, 0, "end before begin"},
        BadFileCase{"negative_dim", R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})", "",
                    0, "not a non-negative integer"},
        BadFileCase{"missing_dtype", R"({"a":{"shape":[1],"data_offsets":[0,1]}})", "x", 0,
                    "missing or non-string \"dtype\""},
        BadFileCase{"bad_metadata", R"({"__metadata__":{"k":1}})", "", 0, "is not a string"}),
    [](const ::testing::TestParamInfo<BadFileCase>& param_info) { return param_info.param.name; });

TEST(Safetensors, TruncatedFiles) {
  TempDir dir;
  test::write_text(dir.file("tiny"), "abc");
  EXPECT_NE(error_of([&] { SafetensorsFile::open(dir.file("tiny")); }).find("truncated"),
            std::string::npos);
  // A valid file cut short inside its data.
  write_safetensors(dir.file("full"), {{"a", test::random_f32({16}, 2)}});
  std::string bytes = test::read_text(dir.file("full"));
  test::write_text(dir.file("cut"), bytes.substr(0, bytes.size() - 10));
  EXPECT_NE(error_of([&] { SafetensorsFile::open(dir.file("cut")); }).find("run past the end"),
            std::string::npos);
  EXPECT_NE(error_of([&] { SafetensorsFile::open(dir.file("absent")); }).find("cannot open"),
            std::string::npos);
}

TEST(Checkpoint, ShardedThroughIndex) {
  TempDir dir;
  write_safetensors(dir.file("model-00001-of-00002.safetensors"),
                    {{"x", test::random_f32({2}, 3)}});
  write_safetensors(dir.file("model-00002-of-00002.safetensors"),
                    {{"y", test::random_f32({3}, 4)}});
  test::write_text(dir.path() / "model.safetensors.index.json",
                   R"({"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors",
                                                      "y": "model-00002-of-00002.safetensors"}})");
  const Checkpoint checkpoint = Checkpoint::open_folder(dir.path());
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(checkpoint.tensor("y").numel(), 3);
  EXPECT_NE(checkpoint.description().find("2 shards"), std::string::npos);
}

TEST(Checkpoint, IndexErrors) {
  TempDir dir;
  write_safetensors(dir.file("a.safetensors"), {{"x", test::random_f32({2}, 3)}});
  test::write_text(dir.path() / "model.safetensors.index.json",
                   R"({"weight_map": {"x": "a.safetensors", "y": "a.safetensors"}})");
  EXPECT_NE(error_of([&] { Checkpoint::open_folder(dir.path()); }).find("does not contain it"),
            std::string::npos);
  test::write_text(dir.path() / "model.safetensors.index.json",
                   R"({"weight_map": {"x": "missing.safetensors"}})");
  EXPECT_NE(error_of([&] { Checkpoint::open_folder(dir.path()); }).find("does not exist"),
            std::string::npos);
  test::write_text(dir.path() / "model.safetensors.index.json", R"({"weight_map": )");
  EXPECT_NE(error_of([&] { Checkpoint::open_folder(dir.path()); }).find("malformed JSON"),
            std::string::npos);
}

TEST(Checkpoint, PickleOnlyFolderExplainsConversion) {
  TempDir dir;
  test::write_text(dir.path() / "pytorch_model.bin", "not really a pickle");
  const std::string message = error_of([&] { Checkpoint::open_folder(dir.path()); });
  EXPECT_NE(message.find("pytorch_model.bin"), std::string::npos) << message;
  EXPECT_NE(message.find("save_pretrained"), std::string::npos) << message;
  TempDir empty;
  EXPECT_NE(error_of([&] { Checkpoint::open_folder(empty.path()); }).find("no model.safetensors"),
            std::string::npos);
}

}  // namespace
}  // namespace eaq
