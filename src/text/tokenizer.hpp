// A text tokenizer as Hugging Face's fast tokenizers build one: added tokens are split out, the
// rest is normalized, pre-tokenized into words and tokenized by the model (WordPiece or BPE); then
// truncation, special tokens (the post-processor) and padding. Loaders: text/tokenizer_loader.hpp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "text/added_tokens.hpp"
#include "text/bert_normalizer.hpp"
#include "text/bpe.hpp"
#include "text/post_processor.hpp"
#include "text/wordpiece.hpp"

namespace eaq::text {

enum class PreTokenizerKind {
  None,       // the whole normalized text is one word
  Bert,       // whitespace and punctuation (BertPreTokenizer)
  ByteLevel,  // GPT-2's pattern, then bytes mapped to printable characters
};

struct ByteLevelOptions {
  bool add_prefix_space = false;
  bool use_regex = true;
};

// Everything a tokenizer is made of. Exactly one of wordpiece and bpe is set.
struct TokenizerParts {
  std::string name;    // e.g. "bert-base-uncased" (the folder name)
  std::string source;  // the file(s) it was loaded from, for messages and metadata
  std::optional<BertNormalizer> normalizer;
  PreTokenizerKind pre_tokenizer = PreTokenizerKind::None;
  ByteLevelOptions byte_level;
  std::shared_ptr<const WordPieceModel> wordpiece;
  std::shared_ptr<const BpeModel> bpe;
  std::vector<AddedToken> added_tokens;
  PostProcessor post_processor;
  std::optional<std::string> pad_token;  // must be in the vocabulary or an added token
  std::optional<std::size_t> model_max_length;
};

struct EncodeOptions {
  bool add_special_tokens = true;
  // 0: no truncation. Otherwise the encoding (special tokens included) is cut to max_length
  // tokens: from the end of the text; for pairs, longest first (Hugging Face's default).
  std::size_t max_length = 0;
  bool pad_to_max_length = false;  // right-pad with the padding token (needs max_length)
  // Pad with this id instead of the tokenizer's padding token (GPT-2 has none; it is padded with
  // <|endoftext|>, masked out).
  std::optional<std::int32_t> pad_id;
};

struct Encoding {
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> type_ids;
  std::vector<std::int32_t> attention_mask;  // 1 for tokens, 0 for padding
  std::size_t untruncated_length = 0;        // tokens (special ones included) before truncation
  bool truncated = false;
};

class Tokenizer {
 public:
  explicit Tokenizer(TokenizerParts parts);

  const std::string& name() const { return parts_.name; }
  const std::string& source() const { return parts_.source; }
  // "wordpiece" or "bpe".
  std::string_view model_kind() const { return parts_.wordpiece ? "wordpiece" : "bpe"; }
  // One more than the largest token id, added tokens included: the embedding rows needed.
  std::int32_t vocab_size() const { return vocab_size_; }
  // BERT-family (WordPiece) models take token type ids; GPT-2 does not.
  bool has_token_type_ids() const { return parts_.wordpiece != nullptr; }
  std::optional<std::size_t> model_max_length() const { return parts_.model_max_length; }
  const std::optional<std::string>& pad_token() const { return parts_.pad_token; }
  std::optional<std::int32_t> pad_token_id() const { return pad_id_; }
  std::size_t special_tokens_added(bool is_pair) const {
    return parts_.post_processor.added_tokens(is_pair);
  }

  std::optional<std::int32_t> token_to_id(std::string_view token) const;
  // The token of an id (added tokens included), or nullptr.
  const std::string* id_to_token(std::int32_t id) const;

  // Ids of UTF-8 text without special tokens, truncation or padding. Throws eaq::Error on invalid
  // UTF-8.
  std::vector<std::int32_t> tokenize(std::string_view text) const;
  Encoding encode(std::string_view text, const EncodeOptions& options = {}) const;
  // A sentence pair; an empty `pair` encodes `text` alone, as transformers does.
  Encoding encode_pair(std::string_view text, std::string_view pair,
                       const EncodeOptions& options = {}) const;

 private:
  void tokenize_words(std::u32string_view normalized, std::vector<std::int32_t>& ids) const;
  Encoding finish(std::vector<std::int32_t> a, std::optional<std::vector<std::int32_t>> b,
                  const EncodeOptions& options) const;

  TokenizerParts parts_;
  AddedVocabulary added_;
  std::int32_t vocab_size_ = 0;
  std::optional<std::int32_t> pad_id_;
};

}  // namespace eaq::text
