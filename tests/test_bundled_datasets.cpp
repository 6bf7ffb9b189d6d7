// The datasets shipped in datasets/: they load, have the promised shape and balance, and are
// exactly what the current tokenizer makes from their source file (scripts/make_datasets.sh).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "core/sha256.hpp"
#include "io/dataset.hpp"
#include "io/example_selection.hpp"
#include "text/tokenize_dataset.hpp"
#include "text_test_support.hpp"

namespace eaq {
namespace {

struct Bundled {
  const char* name;
  std::size_t size;
  const char* source = "data/sentiment/imdb.tsv";
};

class BundledDataset : public ::testing::TestWithParam<Bundled> {};

bool same_bytes(const HostTensor& a, const HostTensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST_P(BundledDataset, LoadsAndMatchesTheCurrentTokenizer) {
  const Bundled& bundled = GetParam();
  const Dataset dataset = Dataset::load(test::repo_path("datasets") / bundled.name, 30522);
  EXPECT_EQ(static_cast<std::size_t>(dataset.size()), bundled.size);
  EXPECT_EQ(dataset.sequence_length(), 128);
  ASSERT_NE(dataset.labels(), nullptr);
  ASSERT_NE(dataset.token_type_ids(), nullptr);
  std::int64_t positives = 0;
  for (std::int64_t label : dataset.labels()->to_i64()) positives += label;
  EXPECT_EQ(static_cast<std::size_t>(positives) * 2, bundled.size) << "not balanced";
  const auto& meta = dataset.metadata();
  EXPECT_EQ(meta.at("tokenizer"), "bert-base-uncased");
  EXPECT_EQ(meta.at("source_file"), bundled.source);
  EXPECT_EQ(meta.at("source_sha256"), sha256_file_hex(test::repo_path(bundled.source)));
  EXPECT_EQ(meta.at("truncated_examples"), "0");
  EXPECT_EQ(meta.at("label_names"), R"(["negative","positive"])");

  // Rebuild it as scripts/make_datasets.sh does; every tensor must be identical.
  const TextExamples examples =
      read_text_examples(test::repo_path(bundled.source), TextFormat::Tsv, {});
  SelectionOptions selection;
  selection.shuffle_seed = 0;
  selection.balance = true;
  selection.limit = bundled.size;
  text::DatasetSource source;
  source.path = bundled.source;
  source.label_column = "label";
  const text::TokenizedDataset rebuilt =
      text::tokenize_dataset(test::bert_tokenizer(), select_examples(examples.examples, selection),
                             source, 128, {"negative", "positive"});
  const char* hint = "out of date: run scripts/make_datasets.sh and commit datasets/";
  EXPECT_TRUE(same_bytes(dataset.input_ids(), rebuilt.tensors.input_ids)) << hint;
  EXPECT_TRUE(same_bytes(dataset.attention_mask(), rebuilt.tensors.attention_mask)) << hint;
  EXPECT_TRUE(same_bytes(*dataset.token_type_ids(), *rebuilt.tensors.token_type_ids)) << hint;
  EXPECT_TRUE(same_bytes(*dataset.labels(), *rebuilt.tensors.labels)) << hint;
}

INSTANTIATE_TEST_SUITE_P(
    Sentiment, BundledDataset,
    ::testing::Values(Bundled{"sentiment-small", 50}, Bundled{"sentiment-standard", 500},
                      Bundled{"sentiment-large", 1000},
                      // int8-static calibration: training-distribution
                      // sentences, never the imdb test sentences.
                      Bundled{"sentiment-calibration", 256, "data/sentiment/yelp.tsv"}),
    [](const ::testing::TestParamInfo<Bundled>& param_info) {
      std::string name = param_info.param.name;
      name.erase(0, name.find('-') + 1);
      return name;
    });

TEST(BundledDatasets, AreNested) {
  const auto rows = [](const char* name) {
    const Dataset dataset = Dataset::load(test::repo_path("datasets") / name, std::nullopt);
    std::set<std::vector<std::int32_t>> out;
    const std::int32_t* ids = dataset.input_ids().data<std::int32_t>();
    for (std::int64_t i = 0; i < dataset.size(); ++i) {
      out.emplace(ids + i * dataset.sequence_length(), ids + (i + 1) * dataset.sequence_length());
    }
    return out;
  };
  const auto small = rows("sentiment-small");
  const auto standard = rows("sentiment-standard");
  const auto large = rows("sentiment-large");
  EXPECT_TRUE(std::includes(standard.begin(), standard.end(), small.begin(), small.end()));
  EXPECT_TRUE(std::includes(large.begin(), large.end(), standard.begin(), standard.end()));
}

}  // namespace
}  // namespace eaq
