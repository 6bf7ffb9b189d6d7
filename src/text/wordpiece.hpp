// WordPiece (BERT): greedy longest-match-first over a word, continuations prefixed with "##";
// a word with a piece not in the vocabulary, or longer than max_input_chars_per_word characters,
// becomes the unknown token.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "text/vocab.hpp"

namespace eaq::text {

class WordPieceModel {
 public:
  WordPieceModel(Vocab vocab, std::string unk_token, std::string continuing_subword_prefix = "##",
                 std::size_t max_input_chars_per_word = 100);

  // Appends the ids of one pre-tokenized word (valid UTF-8).
  void tokenize(std::string_view word, std::vector<std::int32_t>& ids) const;

  const Vocab& vocab() const { return vocab_; }
  const std::string& unk_token() const { return unk_token_; }
  const std::string& continuing_subword_prefix() const { return prefix_; }
  std::size_t max_input_chars_per_word() const { return max_chars_; }

 private:
  Vocab vocab_;
  std::string unk_token_;
  std::int32_t unk_id_;
  std::string prefix_;
  std::size_t max_chars_;
};

}  // namespace eaq::text
