// Hugging Face ids already in the repository: tests/golden/bundled/sentiment_reference.safetensors
// holds 16 imdb sentences tokenized on the GPU machine by the `tokenizers` Python package
// (padded to 128). Ours must match, from data/tokenizers/ and from the bundled model's own
// tokenizer.json.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "text_test_support.hpp"

namespace eaq {
namespace {

void expect_matches_reference(const text::Tokenizer& tokenizer) {
  const auto path = test::repo_path("tests/golden/bundled/sentiment_reference.safetensors");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present";
  const SafetensorsFile reference = SafetensorsFile::open(path.string());
  const auto texts =
      nlohmann::json::parse(reference.metadata().at("texts")).get<std::vector<std::string>>();
  const std::vector<std::int64_t> ids = reference.tensor("input_ids").to_i64();
  const std::vector<std::int64_t> mask = reference.tensor("attention_mask").to_i64();
  const std::int64_t length = reference.tensor("input_ids").dim(1);
  ASSERT_EQ(static_cast<std::int64_t>(texts.size()), reference.tensor("input_ids").dim(0));
  text::EncodeOptions options;
  options.max_length = static_cast<std::size_t>(length);
  options.pad_to_max_length = true;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const text::Encoding e = tokenizer.encode(texts[i], options);
    const auto row = static_cast<std::ptrdiff_t>(i) * length;
    EXPECT_EQ(std::vector<std::int64_t>(e.ids.begin(), e.ids.end()),
              std::vector<std::int64_t>(ids.begin() + row, ids.begin() + row + length))
        << tokenizer.source() << ": " << texts[i];
    EXPECT_EQ(std::vector<std::int64_t>(e.attention_mask.begin(), e.attention_mask.end()),
              std::vector<std::int64_t>(mask.begin() + row, mask.begin() + row + length));
  }
}

TEST(TokenizerBundledReference, VocabTxtMatchesHuggingFace) {
  expect_matches_reference(test::bert_tokenizer());
}

TEST(TokenizerBundledReference, BundledModelTokenizerJsonMatchesHuggingFace) {
  const auto folder = test::repo_path("models/sentiment-distilbert");
  if (!std::filesystem::exists(folder / "tokenizer.json")) GTEST_SKIP() << folder << " not present";
  const text::Tokenizer tokenizer = text::load_tokenizer(folder);
  EXPECT_EQ(tokenizer.source(), (folder / "tokenizer.json").string());
  expect_matches_reference(tokenizer);
}

}  // namespace
}  // namespace eaq
