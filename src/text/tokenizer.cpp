#include "text/tokenizer.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "text/pre_tokenizers.hpp"
#include "text/unicode.hpp"

namespace eaq::text {

Tokenizer::Tokenizer(TokenizerParts parts) : parts_(std::move(parts)) {
  EAQ_CHECK((parts_.wordpiece != nullptr) != (parts_.bpe != nullptr),
            "{}: a tokenizer needs exactly one model (WordPiece or BPE)", parts_.source);
  AddedVocabulary::Normalize normalize;
  if (parts_.normalizer) {
    const BertNormalizer normalizer = *parts_.normalizer;
    normalize = [normalizer](std::u32string_view text) { return normalizer.normalize(text); };
  }
  added_ = AddedVocabulary(parts_.added_tokens, normalize);

  vocab_size_ =
      parts_.wordpiece ? parts_.wordpiece->vocab().id_bound() : parts_.bpe->vocab().id_bound();
  for (const AddedToken& token : parts_.added_tokens)
    vocab_size_ = std::max(vocab_size_, token.id + 1);

  if (parts_.pad_token) {
    pad_id_ = token_to_id(*parts_.pad_token);
    EAQ_CHECK(pad_id_.has_value(), "{}: the padding token '{}' is not in the vocabulary",
              parts_.source, *parts_.pad_token);
  }
}

std::optional<std::int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (const AddedToken* added = added_.find(token)) return added->id;
  return parts_.wordpiece ? parts_.wordpiece->vocab().find(token) : parts_.bpe->vocab().find(token);
}

const std::string* Tokenizer::id_to_token(std::int32_t id) const {
  for (const AddedToken& token : added_.tokens()) {
    if (token.id == id) return &token.content;
  }
  return parts_.wordpiece ? parts_.wordpiece->vocab().token(id) : parts_.bpe->vocab().token(id);
}

void Tokenizer::tokenize_words(std::u32string_view normalized,
                               std::vector<std::int32_t>& ids) const {
  std::vector<std::string> words;  // UTF-8
  switch (parts_.pre_tokenizer) {
    case PreTokenizerKind::None:
      if (!normalized.empty()) words.push_back(encode_utf8(normalized));
      break;
    case PreTokenizerKind::Bert:
      for (const std::u32string& word : bert_pre_tokenize(normalized)) {
        words.push_back(encode_utf8(word));
      }
      break;
    case PreTokenizerKind::ByteLevel: {
      std::u32string text(normalized);
      if (parts_.byte_level.add_prefix_space && !text.empty() && text.front() != U' ') {
        text.insert(text.begin(), U' ');
      }
      std::vector<std::u32string> pieces;
      if (parts_.byte_level.use_regex) {
        pieces = gpt2_split(text);
      } else if (!text.empty()) {
        pieces.push_back(std::move(text));
      }
      for (const std::u32string& piece : pieces)
        words.push_back(byte_level_encode(encode_utf8(piece)));
      break;
    }
  }
  for (const std::string& word : words) {
    if (parts_.wordpiece) {
      parts_.wordpiece->tokenize(word, ids);
    } else {
      parts_.bpe->tokenize(word, ids);
    }
  }
}

std::vector<std::int32_t> Tokenizer::tokenize(std::string_view text) const {
  std::vector<std::int32_t> ids;
  for (const TextSegment& raw : added_.split_raw(decode_utf8(text))) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    const std::u32string normalized =
        parts_.normalizer ? parts_.normalizer->normalize(raw.text) : raw.text;
    for (const TextSegment& segment : added_.split_normalized(normalized)) {
      if (segment.id >= 0) {
        ids.push_back(segment.id);
      } else {
        tokenize_words(segment.text, ids);
      }
    }
  }
  return ids;
}

Encoding Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  return finish(tokenize(text), std::nullopt, options);
}

Encoding Tokenizer::encode_pair(std::string_view text, std::string_view pair,
                                const EncodeOptions& options) const {
  // transformers treats an empty second text as no pair at all (a Python truthiness test in
  // PreTrainedTokenizerBase), so "[CLS] a [SEP]" rather than "[CLS] a [SEP] [SEP]".
  if (pair.empty()) return finish(tokenize(text), std::nullopt, options);
  return finish(tokenize(text), tokenize(pair), options);
}

Encoding Tokenizer::finish(std::vector<std::int32_t> a, std::optional<std::vector<std::int32_t>> b,
                           const EncodeOptions& options) const {
  const bool is_pair = b.has_value();
  const std::size_t special = options.add_special_tokens ? special_tokens_added(is_pair) : 0;
  Encoding encoding;
  encoding.untruncated_length = a.size() + (is_pair ? b->size() : 0) + special;

  if (options.max_length > 0 && encoding.untruncated_length > options.max_length) {
    EAQ_CHECK(options.max_length > special,
              "max length {} leaves no room for text next to the {} special tokens of {}",
              options.max_length, special, parts_.name);
    encoding.truncated = true;
    const std::size_t budget = options.max_length - special;
    if (!is_pair) {
      a.resize(budget);
    } else {
      // Hugging Face's LongestFirst: keep the shorter sequence whole when the longer one can take
      // the cut alone, otherwise split the budget evenly (the extra token going to the second).
      std::size_t n1 = a.size();
      std::size_t n2 = b->size();
      const bool swapped = n1 > n2;
      if (swapped) std::swap(n1, n2);
      n2 = n1 > budget ? n1 : std::max(n1, budget - n1);
      if (n1 + n2 > budget) {
        n1 = budget / 2;
        n2 = n1 + budget % 2;
      }
      if (swapped) std::swap(n1, n2);
      a.resize(std::min(a.size(), n1));
      b->resize(std::min(b->size(), n2));
    }
  }

  parts_.post_processor.apply(a, is_pair ? &*b : nullptr, options.add_special_tokens, encoding.ids,
                              encoding.type_ids);
  encoding.attention_mask.assign(encoding.ids.size(), 1);

  if (options.pad_to_max_length) {
    EAQ_CHECK(options.max_length > 0, "padding to the max length needs a max length");
    const std::optional<std::int32_t> pad_id = options.pad_id ? options.pad_id : pad_id_;
    EAQ_CHECK(pad_id.has_value(),
              "{} has no padding token; name one (pad_token in tokenizer_config.json)",
              parts_.name);
    const std::size_t length = std::max(encoding.ids.size(), options.max_length);
    encoding.ids.resize(length, *pad_id);
    encoding.type_ids.resize(length, 0);
    encoding.attention_mask.resize(length, 0);
  }
  return encoding;
}

}  // namespace eaq::text
