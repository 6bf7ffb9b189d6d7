#include <gtest/gtest.h>

#include "core/error.hpp"
#include "text/unicode.hpp"

namespace eaq::text {
namespace {

TEST(TextUnicode, DecodesAndEncodesUtf8) {
  const std::string text = "a\u00e9\u4e2d\U0001F600";
  const std::u32string chars = decode_utf8(text);
  EXPECT_EQ(chars, (std::u32string{U'a', 0xE9, 0x4E2D, 0x1F600}));
  EXPECT_EQ(encode_utf8(chars), text);
}

TEST(TextUnicode, RejectsInvalidUtf8WithItsOffset) {
  EXPECT_EQ(find_invalid_utf8("abc"), std::nullopt);
  EXPECT_EQ(find_invalid_utf8("ab\xFF"), 2u);            // never valid
  EXPECT_EQ(find_invalid_utf8("a\x80"), 1u);             // stray continuation byte
  EXPECT_EQ(find_invalid_utf8("a\xC3"), 1u);             // truncated sequence
  EXPECT_EQ(find_invalid_utf8("\xC0\xAF"), 0u);          // overlong '/'
  EXPECT_EQ(find_invalid_utf8("\xED\xA0\x80"), 0u);      // surrogate U+D800
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);  // past U+10FFFF
  try {
    decode_utf8("ok\xFE");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte 2"), std::string::npos) << e.what();
  }
}

TEST(TextUnicode, CharacterClasses) {
  // White_Space: ASCII controls 9-13, NEL, NBSP, the Zs/Zl/Zp separators; not ZWSP or U+001F.
  for (char32_t c : std::u32string{0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000,
                                   0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000}) {
    EXPECT_TRUE(is_white_space(c)) << std::hex << static_cast<unsigned>(c);
  }
  for (char32_t c : {0x200B, 0x1F, 0xFEFF, 0x61}) EXPECT_FALSE(is_white_space(c));
  EXPECT_TRUE(is_control_format_or_private(0x07));    // Cc
  EXPECT_TRUE(is_control_format_or_private(0x200B));  // Cf
  EXPECT_TRUE(is_control_format_or_private(0xE000));  // Co
  EXPECT_FALSE(is_control_format_or_private(U'a'));
  EXPECT_TRUE(is_punctuation(0x00BF));  // inverted question mark, Po
  EXPECT_TRUE(is_punctuation(0x2014));  // em dash, Pd
  EXPECT_FALSE(is_punctuation(U'$'));   // Sc: punctuation only by the ASCII rule
  EXPECT_TRUE(is_ascii_punctuation(U'$'));
  EXPECT_TRUE(is_ascii_punctuation(U'~'));
  EXPECT_FALSE(is_ascii_punctuation(U'a'));
  EXPECT_TRUE(is_letter(0x4E2D));
  EXPECT_TRUE(is_number(0x0663));  // Arabic-Indic three
  EXPECT_TRUE(is_number(0x2167));  // Roman numeral eight, Nl
  EXPECT_TRUE(is_nonspacing_mark(0x0301));
  EXPECT_FALSE(is_nonspacing_mark(U'e'));
}

TEST(TextUnicode, NfdDecomposesAndReorders) {
  EXPECT_EQ(nfd(U"\u00e9"), U"e\u0301");
  EXPECT_EQ(nfd(U"\u1e9b\u0323"), U"\u017f\u0323\u0307");  // canonical order of the marks
  EXPECT_EQ(nfd(U"\uac00"), U"\u1100\u1161");              // Hangul syllable into jamo
  EXPECT_EQ(nfd(U""), U"");
}

TEST(TextUnicode, LowercaseUsesFullMappingForDottedCapitalI) {
  std::u32string out;
  append_lowercase(out, U'A');
  append_lowercase(out, 0x0130);
  append_lowercase(out, 0x03A3);
  EXPECT_EQ(out, (std::u32string{U'a', U'i', 0x0307, 0x03C3}));
}

}  // namespace
}  // namespace eaq::text
