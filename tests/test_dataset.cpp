// The dataset.safetensors format: writing, loading, validation; and tokenizing examples into it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/dataset.hpp"
#include "text/tokenize_dataset.hpp"
#include "text_test_support.hpp"

namespace eaq {
namespace {

using test::TempDir;

template <class F>
void expect_error(F action, std::initializer_list<std::string> parts) {
  try {
    action();
    ADD_FAILURE() << "expected an eaq::Error";
  } catch (const Error& e) {
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message: " << e.what() << "\nmissing: " << part;
    }
  }
}

DatasetTensors small_dataset() {
  DatasetTensors d;
  d.input_ids = HostTensor::from_i32({2, 3}, {101, 7592, 102, 101, 102, 0});
  d.attention_mask = HostTensor::from_i32({2, 3}, {1, 1, 1, 1, 1, 0});
  d.token_type_ids = HostTensor::from_i32({2, 3}, {0, 0, 0, 0, 0, 0});
  d.labels = HostTensor::empty(DType::I64, {2});
  d.labels->mutable_data<std::int64_t>()[0] = 1;
  d.metadata["tokenizer"] = "bert-base-uncased";
  return d;
}

TEST(Dataset, WritesAndLoadsBack) {
  TempDir dir;
  const auto path = write_dataset(dir.path() / "ds", small_dataset());
  EXPECT_EQ(path, dir.path() / "ds" / "dataset.safetensors");
  const Dataset dataset = Dataset::load(dir.path() / "ds", 30522);
  EXPECT_EQ(dataset.size(), 2);
  EXPECT_EQ(dataset.sequence_length(), 3);
  EXPECT_EQ(dataset.input_ids().data<std::int32_t>()[1], 7592);
  EXPECT_EQ(dataset.attention_mask().data<std::int32_t>()[5], 0);
  ASSERT_NE(dataset.token_type_ids(), nullptr);
  ASSERT_NE(dataset.labels(), nullptr);
  EXPECT_EQ(dataset.labels()->data<std::int64_t>()[0], 1);
  EXPECT_EQ(dataset.max_token_id(), 7592);
  EXPECT_EQ(dataset.metadata().at("tokenizer"), "bert-base-uncased");
  // The file can be named directly; the vocabulary check is optional.
  EXPECT_EQ(Dataset::load(path, std::nullopt).size(), 2);

  DatasetTensors unlabelled = small_dataset();
  unlabelled.labels.reset();
  unlabelled.token_type_ids.reset();
  write_dataset(dir.path() / "plain", unlabelled);
  const Dataset plain = Dataset::load(dir.path() / "plain", 8000);
  EXPECT_EQ(plain.labels(), nullptr);
  EXPECT_EQ(plain.token_type_ids(), nullptr);
}

TEST(Dataset, RefusesIdsOutsideTheModelsVocabulary) {
  TempDir dir;
  write_dataset(dir.path() / "ds", small_dataset());
  expect_error([&] { Dataset::load(dir.path() / "ds", 5000); },
               {"dataset.safetensors", "token id 7592", "example 0, position 1",
                "vocabulary of 5000", "'bert-base-uncased'"});
  EXPECT_NO_THROW(Dataset::load(dir.path() / "ds", 7593));
}

TEST(Dataset, RefusesMalformedTensors) {
  TempDir dir;
  DatasetTensors d = small_dataset();
  d.attention_mask = HostTensor::from_i32({2, 3}, {1, 1, 2, 1, 1, 0});
  expect_error([&] { write_dataset(dir.path() / "a", d); },
               {"attention_mask holds 2", "example 0, position 2"});
  d = small_dataset();
  d.attention_mask = HostTensor::from_i32({3, 2}, {1, 1, 1, 1, 1, 0});
  expect_error([&] { write_dataset(dir.path() / "b", d); }, {"attention_mask has shape [3, 2]"});
  d = small_dataset();
  d.input_ids = HostTensor::from_i32({2, 3}, {101, -5, 102, 101, 102, 0});
  expect_error([&] { write_dataset(dir.path() / "c", d); }, {"negative id -5"});
  d = small_dataset();
  d.labels->mutable_data<std::int64_t>()[1] = -1;
  expect_error([&] { write_dataset(dir.path() / "d", d); }, {"label -1 of example 1"});
  d = small_dataset();
  d.token_type_ids = HostTensor::from_f32({2, 3}, {0, 0, 0, 0, 0, 0});
  expect_error([&] { write_dataset(dir.path() / "e", d); },
               {"token_type_ids must be I32, not F32"});

  // Files written by something else: wrong dtype, unknown or missing tensors.
  const HostTensor ids64 = HostTensor::empty(DType::I64, {2, 3});
  write_safetensors((dir.path() / "f.safetensors").string(),
                    {{"input_ids", ids64}, {"attention_mask", small_dataset().attention_mask}});
  expect_error([&] { Dataset::load(dir.path() / "f.safetensors", 100); },
               {"f.safetensors", "input_ids must be I32, not I64"});
  write_safetensors((dir.path() / "g.safetensors").string(),
                    {{"input_ids", small_dataset().input_ids},
                     {"attention_mask", small_dataset().attention_mask},
                     {"label", HostTensor::empty(DType::I64, {2})}});
  expect_error([&] { Dataset::load(dir.path() / "g.safetensors", 30522); },
               {"unexpected tensor 'label'"});
  write_safetensors((dir.path() / "h.safetensors").string(),
                    {{"input_ids", small_dataset().input_ids}});
  expect_error([&] { Dataset::load(dir.path() / "h.safetensors", 30522); },
               {"needs input_ids and attention_mask"});
  expect_error([&] { Dataset::load(dir.path() / "nothing", 30522); }, {"not found"});
}

TEST(TokenizeDataset, EncodesPadsTruncatesAndRecords) {
  const text::Tokenizer& bert = test::bert_tokenizer();
  const std::vector<TextExample> examples = {{"hello world", 1, 2},
                                             {"one two three four five six seven", 0, 3}};
  text::DatasetSource source;
  source.path = "in.tsv";
  source.sha256 = "abc";
  source.format = "tsv";
  source.text_column = "sentence";
  source.label_column = "label";
  source.examples_in_file = 9;
  source.selection = "all";
  const text::TokenizedDataset d =
      text::tokenize_dataset(bert, examples, source, 6, {"negative", "positive"});
  const DatasetTensors& t = d.tensors;
  EXPECT_EQ(t.input_ids.shape(), (Shape{2, 6}));
  const std::int32_t* ids = t.input_ids.data<std::int32_t>();
  EXPECT_EQ(std::vector<std::int32_t>(ids, ids + 6),
            (std::vector<std::int32_t>{101, 7592, 2088, 102, 0, 0}));
  EXPECT_EQ(std::vector<std::int32_t>(ids + 6, ids + 12),
            (std::vector<std::int32_t>{101, 2028, 2048, 2093, 2176, 102}));
  const std::int32_t* mask = t.attention_mask.data<std::int32_t>();
  EXPECT_EQ(std::vector<std::int32_t>(mask, mask + 6),
            (std::vector<std::int32_t>{1, 1, 1, 1, 0, 0}));
  ASSERT_TRUE(t.token_type_ids.has_value());
  ASSERT_TRUE(t.labels.has_value());
  EXPECT_EQ(t.labels->data<std::int64_t>()[0], 1);
  EXPECT_EQ(d.truncated, 1u);
  EXPECT_EQ(d.longest, 9u);
  EXPECT_EQ(t.metadata.at("truncated_examples"), "1");
  EXPECT_EQ(t.metadata.at("num_examples"), "2");
  EXPECT_EQ(t.metadata.at("vocab_size"), "30522");
  EXPECT_EQ(t.metadata.at("tokenizer"), "bert-base-uncased");
  EXPECT_EQ(t.metadata.at("tokenizer_kind"), "wordpiece");
  EXPECT_EQ(t.metadata.at("pad_token"), "[PAD]");
  EXPECT_EQ(t.metadata.at("max_length"), "6");
  EXPECT_EQ(t.metadata.at("source_sha256"), "abc");
  EXPECT_EQ(nlohmann::json::parse(t.metadata.at("label_names")),
            nlohmann::json({"negative", "positive"}));
  EXPECT_EQ(nlohmann::json::parse(t.metadata.at("label_counts")),
            nlohmann::json({{"0", 1}, {"1", 1}}));
  EXPECT_EQ(t.metadata.at("created_by").rfind("eaq ", 0), 0u);

  expect_error([&] { text::tokenize_dataset(bert, examples, source, 6, {"only-one"}); },
               {"in.tsv:2", "label 1 has no name"});
  expect_error([&] { text::tokenize_dataset(bert, examples, source, 513, {}); },
               {"--max-length 513", "model_max_length 512"});
  expect_error(
      [&] {
        text::tokenize_dataset(bert, {{"bad \xFF", 0, 7}}, source, 6, {});
      },
      {"in.tsv:7", "invalid UTF-8"});
}

TEST(TokenizeDataset, Gpt2PadsWithEndOfTextAndHasNoTokenTypes) {
  text::DatasetSource source;
  source.path = "in.txt";
  source.format = "text";
  const text::TokenizedDataset d = text::tokenize_dataset(
      test::gpt2_tokenizer(), {{"Hello world", std::nullopt, 1}}, source, 4, {});
  const std::int32_t* ids = d.tensors.input_ids.data<std::int32_t>();
  EXPECT_EQ(std::vector<std::int32_t>(ids, ids + 4),
            (std::vector<std::int32_t>{15496, 995, 50256, 50256}));
  const std::int32_t* mask = d.tensors.attention_mask.data<std::int32_t>();
  EXPECT_EQ(std::vector<std::int32_t>(mask, mask + 4), (std::vector<std::int32_t>{1, 1, 0, 0}));
  EXPECT_FALSE(d.tensors.token_type_ids.has_value());
  EXPECT_FALSE(d.tensors.labels.has_value());
  EXPECT_EQ(d.tensors.metadata.at("pad_token"), "<|endoftext|>");
  EXPECT_EQ(d.tensors.metadata.count("label_counts"), 0u);
}

}  // namespace
}  // namespace eaq
