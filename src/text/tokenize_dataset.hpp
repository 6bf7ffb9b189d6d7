// Text examples -> a pre-tokenized dataset (io/dataset.hpp): every example encoded with special
// tokens, cut to max_length (counted, never silent) and right-padded. The metadata records:
//   format ("eaq.dataset/1"), created_by (eaq version and commit),
//   source_file, source_sha256, source_format, text_column, label_column, source_examples,
//   selection, num_examples,
//   tokenizer, tokenizer_kind, tokenizer_files, vocab_size,
//   max_length, padding, pad_token, pad_id, truncation, truncated_examples,
//   longest_example_tokens, label_names (JSON array, when named), label_counts (JSON object).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/dataset.hpp"
#include "io/text_examples.hpp"
#include "text/tokenizer.hpp"

namespace eaq::text {

struct DatasetSource {
  std::string path;          // the input file, as given
  std::string sha256;        // of the whole input file
  std::string format;        // "tsv", "csv", "jsonl", "text"
  std::string text_column;   // "" for plain text
  std::string label_column;  // "" when unlabelled
  std::size_t examples_in_file = 0;
  std::string selection;  // how the examples were chosen (io/example_selection.hpp)
};

struct TokenizedDataset {
  DatasetTensors tensors;
  std::size_t truncated = 0;  // examples longer than max_length
  std::size_t longest = 0;    // tokens of the longest example before truncation
  std::map<std::int64_t, std::size_t> label_counts;
};

// Padding uses the tokenizer's padding token, or <|endoftext|> for GPT-2 style tokenizers that
// have none (masked out either way). `label_names`, when given, must name every label.
// Errors name the source file and line of the example at fault.
TokenizedDataset tokenize_dataset(const Tokenizer& tokenizer,
                                  const std::vector<TextExample>& examples,
                                  const DatasetSource& source, std::size_t max_length,
                                  const std::vector<std::string>& label_names);

}  // namespace eaq::text
