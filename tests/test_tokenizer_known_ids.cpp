// The tokenizers in data/tokenizers/ on texts whose Hugging Face ids are known (checked against
// Hugging Face's tokenizers library).
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "text_test_support.hpp"

namespace eaq::text {
namespace {

using Ids = std::vector<std::int32_t>;
using eaq::test::bert_tokenizer;
using eaq::test::gpt2_tokenizer;

Ids bert_ids(const std::string& text) {
  return bert_tokenizer().encode(text).ids;
}
Ids gpt2_ids(const std::string& text) {
  return gpt2_tokenizer().encode(text).ids;
}

TEST(BertTokenizer, KnownIds) {
  EXPECT_EQ(bert_ids("hello world"), (Ids{101, 7592, 2088, 102}));
  EXPECT_EQ(bert_ids("Hello, World!"), (Ids{101, 7592, 1010, 2088, 999, 102}));
  EXPECT_EQ(bert_ids("don't"), (Ids{101, 2123, 1005, 1056, 102}));        // don ' t
  EXPECT_EQ(bert_ids("unaffable"), (Ids{101, 14477, 20961, 3468, 102}));  // una ##ffa ##ble
  EXPECT_EQ(bert_ids("tokenization"), (Ids{101, 19204, 3989, 102}));      // token ##ization
  EXPECT_EQ(bert_ids(""), (Ids{101, 102}));
}

TEST(BertTokenizer, StripsAccentsAndLowercases) {
  EXPECT_EQ(bert_ids("Caf\u00e9"), bert_ids("cafe"));
  EXPECT_EQ(bert_ids("Caf\u00e9"), (Ids{101, 7668, 102}));
  EXPECT_EQ(bert_ids("na\u00efve caf\u00e9"), (Ids{101, 15743, 7668, 102}));
  EXPECT_EQ(bert_ids("\u00dcn\u00efc\u00f6d\u00e9"), (Ids{101, 27260, 102}));  // "unicode"
  EXPECT_EQ(bert_ids("\u00c5NGSTR\u00d6M"), (Ids{101, 17076, 15687, 102}));    // ang ##strom
}

TEST(BertTokenizer, WordsOver100CharactersAreUnknown) {
  const Ids hundred = bert_ids(std::string(100, 'a'));
  ASSERT_EQ(hundred.size(), 52u);  // aaa ##aa x48 ##a
  EXPECT_EQ(hundred[1], 13360);
  EXPECT_EQ(hundred[50], 2050);
  EXPECT_EQ(bert_ids(std::string(101, 'a')), (Ids{101, 100, 102}));
}

TEST(BertTokenizer, SpecialTokensInTheTextAreKept) {
  EXPECT_EQ(bert_ids("hello[SEP]world"), (Ids{101, 7592, 102, 2088, 102}));
  // Special tokens are matched before lower-casing: "[cls]" is ordinary text.
  EXPECT_EQ(bert_ids("[cls]"), (Ids{101, 1031, 18856, 2015, 1033, 102}));
}

TEST(BertTokenizer, ControlAndSpaceCharacters) {
  EXPECT_EQ(bert_ids("hello\u200b\u00a0world\x07"), (Ids{101, 7592, 2088, 102}));
  EXPECT_EQ(bert_ids(" \t\n "), (Ids{101, 102}));
}

TEST(BertTokenizer, Properties) {
  const Tokenizer& bert = bert_tokenizer();
  EXPECT_EQ(bert.name(), "bert-base-uncased");
  EXPECT_EQ(bert.model_kind(), "wordpiece");
  EXPECT_EQ(bert.vocab_size(), 30522);
  EXPECT_TRUE(bert.has_token_type_ids());
  EXPECT_EQ(bert.pad_token_id(), 0);
  EXPECT_EQ(bert.model_max_length(), 512u);  // from tokenizer_config.json
  EXPECT_EQ(bert.token_to_id("[MASK]"), 103);
  ASSERT_NE(bert.id_to_token(7592), nullptr);
  EXPECT_EQ(*bert.id_to_token(7592), "hello");
}

TEST(Gpt2Tokenizer, KnownIds) {
  EXPECT_EQ(gpt2_ids("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(gpt2_ids(" Hello"), (Ids{18435}));
  EXPECT_EQ(gpt2_ids("don't"), (Ids{9099, 470}));  // don 't
  EXPECT_EQ(gpt2_ids("I'm here"), (Ids{40, 1101, 994}));
  EXPECT_EQ(gpt2_ids("tokenization"), (Ids{30001, 1634}));
  EXPECT_EQ(gpt2_ids("a  b"), (Ids{64, 220, 275}));
  EXPECT_EQ(gpt2_ids("Hello\n\nworld"), (Ids{15496, 198, 198, 6894}));
  EXPECT_EQ(gpt2_ids(" 12345"), (Ids{17031, 2231}));
  EXPECT_EQ(gpt2_ids("\U0001F600"), (Ids{47249, 222}));  // bytes, not characters
  EXPECT_EQ(gpt2_ids(""), Ids{});
}

TEST(Gpt2Tokenizer, EndOfTextIsOneTokenAndNeverAddedAutomatically) {
  EXPECT_EQ(gpt2_ids("<|endoftext|>"), (Ids{50256}));
  EXPECT_EQ(gpt2_ids("a<|endoftext|>b"), (Ids{64, 50256, 65}));
  EXPECT_NE(gpt2_ids("Hello").back(), 50256);
}

TEST(Gpt2Tokenizer, Properties) {
  const Tokenizer& gpt2 = gpt2_tokenizer();
  EXPECT_EQ(gpt2.name(), "gpt2");
  EXPECT_EQ(gpt2.model_kind(), "bpe");
  EXPECT_EQ(gpt2.vocab_size(), 50257);
  EXPECT_FALSE(gpt2.has_token_type_ids());
  EXPECT_EQ(gpt2.pad_token_id(), std::nullopt);  // GPT-2 has no padding token
  EXPECT_EQ(gpt2.model_max_length(), 1024u);
  EXPECT_EQ(gpt2.token_to_id("<|endoftext|>"), 50256);
}

TEST(Tokenizer, RejectsInvalidUtf8) {
  EXPECT_THROW(bert_tokenizer().encode("abc\xFF"), Error);
  EXPECT_THROW(gpt2_tokenizer().encode("\xC3"), Error);
}

TEST(Tokenizer, TruncatesAndPadsSingleSequences) {
  const Tokenizer& bert = bert_tokenizer();
  EncodeOptions options;
  options.max_length = 8;
  options.pad_to_max_length = true;
  Encoding e = bert.encode("hello world", options);
  EXPECT_EQ(e.ids, (Ids{101, 7592, 2088, 102, 0, 0, 0, 0}));
  EXPECT_EQ(e.attention_mask, (Ids{1, 1, 1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(e.type_ids, (Ids(8, 0)));
  EXPECT_FALSE(e.truncated);
  EXPECT_EQ(e.untruncated_length, 4u);

  options.max_length = 3;  // room for one text token between [CLS] and [SEP]
  e = bert.encode("hello world", options);
  EXPECT_EQ(e.ids, (Ids{101, 7592, 102}));
  EXPECT_TRUE(e.truncated);
  EXPECT_EQ(e.untruncated_length, 4u);

  options.max_length = 2;  // no room for text at all
  EXPECT_THROW(bert.encode("hello world", options), Error);
  EXPECT_NO_THROW(bert.encode("", options));  // fits exactly: nothing to cut

  options.max_length = 4;  // GPT-2 cannot pad without a padding token
  EXPECT_THROW(gpt2_tokenizer().encode("Hello", options), Error);
  options.pad_to_max_length = false;
  EXPECT_EQ(gpt2_tokenizer().encode("Hello world Hello world", options).ids,
            (Ids{15496, 995, 18435, 995}));
}

TEST(Tokenizer, TruncatesPairsLongestFirst) {
  const Tokenizer& bert = bert_tokenizer();
  EncodeOptions options;
  options.max_length = 7;  // 3 special tokens: 4 text tokens
  Encoding e = bert.encode_pair("hello world how are you today", "and you", options);
  EXPECT_EQ(e.ids, (Ids{101, 7592, 2088, 102, 1998, 2017, 102}));
  EXPECT_EQ(e.type_ids, (Ids{0, 0, 0, 0, 1, 1, 1}));
  EXPECT_TRUE(e.truncated);

  options.max_length = 9;  // both longer than half of 6: 3 + 3
  e = bert.encode_pair("one two three four five six", "a b c d e f g", options);
  EXPECT_EQ(e.ids, (Ids{101, 2028, 2048, 2093, 102, 1037, 1038, 1039, 102}));
  e = bert.encode_pair("one", "a b c d e f g h i j", options);  // the short one stays whole
  EXPECT_EQ(e.ids, (Ids{101, 2028, 102, 1037, 1038, 1039, 1040, 1041, 102}));
  EXPECT_EQ(e.type_ids, (Ids{0, 0, 0, 1, 1, 1, 1, 1, 1}));

  options.pad_to_max_length = true;
  options.max_length = 8;
  e = bert.encode_pair("hi", "and you", options);
  EXPECT_EQ(e.ids, (Ids{101, 7632, 102, 1998, 2017, 102, 0, 0}));
  EXPECT_EQ(e.type_ids, (Ids{0, 0, 0, 1, 1, 1, 0, 0}));
  EXPECT_EQ(e.attention_mask, (Ids{1, 1, 1, 1, 1, 1, 0, 0}));
  EXPECT_FALSE(e.truncated);
}

TEST(Tokenizer, WithoutSpecialTokens) {
  EncodeOptions options;
  options.add_special_tokens = false;
  EXPECT_EQ(bert_tokenizer().encode("hello world", options).ids, (Ids{7592, 2088}));
  EXPECT_EQ(bert_tokenizer().tokenize("hello world"), (Ids{7592, 2088}));
}

}  // namespace
}  // namespace eaq::text
