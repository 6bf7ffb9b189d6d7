// WordPiece and BPE on small vocabularies, where every expectation can be worked out by hand.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "text/bpe.hpp"
#include "text/wordpiece.hpp"

namespace eaq::text {
namespace {

Vocab make_vocab(const std::vector<std::string>& tokens) {
  Vocab vocab;
  for (std::size_t i = 0; i < tokens.size(); ++i)
    vocab.add(tokens[i], static_cast<std::int32_t>(i), "test");
  return vocab;
}

std::vector<std::int32_t> wordpiece(const WordPieceModel& model, const std::string& word) {
  std::vector<std::int32_t> ids;
  model.tokenize(word, ids);
  return ids;
}

TEST(WordPiece, GreedyLongestMatchFirst) {
  //                                 0        1     2      3        4       5      6
  const WordPieceModel model(
      make_vocab({"[UNK]", "un", "##aff", "##able", "unaff", "##a", "##ble"}), "[UNK]");
  EXPECT_EQ(wordpiece(model, "unaffable"), (std::vector<std::int32_t>{4, 3}));  // "unaff" first
  EXPECT_EQ(wordpiece(model, "unable"), (std::vector<std::int32_t>{1, 3}));
  // One piece that cannot be matched makes the whole word unknown.
  EXPECT_EQ(wordpiece(model, "unaffablez"), (std::vector<std::int32_t>{0}));
  EXPECT_TRUE(wordpiece(model, "").empty());
}

TEST(WordPiece, LongWordsAreUnknownCountingCharacters) {
  const WordPieceModel model(make_vocab({"[UNK]", "\u00e9", "##\u00e9"}), "[UNK]", "##", 3);
  EXPECT_EQ(wordpiece(model, "\u00e9\u00e9\u00e9"),
            (std::vector<std::int32_t>{1, 2, 2}));  // 6 bytes
  EXPECT_EQ(wordpiece(model, "\u00e9\u00e9\u00e9\u00e9"), (std::vector<std::int32_t>{0}));
}

TEST(WordPiece, NeedsItsUnknownToken) {
  EXPECT_THROW(WordPieceModel(make_vocab({"a"}), "[UNK]"), Error);
}

std::vector<std::int32_t> bpe(const BpeModel& model, const std::string& word) {
  std::vector<std::int32_t> ids;
  model.tokenize(word, ids);
  return ids;
}

TEST(Bpe, MergesLowestRankFirstLeftmostOnTies) {
  //                            0    1    2    3     4     5      6
  const Vocab vocab = make_vocab({"a", "b", "c", "ab", "bc", "abc", "aa"});
  // Rank order: "b c" before "a b": "abc" -> a (bc) -> no "a bc" merge -> [a, bc].
  const BpeModel bc_first(vocab, {{"b", "c"}, {"a", "b"}}, std::nullopt, false, false, "test");
  EXPECT_EQ(bpe(bc_first, "abc"), (std::vector<std::int32_t>{0, 4}));
  const BpeModel ab_first(vocab, {{"a", "b"}, {"ab", "c"}, {"b", "c"}}, std::nullopt, false, false,
                          "test");
  EXPECT_EQ(bpe(ab_first, "abc"), (std::vector<std::int32_t>{5}));
  // Equal pairs merge left to right: "aaa" -> (aa) a.
  const BpeModel aa(vocab, {{"a", "a"}}, std::nullopt, false, false, "test");
  EXPECT_EQ(bpe(aa, "aaa"), (std::vector<std::int32_t>{6, 0}));
  EXPECT_EQ(bpe(aa, "aaaa"), (std::vector<std::int32_t>{6, 6}));
  // Cached results are the same as fresh ones.
  EXPECT_EQ(bpe(aa, "aaa"), (std::vector<std::int32_t>{6, 0}));
}

TEST(Bpe, UnknownCharactersAreDroppedOrBecomeTheUnknownToken) {
  const Vocab vocab = make_vocab({"a", "<unk>"});
  const BpeModel no_unk(vocab, {}, std::nullopt, false, false, "test");
  EXPECT_EQ(bpe(no_unk, "axya"), (std::vector<std::int32_t>{0, 0}));  // as Hugging Face does
  const BpeModel unk(vocab, {}, std::string("<unk>"), false, false, "test");
  EXPECT_EQ(bpe(unk, "axya"), (std::vector<std::int32_t>{0, 1, 1, 0}));
  const BpeModel fused(vocab, {}, std::string("<unk>"), true, false, "test");
  EXPECT_EQ(bpe(fused, "axya"), (std::vector<std::int32_t>{0, 1, 0}));
}

TEST(Bpe, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  const Vocab vocab = make_vocab({"a", "b", "c", "ab", "abc"});
  const BpeModel model(vocab, {{"a", "b"}}, std::nullopt, false, true, "test");
  EXPECT_EQ(bpe(model, "abc"), (std::vector<std::int32_t>{4}));
  EXPECT_EQ(bpe(model, "abcab"), (std::vector<std::int32_t>{3, 2, 3}));
}

TEST(Bpe, RefusesMergesOutsideTheVocabulary) {
  const Vocab vocab = make_vocab({"a", "b"});
  try {
    BpeModel(vocab, {{"a", "b"}}, std::nullopt, false, false, "merges.txt");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("makes 'ab', which is not in the vocabulary"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace eaq::text
