// `eaq tokenize` end to end: the built binary, its exit codes and messages.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/dataset.hpp"
#include "text_test_support.hpp"

namespace eaq {
namespace {

using test::repo_path;
using test::run_eaq;
using test::TempDir;
using test::write_file;

const std::string kBert = repo_path("data/tokenizers/bert-base-uncased").string();
const std::string kGpt2 = repo_path("data/tokenizers/gpt2").string();

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE((haystack).find(needle), std::string::npos) << "output:\n" << (haystack)

TEST(TokenizeCommand, PrintsIdsOfOneText) {
  auto result = run_eaq({"tokenize", "--tokenizer", kBert, "--text", "hello world"});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "[101,7592,2088,102]\n");
  result = run_eaq({"tokenize", "--tokenizer", kGpt2, "--text", "Hello world"});
  EXPECT_EQ(result.output, "[15496,995]\n");
}

TEST(TokenizeCommand, GlueTsvBecomesADatasetTheLoaderAccepts) {
  TempDir dir;
  // GLUE SST-2 dev.tsv layout: header `sentence<TAB>label`, tokenized-looking text.
  write_file(dir.path() / "dev.tsv",
             "sentence\tlabel\n"
             "it 's a charming and often affecting journey . \t1\n"
             "unflinchingly bleak and desperate \t0\n"
             "allows us to hope that nolan is poised to embark a major career as a commercial yet "
             "inventive filmmaker . \t1\n");
  const auto out = dir.path() / "sst2";
  const auto result = run_eaq({"tokenize", "--tokenizer", kBert, "--input",
                               (dir.path() / "dev.tsv").string(), "--output", out.string(),
                               "--max-length", "16", "--label-names", "negative,positive"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "3 examples");
  EXPECT_CONTAINS(result.output, "1 of 3 examples truncated");  // the third is longer than 16
  EXPECT_CONTAINS(result.output, "0 (negative) 1, 1 (positive) 2");

  const Dataset dataset = Dataset::load(out, 30522);
  EXPECT_EQ(dataset.size(), 3);
  EXPECT_EQ(dataset.sequence_length(), 16);
  ASSERT_NE(dataset.labels(), nullptr);
  EXPECT_EQ(dataset.labels()->to_i64(), (std::vector<std::int64_t>{1, 0, 1}));
  ASSERT_NE(dataset.token_type_ids(), nullptr);
  const auto expected = test::bert_tokenizer().encode("unflinchingly bleak and desperate ").ids;
  const std::int32_t* row = dataset.input_ids().data<std::int32_t>() + 16;
  EXPECT_EQ(std::vector<std::int32_t>(row, row + expected.size()), expected);
  EXPECT_EQ(row[expected.size()], 0);  // [PAD]
  const auto& meta = dataset.metadata();
  EXPECT_EQ(meta.at("truncated_examples"), "1");
  EXPECT_EQ(meta.at("source_format"), "tsv");
  EXPECT_EQ(meta.at("source_sha256").size(), 64u);
  EXPECT_EQ(meta.at("label_names"), R"(["negative","positive"])");

  // A model with a smaller vocabulary than the tokenizer's refuses it.
  try {
    Dataset::load(out, 2000);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_CONTAINS(std::string(e.what()), "does not fit the model's vocabulary of 2000");
  }
}

TEST(TokenizeCommand, Gpt2DatasetDoesNotFitABertVocabulary) {
  TempDir dir;
  write_file(dir.path() / "lines.txt",
             "Hello world, this is GPT-2.\nA second line with rare words: zyzzyva\n");
  const auto out = dir.path() / "lm";
  const auto result =
      run_eaq({"tokenize", "--tokenizer", kGpt2, "--input", (dir.path() / "lines.txt").string(),
               "--output", out.string(), "--max-length", "32"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NO_THROW(Dataset::load(out, 50257));
  EXPECT_THROW(Dataset::load(out, 30522), Error);
}

TEST(TokenizeCommand, IdsOutWritesOneArrayPerLine) {
  TempDir dir;
  write_file(dir.path() / "texts.jsonl",
             "{\"text\": \"hello world\"}\n{\"text\": \"Caf\\u00e9\"}\n{\"text\": \"\"}\n");
  const auto ids = dir.path() / "ids.jsonl";
  const auto result = run_eaq({"tokenize", "--tokenizer", kBert, "--input",
                               (dir.path() / "texts.jsonl").string(), "--ids-out", ids.string()});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(test::read_text(ids), "[101,7592,2088,102]\n[101,7668,102]\n[101,102]\n");
}

TEST(TokenizeCommand, SelectionFlags) {
  const auto input = repo_path("data/sentiment/imdb.tsv").string();
  TempDir dir;
  const auto result =
      run_eaq({"tokenize", "--tokenizer", kBert, "--input", input, "--output",
               (dir.path() / "d").string(), "--limit", "10", "--balance", "--shuffle-seed", "3"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "0 5, 1 5");
  const Dataset dataset = Dataset::load(dir.path() / "d", 30522);
  EXPECT_EQ(dataset.size(), 10);
  EXPECT_EQ(dataset.metadata().at("selection"), "shuffle seed 3, balanced, first 10");
  EXPECT_EQ(dataset.metadata().at("source_examples"), "1000");
}

struct BadInput {
  const char* name;
  const char* file;
  const char* bytes;
  std::vector<std::string> expected;  // parts of the message
};

class TokenizeCommandBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(TokenizeCommandBadInput, FailsWithFileAndLine) {
  const BadInput& bad = GetParam();
  TempDir dir;
  const auto input = dir.path() / bad.file;
  write_file(input, bad.bytes);
  const auto result = run_eaq({"tokenize", "--tokenizer", kBert, "--input", input.string(),
                               "--output", (dir.path() / "out").string()});
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_CONTAINS(result.output, "eaq: error: ");
  for (const std::string& part : bad.expected) EXPECT_CONTAINS(result.output, part);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "out" / "dataset.safetensors"));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TokenizeCommandBadInput,
    ::testing::Values(BadInput{"non_utf8",
                               "a.tsv",
                               "sentence\tlabel\ngood\t1\nna\xEFve\t0\n",
                               {"a.tsv:3", "invalid UTF-8"}},
                      BadInput{"missing_column",
                               "b.tsv",
                               "review\tlabel\ngood\t1\n",
                               {"b.tsv:1", "no text column"}},
                      BadInput{"label_not_integer",
                               "c.tsv",
                               "sentence\tlabel\ngood\tpositive\n",
                               {"c.tsv:2", "label 'positive'", "not a non-negative integer"}},
                      BadInput{"empty_file", "d.tsv", "", {"d.tsv", "is empty"}},
                      BadInput{"ragged_row",
                               "e.tsv",
                               "sentence\tlabel\ngood\t1\nbad\t0\textra\n",
                               {"e.tsv:3", "3 fields, but the header has 2"}},
                      BadInput{"jsonl_missing_key",
                               "f.jsonl",
                               "{\"text\": \"a\", \"label\": 1}\n{\"label\": 0}\n",
                               {"f.jsonl:2", "no 'text' key"}}),
    [](const ::testing::TestParamInfo<BadInput>& param_info) {
      return std::string(param_info.param.name);
    });

TEST(TokenizeCommand, FlagMistakesAreExplained) {
  auto result = run_eaq({"tokenize", "--tokenizer", kBert});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_CONTAINS(result.output, "exactly one of --text, --ids-out or --output");
  result = run_eaq({"tokenize", "--tokenizer", kBert, "--text", "x", "--limit", "3"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_CONTAINS(result.output, "--limit applies to --output only");
  result = run_eaq({"tokenize", "--tokenizer", "/nonexistent/tokenizer", "--text", "x"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_CONTAINS(result.output, "/nonexistent/tokenizer");
  result = run_eaq({"tokenize", "--tokenizer", kBert, "--input",
                    repo_path("data/sentiment/imdb.tsv").string(), "--output", "/tmp/unused",
                    "--max-length", "1024"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_CONTAINS(result.output, "model_max_length 512");
  result = run_eaq({"tokenize", "--help"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "--shuffle-seed");
  EXPECT_CONTAINS(result.output, ".jsonl");
}

}  // namespace
}  // namespace eaq
