// BERT's text normalization, as Hugging Face's fast tokenizer (Rust `BertNormalizer`) does it, in
// this order: clean-up (drop NUL, U+FFFD and control/format/private-use characters except \t \n
// \r; map every whitespace to ' '), spaces around CJK ideographs, accent stripping (NFD, then drop
// non-spacing marks), lower-casing. Accents are stripped when strip_accents is unset and lowercase
// is on (the original BERT behaviour).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace eaq::text {

// The CJK Unified Ideographs blocks BERT splits out (not Hangul, Hiragana or Katakana).
bool is_chinese_char(char32_t c);

struct BertNormalizer {
  bool clean_text = true;
  bool handle_chinese_chars = true;
  std::optional<bool> strip_accents;  // unset: follow `lowercase`
  bool lowercase = true;

  std::u32string normalize(std::u32string_view text) const;
};

}  // namespace eaq::text
