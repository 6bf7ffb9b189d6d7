#include "io/npy.hpp"

#include <fmt/format.h>

#include <cstring>
#include <regex>

#include "core/error.hpp"
#include "io/mapped_file.hpp"

namespace eaq {
namespace {

constexpr char kMagic[] = "\x93NUMPY";

bool descr_to_dtype(const std::string& descr, DType* out) {
  // '|' (not applicable) and '<' (little endian) are accepted; '=' means native, which is little
  // endian on every machine eaq runs on.
  if (descr.size() < 3) return false;
  const char order = descr[0];
  if (order != '<' && order != '|' && order != '=') return false;
  const std::string kind = descr.substr(1);
  if (kind == "f4")
    *out = DType::F32;
  else if (kind == "f2")
    *out = DType::F16;
  else if (kind == "i8")
    *out = DType::I64;
  else if (kind == "i4")
    *out = DType::I32;
  else if (kind == "i1")
    *out = DType::I8;
  else if (kind == "u1")
    *out = DType::U8;
  else if (kind == "b1")
    *out = DType::Bool;
  else
    return false;
  return true;
}

const char* dtype_to_descr(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "<f4";
    case DType::F16:
      return "<f2";
    case DType::I64:
      return "<i8";
    case DType::I32:
      return "<i4";
    case DType::I8:
      return "|i1";
    case DType::U8:
      return "|u1";
    case DType::Bool:
      return "|b1";
    default:
      return nullptr;
  }
}

}  // namespace

HostTensor read_npy(const std::string& path) {
  auto mapping = MappedFile::open(path);
  const unsigned char* p = mapping->data();
  const std::size_t size = mapping->size();
  EAQ_CHECK(size >= 10 && std::memcmp(p, kMagic, 6) == 0,
            "{}: not a .npy file (missing the \\x93NUMPY magic)", path);
  const int major = p[6];
  std::size_t header_len = 0;
  std::size_t header_start = 0;
  if (major == 1) {
    header_len = p[8] | (static_cast<std::size_t>(p[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    EAQ_CHECK(size >= 12, "{}: truncated .npy header", path);
    header_len = p[8] | (static_cast<std::size_t>(p[9]) << 8) |
                 (static_cast<std::size_t>(p[10]) << 16) | (static_cast<std::size_t>(p[11]) << 24);
    header_start = 12;
  } else {
    fail("{}: unsupported .npy format version {}.{}", path, major, static_cast<int>(p[7]));
  }
  EAQ_CHECK(header_start + header_len <= size, "{}: truncated .npy header", path);
  const std::string header(reinterpret_cast<const char*>(p + header_start), header_len);

  std::smatch match;
  static const std::regex descr_re(R"('descr'\s*:\s*'([^']*)')");
  static const std::regex fortran_re(R"('fortran_order'\s*:\s*(True|False))");
  static const std::regex shape_re(R"('shape'\s*:\s*\(([^)]*)\))");
  EAQ_CHECK(std::regex_search(header, match, descr_re), "{}: .npy header has no 'descr'", path);
  const std::string descr = match[1];
  DType dtype;
  EAQ_CHECK(descr_to_dtype(descr, &dtype),
            "{}: .npy dtype '{}' is not supported (little-endian bool, int8/16/32/64, uint8, "
            "float16/32 are)",
            path, descr);
  EAQ_CHECK(std::regex_search(header, match, fortran_re), "{}: .npy header has no 'fortran_order'",
            path);
  EAQ_CHECK(match[1] == "False",
            "{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray", path);
  EAQ_CHECK(std::regex_search(header, match, shape_re), "{}: .npy header has no 'shape'", path);
  Shape shape;
  const std::string dims = match[1];
  static const std::regex dim_re(R"(\d+)");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), dim_re);
       it != std::sregex_iterator(); ++it) {
    shape.push_back(std::stoll(it->str()));
  }

  const std::size_t data_start = header_start + header_len;
  const std::size_t expected = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  EAQ_CHECK(size - data_start == expected, "{}: .npy data is {} bytes but shape {} of {} needs {}",
            path, size - data_start, shape_str(shape), descr, expected);
  HostTensor tensor = HostTensor::empty(dtype, shape);
  if (expected > 0) std::memcpy(tensor.mutable_raw(), p + data_start, expected);
  return tensor;
}

void write_npy(const std::string& path, const HostTensor& tensor) {
  const char* descr = dtype_to_descr(tensor.dtype());
  EAQ_CHECK(descr != nullptr, "{}: cannot write dtype {} to .npy", path,
            dtype_name(tensor.dtype()));
  // Python tuple syntax: "(2, 3)", "(5,)", "()".
  std::string shape_text = fmt::format("{}", fmt::join(tensor.shape(), ", "));
  if (tensor.rank() == 1) shape_text += ",";
  std::string header =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr, shape_text);
  // Pad with spaces and end with a newline so the data starts 64-byte aligned (format 1.0).
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string bytes(kMagic, 6);
  bytes.push_back('\x01');
  bytes.push_back('\x00');
  bytes.push_back(static_cast<char>(header.size() & 0xff));
  bytes.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  bytes += header;
  bytes.append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
  write_file_atomically(path, bytes);
}

}  // namespace eaq
