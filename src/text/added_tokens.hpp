// Added tokens ([CLS], [SEP], <|endoftext|>, ...): found in the text before the model sees it, and
// never split. As in Hugging Face's AddedVocabulary: tokens with normalized=false are matched on
// the raw text, the others on the normalized text (with their content normalized the same way);
// the leftmost-longest match wins; lstrip/rstrip swallow adjacent whitespace; single_word tokens
// only match where no word character touches them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace eaq::text {

struct AddedToken {
  std::string content;
  std::int32_t id = -1;
  bool special = false;
  bool normalized = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// A piece of text: either an added token (id >= 0) or text for the model (id < 0).
struct TextSegment {
  std::u32string text;
  std::int32_t id = -1;
};

class AddedVocabulary {
 public:
  using Normalize = std::function<std::u32string(std::u32string_view)>;

  AddedVocabulary() = default;
  // `normalize` (may be empty) is applied to the content of tokens with normalized=true.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalize& normalize);

  // Splits raw text around the added tokens with normalized=false.
  std::vector<TextSegment> split_raw(std::u32string_view text) const {
    return split(text, raw_patterns_);
  }
  // Splits normalized text around the added tokens with normalized=true.
  std::vector<TextSegment> split_normalized(std::u32string_view text) const {
    return split(text, normalized_patterns_);
  }

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* find(std::string_view content) const;

 private:
  struct Pattern {
    std::u32string text;
    std::size_t token_index;
  };
  std::vector<TextSegment> split(std::u32string_view text,
                                 const std::vector<Pattern>& patterns) const;

  std::vector<AddedToken> tokens_;
  std::vector<Pattern> raw_patterns_;
  std::vector<Pattern> normalized_patterns_;
};

}  // namespace eaq::text
