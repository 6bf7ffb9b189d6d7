#include "io/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/error.hpp"
#include "io/mapped_file.hpp"

namespace eaq {
namespace {

using json = nlohmann::json;

// A header larger than this is not a real checkpoint (the format's own limit is 100 MB).
constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin;
  std::uint64_t end;
};

Entry parse_entry(const std::string& path, const std::string& name, const json& value,
                  std::uint64_t data_size) {
  EAQ_CHECK(value.is_object(), "{}: tensor '{}': header entry is not a JSON object", path, name);
  Entry entry{name, DType::F32, {}, 0, 0};

  const auto dtype_it = value.find("dtype");
  EAQ_CHECK(dtype_it != value.end() && dtype_it->is_string(),
            "{}: tensor '{}': missing or non-string \"dtype\"", path, name);
  const std::string dtype_text = dtype_it->get<std::string>();
  EAQ_CHECK(parse_dtype(dtype_text, &entry.dtype),
            "{}: tensor '{}': dtype {} is not supported (eaq reads F32 F16 BF16 F8_E4M3 I8 U8 "
            "I32 I64 BOOL)",
            path, name, dtype_text);

  const auto shape_it = value.find("shape");
  EAQ_CHECK(shape_it != value.end() && shape_it->is_array(),
            "{}: tensor '{}': missing or non-array \"shape\"", path, name);
  std::uint64_t numel = 1;
  for (const json& d : *shape_it) {
    EAQ_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<std::int64_t>() >= 0),
              "{}: tensor '{}': shape {} has a dimension that is not a non-negative integer", path,
              name, shape_it->dump());
    const auto dim = d.get<std::uint64_t>();
    EAQ_CHECK(dim == 0 || numel <= std::numeric_limits<std::uint64_t>::max() / dim,
              "{}: tensor '{}': shape {} overflows", path, name, shape_it->dump());
    numel *= dim;
    entry.shape.push_back(static_cast<std::int64_t>(dim));
  }

  const auto offsets_it = value.find("data_offsets");
  EAQ_CHECK(offsets_it != value.end() && offsets_it->is_array() && offsets_it->size() == 2 &&
                (*offsets_it)[0].is_number_unsigned() && (*offsets_it)[1].is_number_unsigned(),
            "{}: tensor '{}': \"data_offsets\" must be [begin, end] with non-negative integers",
            path, name);
  entry.begin = (*offsets_it)[0].get<std::uint64_t>();
  entry.end = (*offsets_it)[1].get<std::uint64_t>();
  EAQ_CHECK(entry.begin <= entry.end, "{}: tensor '{}': data_offsets [{}, {}] end before begin",
            path, name, entry.begin, entry.end);
  EAQ_CHECK(entry.end <= data_size,
            "{}: tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes); the "
            "file is truncated or corrupt",
            path, name, entry.begin, entry.end, data_size);
  const std::uint64_t expected = numel * dtype_size(entry.dtype);
  EAQ_CHECK(entry.end - entry.begin == expected,
            "{}: tensor '{}': {} {} needs {} bytes but data_offsets [{}, {}] give {}", path, name,
            dtype_text, shape_it->dump(), expected, entry.begin, entry.end,
            entry.end - entry.begin);
  return entry;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto mapping = MappedFile::open(path);
  SafetensorsFile file;
  file.path_ = path;
  file.file_size_ = mapping->size();

  EAQ_CHECK(mapping->size() >= 8,
            "{}: truncated: {} bytes, too short for the 8-byte header length of a safetensors "
            "file",
            path, mapping->size());
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | mapping->data()[i];  // little endian
  EAQ_CHECK(header_len <= mapping->size() - 8,
            "{}: header length {} is larger than the file ({} bytes): truncated or not a "
            "safetensors file",
            path, header_len, mapping->size());
  EAQ_CHECK(header_len <= kMaxHeaderBytes, "{}: header length {} exceeds the 100 MB limit", path,
            header_len);
  EAQ_CHECK(header_len >= 2, "{}: header length {} is too small for a JSON object", path,
            header_len);

  const char* header_begin = reinterpret_cast<const char*>(mapping->data() + 8);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_len);
  } catch (const json::parse_error& e) {
    fail("{}: malformed JSON header: {}", path, e.what());
  }
  EAQ_CHECK(header.is_object(), "{}: the JSON header is not an object", path);

  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t data_size = mapping->size() - data_start;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      EAQ_CHECK(value.is_object(), "{}: \"__metadata__\" is not a JSON object", path);
      for (const auto& [meta_key, meta_value] : value.items()) {
        EAQ_CHECK(meta_value.is_string(), "{}: __metadata__ entry '{}' is not a string", path,
                  meta_key);
        file.metadata_[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, key, value, data_size));
  }

  // Non-empty tensors must not share bytes.
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) {
    if (e.end > e.begin) by_offset.push_back(&e);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    EAQ_CHECK(by_offset[i]->begin >= by_offset[i - 1]->end,
              "{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", path, by_offset[i - 1]->name,
              by_offset[i - 1]->begin, by_offset[i - 1]->end, by_offset[i]->name,
              by_offset[i]->begin, by_offset[i]->end);
  }

  std::shared_ptr<const void> owner(mapping, mapping.get());
  for (const Entry& e : entries) {
    const unsigned char* bytes = mapping->data() + data_start + e.begin;
    const std::size_t align = dtype_size(e.dtype);
    if (reinterpret_cast<std::uintptr_t>(bytes) % align == 0) {
      file.tensors_.emplace(e.name, HostTensor(e.dtype, e.shape, bytes, owner));
    } else {
      // The format does not promise alignment: copy such tensors into aligned memory.
      HostTensor copy = HostTensor::empty(e.dtype, e.shape);
      std::memcpy(copy.mutable_raw(), bytes, e.end - e.begin);
      file.tensors_.emplace(e.name, std::move(copy));
    }
  }
  return file;
}

const HostTensor& SafetensorsFile::tensor(const std::string& name) const {
  const auto it = tensors_.find(name);
  EAQ_CHECK(it != tensors_.end(), "{}: no tensor named '{}'", path_, name);
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, tensor] : tensors_) out.push_back(name);
  return out;
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, HostTensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    EAQ_CHECK(name != "__metadata__", "{}: '__metadata__' is not a valid tensor name", path);
    EAQ_CHECK(!header.contains(name), "{}: tensor name '{}' given twice", path, name);
    header[name] = {{"dtype", std::string(dtype_name(tensor.dtype()))},
                    {"shape", tensor.shape()},
                    {"data_offsets", {offset, offset + tensor.nbytes()}}};
    offset += tensor.nbytes();
  }
  std::string header_text = header.dump();
  // Pad with spaces so the data starts 8-byte aligned, as the reference implementation does.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string bytes;
  bytes.reserve(8 + header_text.size() + offset);
  const std::uint64_t header_len = header_text.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((header_len >> (8 * i)) & 0xff));
  bytes += header_text;
  for (const auto& [name, tensor] : tensors) {
    bytes.append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
  }
  write_file_atomically(path, bytes);
}

}  // namespace eaq
