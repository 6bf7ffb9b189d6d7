#include <gtest/gtest.h>

#include "text/bert_normalizer.hpp"
#include "text/pre_tokenizers.hpp"
#include "text/unicode.hpp"

namespace eaq::text {
namespace {

std::string normalize(const BertNormalizer& normalizer, const std::string& text) {
  return encode_utf8(normalizer.normalize(decode_utf8(text)));
}

TEST(BertNormalizer, CleansControlsAndWhitespace) {
  const BertNormalizer bert;
  // NUL, U+FFFD, control/format characters go (NEL is a control before it is whitespace);
  // \t \n \r, NBSP and U+2028 become spaces.
  EXPECT_EQ(normalize(bert, std::string("a\0b", 3)), "ab");
  EXPECT_EQ(normalize(bert,
                      "a\ufffdb\u200bc\u0085d\x07"
                      "e"),
            "abcde");
  EXPECT_EQ(normalize(bert, "a\tb\nc\rd\u00a0e\u2028f"), "a b c d e f");
  BertNormalizer keep = bert;
  keep.clean_text = false;
  EXPECT_EQ(normalize(keep, "a\u200bb"), "a\u200bb");
}

TEST(BertNormalizer, SpacesAroundCjkIdeographsOnly) {
  const BertNormalizer bert;
  EXPECT_EQ(normalize(bert, "ab\u4e2d\u6587c"), "ab \u4e2d  \u6587 c");
  BertNormalizer keep_accents = bert;  // NFD would decompose the Hangul syllable
  keep_accents.strip_accents = false;
  EXPECT_EQ(normalize(keep_accents, "\u3072\ud55c"),
            "\u3072\ud55c");  // Hiragana, Hangul: not split
  EXPECT_TRUE(is_chinese_char(0x2B920));
  EXPECT_FALSE(is_chinese_char(0x2B820));  // the gap in tokenizers' table
  BertNormalizer off = bert;
  off.handle_chinese_chars = false;
  EXPECT_EQ(normalize(off, "\u4e2d\u6587"), "\u4e2d\u6587");
}

TEST(BertNormalizer, AccentsFollowLowercaseUnlessSet) {
  BertNormalizer bert;
  EXPECT_EQ(normalize(bert, "Caf\u00e9 \u00c5NGSTR\u00d6M"), "cafe angstrom");
  EXPECT_EQ(normalize(bert, "Cafe\u0301"), "cafe");  // an already decomposed accent
  bert.strip_accents = false;
  EXPECT_EQ(normalize(bert, "Caf\u00c9"), "caf\u00e9");  // lower-cased, accent kept
  bert.strip_accents.reset();
  bert.lowercase = false;
  EXPECT_EQ(normalize(bert, "Caf\u00e9"), "Caf\u00e9");  // cased: no stripping by default
  bert.strip_accents = true;
  EXPECT_EQ(normalize(bert, "Caf\u00e9"), "Cafe");
}

TEST(BertNormalizer, LowercasesAfterStrippingAccents) {
  // U+0130 decomposes to I + combining dot, the dot is stripped, then I is lower-cased.
  BertNormalizer bert;
  EXPECT_EQ(normalize(bert, "\u0130"), "i");
  // Without stripping, lower-casing U+0130 gives i + U+0307 (Rust's full mapping).
  bert.strip_accents = false;
  EXPECT_EQ(normalize(bert, "\u0130"), "i\u0307");
}

std::vector<std::string> utf8_words(const std::vector<std::u32string>& words) {
  std::vector<std::string> out;
  for (const auto& word : words) out.push_back(encode_utf8(word));
  return out;
}

TEST(BertPreTokenizer, SplitsWhitespaceAndIsolatesPunctuation) {
  using Words = std::vector<std::string>;
  EXPECT_EQ(utf8_words(bert_pre_tokenize(U"Hey friend!     How are you?!?")),
            (Words{"Hey", "friend", "!", "How", "are", "you", "?", "!", "?"}));
  EXPECT_EQ(utf8_words(bert_pre_tokenize(U"don't $5+x")),
            (Words{"don", "'", "t", "$", "5", "+", "x"}));
  EXPECT_EQ(utf8_words(bert_pre_tokenize(U"\u00bfs\u00ed\u2014no")),
            (Words{"\u00bf", "s\u00ed", "\u2014", "no"}));
  EXPECT_TRUE(bert_pre_tokenize(U"  \t ").empty());
}

TEST(Gpt2Split, FollowsThePatternExactly) {
  using Words = std::vector<std::string>;
  const auto split = [](const std::string& text) {
    return utf8_words(gpt2_split(decode_utf8(text)));
  };
  EXPECT_EQ(split("Hello world"), (Words{"Hello", " world"}));
  EXPECT_EQ(split("I'm here, it's"), (Words{"I", "'m", " here", ",", " it", "'s"}));
  EXPECT_EQ(split("IT'S"), (Words{"IT", "'", "S"}));  // contractions are lower-case only
  EXPECT_EQ(split("they'll've"), (Words{"they", "'ll", "'ve"}));
  // \s+(?!\S): a run of spaces leaves its last space to the next word.
  EXPECT_EQ(split("a   b"), (Words{"a", "  ", " b"}));
  EXPECT_EQ(split("a\n\nb"), (Words{"a", "\n", "\n", "b"}));
  EXPECT_EQ(split("a \n b"), (Words{"a", " \n", " b"}));
  EXPECT_EQ(split("end  "), (Words{"end", "  "}));
  EXPECT_EQ(split(" 123abc"), (Words{" 123", "abc"}));
  EXPECT_EQ(split("x ?!y"), (Words{"x", " ?!", "y"}));
  EXPECT_EQ(split("\u00a0caf\u00e9"), (Words{"\u00a0", "caf\u00e9"}));  // NBSP is not ' '
  EXPECT_TRUE(split("").empty());
}

TEST(ByteLevel, MapsBytesToPrintableCharacters) {
  EXPECT_EQ(byte_to_unicode('!'), U'!');
  EXPECT_EQ(byte_to_unicode(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(byte_to_unicode('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(byte_to_unicode(0), 0x100u);
  EXPECT_EQ(byte_to_unicode(0xAD), 0x143u);  // the soft hyphen byte is remapped
  EXPECT_EQ(byte_to_unicode(0xFF), 0xFFu);
  EXPECT_EQ(byte_level_encode(" caf\u00e9"), "\u0120caf\u00c3\u00a9");
}

}  // namespace
}  // namespace eaq::text
