#include "text/added_tokens.hpp"

#include "text/unicode.hpp"

namespace eaq::text {

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalize& normalize)
    : tokens_(std::move(tokens)) {
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& token = tokens_[i];
    std::u32string content = decode_utf8(token.content);
    if (token.normalized) {
      if (normalize) content = normalize(content);
      if (!content.empty()) normalized_patterns_.push_back({std::move(content), i});
    } else if (!content.empty()) {
      raw_patterns_.push_back({std::move(content), i});
    }
  }
}

const AddedToken* AddedVocabulary::find(std::string_view content) const {
  for (const AddedToken& token : tokens_) {
    if (token.content == content) return &token;
  }
  return nullptr;
}

std::vector<TextSegment> AddedVocabulary::split(std::u32string_view text,
                                                const std::vector<Pattern>& patterns) const {
  std::vector<TextSegment> segments;
  std::size_t segment_start = 0;  // start of the text not yet emitted
  std::size_t pos = 0;
  while (pos < text.size() && !patterns.empty()) {
    // The longest pattern starting here (leftmost-longest, non-overlapping).
    const Pattern* best = nullptr;
    for (const Pattern& pattern : patterns) {
      if (text.substr(pos, pattern.text.size()) == pattern.text &&
          (best == nullptr || pattern.text.size() > best->text.size())) {
        best = &pattern;
      }
    }
    if (best == nullptr) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[best->token_index];
    std::size_t start = pos;
    std::size_t stop = pos + best->text.size();
    if (token.single_word) {
      const bool word_before = start > 0 && is_word_character(text[start - 1]);
      const bool word_after = stop < text.size() && is_word_character(text[stop]);
      if (word_before || word_after) {
        pos = stop;  // the match is consumed, as the Rust matcher's iterator does
        continue;
      }
    }
    if (token.lstrip) {
      while (start > segment_start && is_white_space(text[start - 1])) --start;
    }
    if (token.rstrip) {
      while (stop < text.size() && is_white_space(text[stop])) ++stop;
    }
    if (segment_start < start) {
      segments.push_back({std::u32string(text.substr(segment_start, start - segment_start)), -1});
    }
    segments.push_back({std::u32string(text.substr(start, stop - start)), token.id});
    segment_start = stop;
    pos = stop;
  }
  if (segment_start < text.size() || segments.empty()) {
    segments.push_back({std::u32string(text.substr(segment_start)), -1});
  }
  return segments;
}

}  // namespace eaq::text
