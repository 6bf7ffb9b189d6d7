#include "text/unicode.hpp"

#include <utf8proc.h>

#include <vector>

#include "core/error.hpp"

namespace eaq::text {
namespace {

utf8proc_category_t category(char32_t c) {
  return static_cast<utf8proc_category_t>(utf8proc_category(static_cast<utf8proc_int32_t>(c)));
}

// Decodes one UTF-8 sequence at `pos`; returns its length, or 0 when it is invalid (a stray
// continuation byte, a truncated sequence, an overlong form, a surrogate, or past U+10FFFF).
std::size_t decode_one(std::string_view bytes, std::size_t pos, char32_t* out) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) {
    *out = lead;
    return 1;
  }
  std::size_t length = 0;
  char32_t value = 0;
  char32_t minimum = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, value = lead & 0x1F, minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, value = lead & 0x0F, minimum = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, value = lead & 0x07, minimum = 0x10000;
  } else {
    return 0;
  }
  if (pos + length > bytes.size()) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    const unsigned char next = byte(pos + i);
    if ((next & 0xC0) != 0x80) return 0;
    value = (value << 6) | (next & 0x3F);
  }
  if (value < minimum || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *out = value;
  return length;
}

}  // namespace

std::optional<std::size_t> find_invalid_utf8(std::string_view bytes) {
  std::size_t pos = 0;
  char32_t c = 0;
  while (pos < bytes.size()) {
    const std::size_t length = decode_one(bytes, pos, &c);
    if (length == 0) return pos;
    pos += length;
  }
  return std::nullopt;
}

std::u32string decode_utf8(std::string_view bytes) {
  std::u32string chars;
  chars.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    char32_t c = 0;
    const std::size_t length = decode_one(bytes, pos, &c);
    EAQ_CHECK(length != 0, "invalid UTF-8 at byte {} (byte value 0x{:02X})", pos,
              static_cast<unsigned char>(bytes[pos]));
    chars.push_back(c);
    pos += length;
  }
  return chars;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view chars) {
  std::string out;
  out.reserve(chars.size());
  for (char32_t c : chars) append_utf8(out, c);
  return out;
}

bool is_white_space(char32_t c) {
  if ((c >= 0x09 && c <= 0x0D) || c == 0x85) return true;
  const auto cat = category(c);
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

bool is_control_format_or_private(char32_t c) {
  const auto cat = category(c);
  return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CO;
}

bool is_punctuation(char32_t c) {
  const auto cat = category(c);
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

bool is_ascii_punctuation(char32_t c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
         (c >= 123 && c <= 126);
}

bool is_letter(char32_t c) {
  const auto cat = category(c);
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

bool is_number(char32_t c) {
  const auto cat = category(c);
  return cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
}

bool is_nonspacing_mark(char32_t c) {
  return category(c) == UTF8PROC_CATEGORY_MN;
}

bool is_word_character(char32_t c) {
  const auto cat = category(c);
  return is_letter(c) || (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME) ||
         cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL ||
         cat == UTF8PROC_CATEGORY_PC || c == 0x200C || c == 0x200D;
}

std::u32string nfd(std::u32string_view chars) {
  if (chars.empty()) return {};
  const std::string utf8 = encode_utf8(chars);
  const auto* input = reinterpret_cast<const utf8proc_uint8_t*>(utf8.data());
  const auto input_length = static_cast<utf8proc_ssize_t>(utf8.size());
  const int options = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
  // utf8proc reports the decomposed length first; a decomposition is rarely longer than 4x.
  std::vector<utf8proc_int32_t> buffer(chars.size() * 4 + 4);
  auto length = utf8proc_decompose(input, input_length, buffer.data(),
                                   static_cast<utf8proc_ssize_t>(buffer.size()),
                                   static_cast<utf8proc_option_t>(options));
  if (length > static_cast<utf8proc_ssize_t>(buffer.size())) {
    buffer.resize(static_cast<std::size_t>(length));
    length = utf8proc_decompose(input, input_length, buffer.data(), length,
                                static_cast<utf8proc_option_t>(options));
  }
  EAQ_CHECK(length >= 0, "Unicode normalization failed: {}", utf8proc_errmsg(length));
  std::u32string out;
  out.reserve(static_cast<std::size_t>(length));
  for (utf8proc_ssize_t i = 0; i < length; ++i) {
    out.push_back(static_cast<char32_t>(buffer[static_cast<std::size_t>(i)]));
  }
  return out;
}

void append_lowercase(std::u32string& out, char32_t c) {
  // U+0130 (capital I with dot above) is the one character whose full lower-case mapping has
  // two code points (SpecialCasing.txt); utf8proc gives simple mappings only.
  if (c == 0x0130) {
    out.push_back(U'i');
    out.push_back(0x0307);
    return;
  }
  out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
}

}  // namespace eaq::text
