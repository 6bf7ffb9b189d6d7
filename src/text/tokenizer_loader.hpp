// Loading tokenizers from files, as Hugging Face lays them out:
//   tokenizer.json                          the fast-tokenizer file (WordPiece or BPE models)
//   vocab.txt [+ tokenizer_config.json]     BERT's WordPiece
//   vocab.json + merges.txt                 GPT-2's byte-level BPE
// tokenizer_config.json (and special_tokens_map.json) beside them give the settings Hugging Face
// reads: do_lower_case, strip_accents, tokenize_chinese_chars, model_max_length, the special
// tokens; Hugging Face's defaults apply to what they leave out.
#pragma once

#include <filesystem>

#include "text/tokenizer.hpp"

namespace eaq::text {

// The tokenizer in a folder (or a tokenizer.json file): tokenizer.json first, else the classic
// files. config.json's model_type, when present, must agree with the classic files found
// (gpt2 -> vocab.json + merges.txt; bert, distilbert -> vocab.txt); other model types need a
// tokenizer.json. Throws eaq::Error naming the folder and what is missing or wrong.
Tokenizer load_tokenizer(const std::filesystem::path& folder_or_file);

// The loaders behind it. `folder` is where tokenizer_config.json / special_tokens_map.json are
// looked for; the tokenizer's name is the folder's name.
Tokenizer load_tokenizer_json(const std::filesystem::path& tokenizer_json,
                              const std::filesystem::path& folder);
Tokenizer load_wordpiece_vocab(const std::filesystem::path& vocab_txt,
                               const std::filesystem::path& folder);
Tokenizer load_gpt2_bpe(const std::filesystem::path& vocab_json,
                        const std::filesystem::path& merges_txt,
                        const std::filesystem::path& folder);

}  // namespace eaq::text
