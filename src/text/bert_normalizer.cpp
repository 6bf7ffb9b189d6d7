#include "text/bert_normalizer.hpp"

#include "text/unicode.hpp"

namespace eaq::text {

bool is_chinese_char(char32_t c) {
  // The ranges of Hugging Face tokenizers' normalizers/bert.rs (0x2B920, not 0x2B820, is theirs).
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

namespace {

bool is_bert_whitespace(char32_t c) {
  return c == U'\t' || c == U'\n' || c == U'\r' || is_white_space(c);
}

bool is_bert_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;  // whitespace, not control
  return is_control_format_or_private(c);
}

}  // namespace

std::u32string BertNormalizer::normalize(std::u32string_view text) const {
  std::u32string current(text);
  if (clean_text) {
    std::u32string cleaned;
    cleaned.reserve(current.size());
    for (char32_t c : current) {
      if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
      cleaned.push_back(is_bert_whitespace(c) ? U' ' : c);
    }
    current = std::move(cleaned);
  }
  if (handle_chinese_chars) {
    std::u32string spaced;
    spaced.reserve(current.size());
    for (char32_t c : current) {
      if (is_chinese_char(c)) {
        spaced.push_back(U' ');
        spaced.push_back(c);
        spaced.push_back(U' ');
      } else {
        spaced.push_back(c);
      }
    }
    current = std::move(spaced);
  }
  if (strip_accents.value_or(lowercase)) {
    std::u32string stripped;
    for (char32_t c : nfd(current)) {
      if (!is_nonspacing_mark(c)) stripped.push_back(c);
    }
    current = std::move(stripped);
  }
  if (lowercase) {
    std::u32string lowered;
    lowered.reserve(current.size());
    for (char32_t c : current) append_lowercase(lowered, c);
    current = std::move(lowered);
  }
  return current;
}

}  // namespace eaq::text
