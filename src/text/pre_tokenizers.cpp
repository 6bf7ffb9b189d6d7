#include "text/pre_tokenizers.hpp"

#include <array>

#include "text/unicode.hpp"

namespace eaq::text {

std::vector<std::u32string> bert_pre_tokenize(std::u32string_view text) {
  std::vector<std::u32string> words;
  std::u32string current;
  const auto flush = [&] {
    if (!current.empty()) words.push_back(std::move(current));
    current.clear();
  };
  for (char32_t c : text) {
    if (is_white_space(c)) {
      flush();
    } else if (is_ascii_punctuation(c) || is_punctuation(c)) {
      flush();
      words.emplace_back(1, c);
    } else {
      current.push_back(c);
    }
  }
  flush();
  return words;
}

namespace {

bool is_other(char32_t c) {
  return !is_white_space(c) && !is_letter(c) && !is_number(c);
}

// Length of the contraction ('s 't 're 've 'm 'll 'd) at `pos`, or 0. Case-sensitive, as in GPT-2.
std::size_t contraction_length(std::u32string_view text, std::size_t pos) {
  if (text[pos] != U'\'' || pos + 1 >= text.size()) return 0;
  const char32_t next = text[pos + 1];
  if (next == U's' || next == U't' || next == U'm' || next == U'd') return 2;
  if (pos + 2 < text.size()) {
    const char32_t after = text[pos + 2];
    if ((next == U'r' && after == U'e') || (next == U'v' && after == U'e') ||
        (next == U'l' && after == U'l')) {
      return 3;
    }
  }
  return 0;
}

// ` ?CLASS+` at `pos`: an optional leading space, then one or more characters of the class.
template <class Predicate>
std::size_t optional_space_then_run(std::u32string_view text, std::size_t pos, Predicate in_class) {
  std::size_t end = pos;
  if (text[end] == U' ') ++end;
  if (end >= text.size() || !in_class(text[end])) return 0;
  while (end < text.size() && in_class(text[end])) ++end;
  return end - pos;
}

std::size_t match_length(std::u32string_view text, std::size_t pos) {
  if (std::size_t n = contraction_length(text, pos)) return n;
  if (std::size_t n = optional_space_then_run(text, pos, is_letter)) return n;
  if (std::size_t n = optional_space_then_run(text, pos, is_number)) return n;
  if (std::size_t n = optional_space_then_run(text, pos, is_other)) return n;
  // Only whitespace remains possible here.
  std::size_t run = 0;
  while (pos + run < text.size() && is_white_space(text[pos + run])) ++run;
  if (run == 0) return 1;  // unreachable: every character is in one class
  // \s+(?!\S): all of the run at the end of the text; otherwise back off one character so that
  // the last whitespace can join the next word. A single whitespace before a word falls through
  // to \s+ and matches alone.
  if (pos + run == text.size()) return run;
  if (run > 1) return run - 1;
  return run;
}

std::array<char32_t, 256> make_byte_map() {
  std::array<char32_t, 256> map{};
  char32_t next_free = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    map[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next_free++;
  }
  return map;
}

}  // namespace

std::vector<std::u32string> gpt2_split(std::u32string_view text) {
  std::vector<std::u32string> pieces;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t length = match_length(text, pos);
    pieces.emplace_back(text.substr(pos, length));
    pos += length;
  }
  return pieces;
}

char32_t byte_to_unicode(unsigned char byte) {
  static const std::array<char32_t, 256> map = make_byte_map();
  return map[byte];
}

std::string byte_level_encode(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size() * 2);
  for (char byte : utf8) append_utf8(out, byte_to_unicode(static_cast<unsigned char>(byte)));
  return out;
}

}  // namespace eaq::text
