// Unicode helpers for the tokenizers, over utf8proc: UTF-8 decoding and encoding, the character
// classes Hugging Face's `tokenizers` (Rust) uses, NFD and lower-casing. No hand-made tables: every
// class is a utf8proc general category, plus the few code points the definitions name.
// Known divergence: for control/format, punctuation and non-spacing marks the Rust library uses
// the `unicode_categories` crate, whose tables are from an old Unicode version (about 8.0);
// utf8proc has Unicode 15. Characters assigned or re-categorized since (e.g. U+061D, U+0890,
// U+1ABF) can tokenize differently. Checked against Hugging Face on every code point: those are
// the only differences.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace eaq::text {

// Byte offset of the first byte that does not start a valid UTF-8 sequence, if any.
std::optional<std::size_t> find_invalid_utf8(std::string_view bytes);
// Decodes UTF-8; throws eaq::Error naming the byte offset of the first invalid sequence.
std::u32string decode_utf8(std::string_view bytes);
std::string encode_utf8(std::u32string_view chars);
void append_utf8(std::string& out, char32_t c);

// Unicode's White_Space property (Rust's char::is_whitespace, Oniguruma's \s): the space
// separators (Zs), U+2028 (Zl), U+2029 (Zp), U+0009..U+000D and U+0085.
bool is_white_space(char32_t c);
// Control (Cc), format (Cf) or private use (Co): what `tokenizers` calls is_other().
bool is_control_format_or_private(char32_t c);
bool is_punctuation(char32_t c);        // general category P*
bool is_ascii_punctuation(char32_t c);  // ! through /, : through @, [ through `, { through ~
bool is_letter(char32_t c);             // L*
bool is_number(char32_t c);             // N*
bool is_nonspacing_mark(char32_t c);    // Mn
// Alphabetic-ish word character as regex \w: letters, marks, decimal digits, letter numbers,
// connector punctuation and the joiners (used only for single_word added tokens).
bool is_word_character(char32_t c);

// Canonical decomposition (NFD), with canonical reordering of combining marks.
std::u32string nfd(std::u32string_view chars);
// Appends the full lower-case mapping of c (as Rust's char::to_lowercase: U+0130 gives two
// code points, every other character one).
void append_lowercase(std::u32string& out, char32_t c);

}  // namespace eaq::text
