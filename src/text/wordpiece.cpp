#include "text/wordpiece.hpp"

#include "core/error.hpp"

namespace eaq::text {

WordPieceModel::WordPieceModel(Vocab vocab, std::string unk_token,
                               std::string continuing_subword_prefix,
                               std::size_t max_input_chars_per_word)
    : vocab_(std::move(vocab)),
      unk_token_(std::move(unk_token)),
      unk_id_(-1),
      prefix_(std::move(continuing_subword_prefix)),
      max_chars_(max_input_chars_per_word) {
  const auto unk = vocab_.find(unk_token_);
  EAQ_CHECK(unk.has_value(), "WordPiece: the unknown token '{}' is not in the vocabulary",
            unk_token_);
  unk_id_ = *unk;
}

void WordPieceModel::tokenize(std::string_view utf8, std::vector<std::int32_t>& ids) const {
  if (utf8.empty()) return;
  // Byte offsets of each character boundary: candidates are whole characters.
  std::vector<std::size_t> boundaries;
  boundaries.reserve(utf8.size() + 1);
  for (std::size_t i = 0; i < utf8.size(); ++i) {
    if ((static_cast<unsigned char>(utf8[i]) & 0xC0) != 0x80) boundaries.push_back(i);
  }
  if (boundaries.size() > max_chars_) {  // counted in characters, as Hugging Face does
    ids.push_back(unk_id_);
    return;
  }
  boundaries.push_back(utf8.size());

  const std::size_t first_new = ids.size();
  std::string candidate;
  std::size_t start = 0;  // index into boundaries
  const std::size_t last = boundaries.size() - 1;
  while (start < last) {
    std::size_t end = last;
    std::int32_t found = -1;
    while (end > start) {
      candidate.clear();
      if (start > 0) candidate += prefix_;
      candidate.append(utf8, boundaries[start], boundaries[end] - boundaries[start]);
      if (const auto id = vocab_.find(candidate)) {
        found = *id;
        break;
      }
      --end;
    }
    if (found < 0) {
      ids.resize(first_new);
      ids.push_back(unk_id_);
      return;
    }
    ids.push_back(found);
    start = end;
  }
}

}  // namespace eaq::text
