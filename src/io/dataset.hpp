// Pre-tokenized datasets: a folder with dataset.safetensors holding
//   input_ids       [N, L] I32   token ids, right-padded
//   attention_mask  [N, L] I32   1 for tokens, 0 for padding
//   token_type_ids  [N, L] I32   when the tokenizer has them (BERT family)
//   labels          [N]    I64   when the examples are labelled
// and a "__metadata__" string map saying where it came from (see text/tokenize_dataset.hpp for
// the keys eaq writes). Readable from Python with the `safetensors` package.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "core/tensor.hpp"
#include "io/safetensors.hpp"

namespace eaq {

inline constexpr const char* kDatasetFileName = "dataset.safetensors";

struct DatasetTensors {
  HostTensor input_ids;
  HostTensor attention_mask;
  std::optional<HostTensor> token_type_ids;
  std::optional<HostTensor> labels;
  std::map<std::string, std::string> metadata;
};

// Checks shapes, dtypes and values (mask 0/1, ids >= 0, labels >= 0); `where` names the file.
void validate_dataset(const DatasetTensors& dataset, const std::string& where);

// Validates, then writes folder/dataset.safetensors atomically (the folder is created).
// Returns the file's path.
std::filesystem::path write_dataset(const std::filesystem::path& folder,
                                    const DatasetTensors& dataset);

class Dataset {
 public:
  // Opens folder/dataset.safetensors (or a .safetensors file given directly), validates it, and,
  // with a model's vocabulary size, refuses ids outside [0, vocab_size) naming the file, the
  // id, the example and the position.
  static Dataset load(const std::filesystem::path& folder_or_file,
                      std::optional<std::int64_t> model_vocab_size);

  const std::string& path() const { return file_.path(); }
  std::int64_t size() const { return tensors_.input_ids.dim(0); }             // N
  std::int64_t sequence_length() const { return tensors_.input_ids.dim(1); }  // L
  const HostTensor& input_ids() const { return tensors_.input_ids; }
  const HostTensor& attention_mask() const { return tensors_.attention_mask; }
  const HostTensor* token_type_ids() const {
    return tensors_.token_type_ids ? &*tensors_.token_type_ids : nullptr;
  }
  const HostTensor* labels() const { return tensors_.labels ? &*tensors_.labels : nullptr; }
  const std::map<std::string, std::string>& metadata() const { return tensors_.metadata; }
  std::int32_t max_token_id() const { return max_token_id_; }

 private:
  Dataset(SafetensorsFile file, DatasetTensors tensors, std::int32_t max_token_id)
      : file_(std::move(file)), tensors_(std::move(tensors)), max_token_id_(max_token_id) {}

  SafetensorsFile file_;  // keeps the mapped bytes the tensors view
  DatasetTensors tensors_;
  std::int32_t max_token_id_;
};

}  // namespace eaq
