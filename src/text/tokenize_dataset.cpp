#include "text/tokenize_dataset.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/build_info.hpp"
#include "core/error.hpp"

namespace eaq::text {

namespace {

// The padding token and id: the tokenizer's own, or <|endoftext|> when it has none.
std::pair<std::string, std::int32_t> padding_for(const Tokenizer& tokenizer) {
  if (tokenizer.pad_token() && tokenizer.pad_token_id()) {
    return {*tokenizer.pad_token(), *tokenizer.pad_token_id()};
  }
  const std::string end_of_text = "<|endoftext|>";
  if (const auto id = tokenizer.token_to_id(end_of_text)) return {end_of_text, *id};
  fail(
      "tokenizer {} has no padding token (and no <|endoftext|> to pad with); name one with "
      "pad_token in its tokenizer_config.json",
      tokenizer.name());
}

}  // namespace

TokenizedDataset tokenize_dataset(const Tokenizer& tokenizer,
                                  const std::vector<TextExample>& examples,
                                  const DatasetSource& source, std::size_t max_length,
                                  const std::vector<std::string>& label_names) {
  EAQ_CHECK(!examples.empty(), "{}: no examples to tokenize", source.path);
  EAQ_CHECK(max_length > tokenizer.special_tokens_added(false),
            "--max-length {} leaves no room for text next to the {} special tokens of {}",
            max_length, tokenizer.special_tokens_added(false), tokenizer.name());
  if (const auto limit = tokenizer.model_max_length()) {
    EAQ_CHECK(max_length <= *limit,
              "--max-length {} is more than {} accepts (model_max_length {} in its "
              "tokenizer_config.json)",
              max_length, tokenizer.name(), *limit);
  }
  const auto [pad_token, pad_id] = padding_for(tokenizer);
  const bool labelled = !source.label_column.empty();

  const auto n = static_cast<std::int64_t>(examples.size());
  const auto length = static_cast<std::int64_t>(max_length);
  TokenizedDataset result;
  DatasetTensors& tensors = result.tensors;
  tensors.input_ids = HostTensor::empty(DType::I32, {n, length});
  tensors.attention_mask = HostTensor::empty(DType::I32, {n, length});
  if (tokenizer.has_token_type_ids())
    tensors.token_type_ids = HostTensor::empty(DType::I32, {n, length});
  if (labelled) tensors.labels = HostTensor::empty(DType::I64, {n});

  EncodeOptions options;
  options.max_length = max_length;
  options.pad_to_max_length = true;
  options.pad_id = pad_id;
  for (std::int64_t row = 0; row < n; ++row) {
    const TextExample& example = examples[static_cast<std::size_t>(row)];
    Encoding encoding;
    try {
      encoding = tokenizer.encode(example.text, options);
    } catch (const Error& e) {
      fail("{}:{}: {}", source.path, example.line, e.what());
    }
    EAQ_ASSERT(encoding.ids.size() == max_length);
    std::copy(encoding.ids.begin(), encoding.ids.end(),
              tensors.input_ids.mutable_data<std::int32_t>() + row * length);
    std::copy(encoding.attention_mask.begin(), encoding.attention_mask.end(),
              tensors.attention_mask.mutable_data<std::int32_t>() + row * length);
    if (tensors.token_type_ids) {
      std::copy(encoding.type_ids.begin(), encoding.type_ids.end(),
                tensors.token_type_ids->mutable_data<std::int32_t>() + row * length);
    }
    if (encoding.truncated) ++result.truncated;
    result.longest = std::max(result.longest, encoding.untruncated_length);
    if (labelled) {
      EAQ_CHECK(example.label.has_value(), "{}:{}: the example has no label", source.path,
                example.line);
      const std::int64_t label = *example.label;
      EAQ_CHECK(label_names.empty() || static_cast<std::size_t>(label) < label_names.size(),
                "{}:{}: label {} has no name (--label-names names {} labels)", source.path,
                example.line, label, label_names.size());
      tensors.labels->mutable_data<std::int64_t>()[row] = label;
      ++result.label_counts[label];
    }
  }

  std::map<std::string, std::string>& meta = tensors.metadata;
  meta["format"] = "eaq.dataset/1";
  meta["created_by"] = fmt::format("eaq {} ({})", build_info().version, build_info().git_commit);
  meta["source_file"] = source.path;
  meta["source_sha256"] = source.sha256;
  meta["source_format"] = source.format;
  if (!source.text_column.empty()) meta["text_column"] = source.text_column;
  if (labelled) meta["label_column"] = source.label_column;
  meta["source_examples"] = std::to_string(source.examples_in_file);
  meta["selection"] = source.selection;
  meta["num_examples"] = std::to_string(n);
  meta["tokenizer"] = tokenizer.name();
  meta["tokenizer_kind"] = std::string(tokenizer.model_kind());
  meta["tokenizer_files"] = tokenizer.source();
  meta["vocab_size"] = std::to_string(tokenizer.vocab_size());
  meta["special_tokens"] = "added";
  meta["max_length"] = std::to_string(max_length);
  meta["padding"] = "right, to max_length";
  meta["pad_token"] = pad_token;
  meta["pad_id"] = std::to_string(pad_id);
  meta["truncation"] = "right, at max_length";
  meta["truncated_examples"] = std::to_string(result.truncated);
  meta["longest_example_tokens"] = std::to_string(result.longest);
  if (labelled) {
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& [label, count] : result.label_counts) counts[std::to_string(label)] = count;
    meta["label_counts"] = counts.dump();
    if (!label_names.empty()) meta["label_names"] = nlohmann::json(label_names).dump();
  }
  validate_dataset(tensors, source.path);
  return result;
}

}  // namespace eaq::text
