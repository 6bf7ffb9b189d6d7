#include "io/dataset.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace eaq {

namespace fs = std::filesystem;

namespace {

void check_matrix(const HostTensor& tensor, const char* name, const Shape& shape,
                  const std::string& where) {
  EAQ_CHECK(tensor.dtype() == DType::I32, "{}: {} must be I32, not {}", where, name,
            dtype_name(tensor.dtype()));
  EAQ_CHECK(tensor.shape() == shape, "{}: {} has shape {}, expected {} like input_ids", where, name,
            shape_str(tensor.shape()), shape_str(shape));
}

}  // namespace

void validate_dataset(const DatasetTensors& dataset, const std::string& where) {
  const HostTensor& ids = dataset.input_ids;
  EAQ_CHECK(ids.dtype() == DType::I32, "{}: input_ids must be I32, not {}", where,
            dtype_name(ids.dtype()));
  EAQ_CHECK(ids.rank() == 2 && ids.dim(0) > 0 && ids.dim(1) > 0,
            "{}: input_ids must be [examples, length] with both > 0, not {}", where,
            shape_str(ids.shape()));
  const std::int64_t n = ids.dim(0);
  for (std::int64_t i = 0; i < ids.numel(); ++i) {
    if (ids.data<std::int32_t>()[i] < 0) {
      fail("{}: input_ids has a negative id {} (example {}, position {})", where,
           ids.data<std::int32_t>()[i], i / ids.dim(1), i % ids.dim(1));
    }
  }
  check_matrix(dataset.attention_mask, "attention_mask", ids.shape(), where);
  const std::int32_t* mask = dataset.attention_mask.data<std::int32_t>();
  for (std::int64_t i = 0; i < dataset.attention_mask.numel(); ++i) {
    EAQ_CHECK(mask[i] == 0 || mask[i] == 1,
              "{}: attention_mask holds {} (example {}, position {}); only 0 and 1 are allowed",
              where, mask[i], i / ids.dim(1), i % ids.dim(1));
  }
  if (dataset.token_type_ids)
    check_matrix(*dataset.token_type_ids, "token_type_ids", ids.shape(), where);
  if (dataset.labels) {
    const HostTensor& labels = *dataset.labels;
    EAQ_CHECK(labels.dtype() == DType::I64, "{}: labels must be I64, not {}", where,
              dtype_name(labels.dtype()));
    EAQ_CHECK(labels.shape() == Shape{n}, "{}: labels has shape {}, expected [{}]", where,
              shape_str(labels.shape()), n);
    for (std::int64_t i = 0; i < n; ++i) {
      EAQ_CHECK(labels.data<std::int64_t>()[i] >= 0, "{}: label {} of example {} is negative",
                where, labels.data<std::int64_t>()[i], i);
    }
  }
}

fs::path write_dataset(const fs::path& folder, const DatasetTensors& dataset) {
  const fs::path path = folder / kDatasetFileName;
  validate_dataset(dataset, path.string());
  std::error_code error;
  fs::create_directories(folder, error);
  EAQ_CHECK(!error && fs::is_directory(folder), "cannot create the dataset folder {}: {}",
            folder.string(), error.message());
  std::vector<std::pair<std::string, HostTensor>> tensors = {
      {"input_ids", dataset.input_ids}, {"attention_mask", dataset.attention_mask}};
  if (dataset.token_type_ids) tensors.emplace_back("token_type_ids", *dataset.token_type_ids);
  if (dataset.labels) tensors.emplace_back("labels", *dataset.labels);
  write_safetensors(path.string(), tensors, dataset.metadata);
  return path;
}

Dataset Dataset::load(const fs::path& folder_or_file,
                      std::optional<std::int64_t> model_vocab_size) {
  const fs::path path =
      fs::is_directory(folder_or_file) ? folder_or_file / kDatasetFileName : folder_or_file;
  EAQ_CHECK(fs::is_regular_file(path), "dataset {} not found{}", path.string(),
            fs::is_directory(folder_or_file) ? " (make one with `eaq tokenize`)" : "");
  SafetensorsFile file = SafetensorsFile::open(path.string());
  const std::string where = path.string();
  for (const std::string& name : file.names()) {
    EAQ_CHECK(name == "input_ids" || name == "attention_mask" || name == "token_type_ids" ||
                  name == "labels",
              "{}: unexpected tensor '{}' (a dataset holds input_ids, attention_mask, "
              "token_type_ids and labels)",
              where, name);
  }
  EAQ_CHECK(file.contains("input_ids") && file.contains("attention_mask"),
            "{}: a dataset needs input_ids and attention_mask (it has: {})", where,
            fmt::join(file.names(), ", "));
  DatasetTensors tensors;
  tensors.input_ids = file.tensor("input_ids");
  tensors.attention_mask = file.tensor("attention_mask");
  if (file.contains("token_type_ids")) tensors.token_type_ids = file.tensor("token_type_ids");
  if (file.contains("labels")) tensors.labels = file.tensor("labels");
  tensors.metadata = file.metadata();
  validate_dataset(tensors, where);

  const HostTensor& ids = tensors.input_ids;
  const std::int32_t* begin = ids.data<std::int32_t>();
  const std::int32_t* largest = std::max_element(begin, begin + ids.numel());
  if (model_vocab_size) {
    EAQ_CHECK(*model_vocab_size > 0, "model vocabulary size must be positive");
    if (*largest >= *model_vocab_size) {
      const std::int64_t index = largest - begin;
      const auto tokenizer = tensors.metadata.find("tokenizer");
      fail(
          "{}: token id {} (example {}, position {}) does not fit the model's vocabulary of {} "
          "tokens: the dataset was made with another tokenizer{}",
          where, *largest, index / ids.dim(1), index % ids.dim(1), *model_vocab_size,
          tokenizer == tensors.metadata.end() ? std::string() : " ('" + tokenizer->second + "')");
    }
  }
  return Dataset(std::move(file), std::move(tensors), *largest);
}

}  // namespace eaq
