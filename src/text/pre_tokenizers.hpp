// Pre-tokenizers: split normalized text into the words a model then tokenizes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace eaq::text {

// BERT (Rust `BertPreTokenizer`): split on whitespace (dropped), then make every punctuation
// character a word of its own (ASCII punctuation, as Rust's is_ascii_punctuation, or Unicode P*).
std::vector<std::u32string> bert_pre_tokenize(std::u32string_view text);

// GPT-2's pattern, as Oniguruma runs it (\s = White_Space, \p{L} letters, \p{N} numbers):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Returns the matches in order; together they cover the whole text.
std::vector<std::u32string> gpt2_split(std::u32string_view text);

// GPT-2's byte-to-unicode map: byte b -> a printable code point (b itself for 33-126, 161-172
// and 174-255; 256, 257, ... for the other bytes in increasing order).
char32_t byte_to_unicode(unsigned char byte);
// The UTF-8 bytes of `utf8`, each mapped by byte_to_unicode, as UTF-8 (a BPE vocabulary key).
std::string byte_level_encode(std::string_view utf8);

}  // namespace eaq::text
