// Exact parity with Hugging Face on tests/golden/tokenizer/ (made by
// tools/make_tokenizer_fixture.py on a machine with transformers). Every text must give exactly
// Hugging Face's ids, from the classic vocabulary files and from the saved tokenizer.json.
// Until the fixture is committed these tests skip.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/sha256.hpp"
#include "text_test_support.hpp"

namespace eaq::text {
namespace {

namespace fs = std::filesystem;
using eaq::test::read_text;
using eaq::test::repo_path;
using nlohmann::json;

fs::path golden(const std::string& name) {
  return repo_path("tests/golden/tokenizer") / name;
}

#define SKIP_WITHOUT_FIXTURE(file)                                                               \
  if (!fs::exists(golden(file)))                                                                 \
  GTEST_SKIP() << "tokenizer parity fixture " << golden(file).string()                           \
               << " not generated yet: run `python3 tools/make_tokenizer_fixture.py` where the " \
                  "transformers and tokenizers Python packages are installed, and commit "       \
                  "tests/golden/tokenizer/"

std::vector<std::string> jsonl_lines(const fs::path& path) {
  std::vector<std::string> lines;
  const std::string text = read_text(path);
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return lines;
}

std::vector<std::string> fixture_texts() {
  std::vector<std::string> texts;
  for (const std::string& line : jsonl_lines(golden("texts.jsonl"))) {
    texts.push_back(json::parse(line).at("text").get<std::string>());
  }
  return texts;
}

std::string describe(const std::vector<std::int32_t>& ids) {
  return json(ids).dump();
}

// Compares the tokenizer's ids with the fixture's for every text; reports the first mismatches.
void expect_ids_match(const Tokenizer& tokenizer, const std::string& ids_file) {
  const std::vector<std::string> texts = fixture_texts();
  const std::vector<std::string> expected = jsonl_lines(golden(ids_file));
  ASSERT_EQ(expected.size(), texts.size()) << ids_file << " and texts.jsonl differ in length";
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto want = json::parse(expected[i]).get<std::vector<std::int32_t>>();
    const auto got = tokenizer.encode(texts[i]).ids;
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << tokenizer.source() << ", text " << i + 1 << ": " << json(texts[i]).dump()
                    << "\n  Hugging Face: " << describe(want)
                    << "\n  eaq:          " << describe(got);
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << texts.size() << " texts";
}

TEST(TokenizerParity, FixtureWasMadeFromTheseTexts) {
  SKIP_WITHOUT_FIXTURE("fixture_info.json");
  const json info = json::parse(read_text(golden("fixture_info.json")));
  EXPECT_EQ(info.at("texts_sha256").get<std::string>(), sha256_file_hex(golden("texts.jsonl")))
      << "texts.jsonl changed after the fixture was made: rerun tools/make_tokenizer_fixture.py";
  EXPECT_EQ(info.at("texts").get<std::size_t>(), fixture_texts().size());
}

TEST(TokenizerParity, BertFromVocabTxt) {
  SKIP_WITHOUT_FIXTURE("bert_ids.jsonl");
  expect_ids_match(eaq::test::bert_tokenizer(), "bert_ids.jsonl");
}

TEST(TokenizerParity, Gpt2FromVocabJsonAndMerges) {
  SKIP_WITHOUT_FIXTURE("gpt2_ids.jsonl");
  expect_ids_match(eaq::test::gpt2_tokenizer(), "gpt2_ids.jsonl");
}

TEST(TokenizerParity, BertFromTokenizerJson) {
  SKIP_WITHOUT_FIXTURE("bert/tokenizer.json");
  expect_ids_match(load_tokenizer(golden("bert/tokenizer.json")), "bert_ids.jsonl");
}

TEST(TokenizerParity, Gpt2FromTokenizerJson) {
  SKIP_WITHOUT_FIXTURE("gpt2/tokenizer.json");
  expect_ids_match(load_tokenizer(golden("gpt2/tokenizer.json")), "gpt2_ids.jsonl");
}

void expect_cases_match(const Tokenizer& tokenizer, const std::string& cases_file,
                        std::optional<std::int32_t> pad_id) {
  const std::vector<std::string> lines = jsonl_lines(golden(cases_file));
  ASSERT_FALSE(lines.empty());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const json c = json::parse(lines[i]);
    EncodeOptions options;
    options.max_length = c.at("max_length").get<std::size_t>();
    options.pad_to_max_length = true;
    options.pad_id = pad_id;
    const std::string text = c.at("text").get<std::string>();
    const Encoding e = c.at("pair").is_null()
                           ? tokenizer.encode(text, options)
                           : tokenizer.encode_pair(text, c.at("pair").get<std::string>(), options);
    const std::string where = cases_file + " line " + std::to_string(i + 1);
    EXPECT_EQ(e.ids, c.at("input_ids").get<std::vector<std::int32_t>>()) << where;
    EXPECT_EQ(e.attention_mask, c.at("attention_mask").get<std::vector<std::int32_t>>()) << where;
    EXPECT_EQ(e.type_ids, c.at("token_type_ids").get<std::vector<std::int32_t>>()) << where;
  }
}

TEST(TokenizerParity, BertTruncatedAndPadded) {
  SKIP_WITHOUT_FIXTURE("bert_cases.jsonl");
  expect_cases_match(eaq::test::bert_tokenizer(), "bert_cases.jsonl", std::nullopt);
}

TEST(TokenizerParity, Gpt2TruncatedAndPaddedWithEndOfText) {
  SKIP_WITHOUT_FIXTURE("gpt2_cases.jsonl");
  expect_cases_match(eaq::test::gpt2_tokenizer(), "gpt2_cases.jsonl", 50256);
}

}  // namespace
}  // namespace eaq::text
