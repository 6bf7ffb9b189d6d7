// Reading raw examples for `eaq tokenize`, and every bad input it must refuse with file and line.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "io/example_selection.hpp"
#include "io/text_examples.hpp"
#include "text_test_support.hpp"

namespace eaq {
namespace {

using test::TempDir;
using test::write_file;

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

TextExamples read(const TempDir& dir, const std::string& name, const std::string& bytes,
                  TextColumns columns = {}) {
  write_file(dir.path() / name, bytes);
  return read_text_examples(dir.path() / name, text_format_from_extension(name), columns);
}

TEST(TextExamples, GlueSst2TsvAsItIs) {
  TempDir dir;
  const TextExamples e =
      read(dir, "dev.tsv",
           "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n"
           "unflinchingly bleak and desperate \t0\n");
  ASSERT_EQ(e.examples.size(), 2u);
  EXPECT_EQ(e.examples[0].text, "it 's a charming and often affecting journey . ");
  EXPECT_EQ(e.examples[0].label, 1);
  EXPECT_EQ(e.examples[0].line, 2u);
  EXPECT_EQ(e.examples[1].label, 0);
  EXPECT_EQ(e.text_column, "sentence");
  EXPECT_EQ(e.label_column, "label");
  EXPECT_EQ(e.format, TextFormat::Tsv);
}

TEST(TextExamples, TsvColumnsByNameAnyOrderCrlfAndBom) {
  TempDir dir;
  const TextExamples e =
      read(dir, "x.tsv", "\xEF\xBB\xBFid\tlabel\ttext\r\n7\t1\thello\r\n8\t0\tbye\r\n\n");
  ASSERT_EQ(e.examples.size(), 2u);
  EXPECT_EQ(e.text_column, "text");  // no 'sentence' column: 'text'
  EXPECT_EQ(e.examples[1].text, "bye");
  EXPECT_EQ(e.examples[1].label, 0);
  const TextExamples unlabelled = read(dir, "y.tsv", "review\tscore\nfine\t5\n", {"review", ""});
  EXPECT_FALSE(unlabelled.labelled());  // no 'label' column and none asked for
  const TextExamples named = read(dir, "z.tsv", "review\tscore\nfine\t5\n", {"review", "score"});
  EXPECT_EQ(named.examples[0].label, 5);
}

TEST(TextExamples, CsvWithQuotes) {
  TempDir dir;
  const TextExamples e =
      read(dir, "x.csv",
           "text,label\n\"hello, world\",1\n\"she said \"\"hi\"\"\nthen left\",0\n"
           "plain,1\n");
  ASSERT_EQ(e.examples.size(), 3u);
  EXPECT_EQ(e.examples[0].text, "hello, world");
  EXPECT_EQ(e.examples[1].text, "she said \"hi\"\nthen left");
  EXPECT_EQ(e.examples[1].line, 3u);
  EXPECT_EQ(e.examples[2].line, 5u);
  expect_error([&] { read(dir, "bad.csv", "text,label\n\"never closed,1\n"); },
               {"bad.csv:2", "never closed"});
  expect_error([&] { read(dir, "bad2.csv", "text,label\nsay \"x\",1\n"); },
               {"bad2.csv:2", "quote"});
}

TEST(TextExamples, JsonlWithTextOrSentenceKeys) {
  TempDir dir;
  TextExamples e =
      read(dir, "x.jsonl",
           "{\"text\": \"caf\\u00e9\", \"label\": 1}\n{\"label\": 0, \"text\": \"b\"}\n");
  ASSERT_EQ(e.examples.size(), 2u);
  EXPECT_EQ(e.examples[0].text, "caf\u00e9");
  EXPECT_EQ(e.examples[1].label, 0);
  EXPECT_EQ(e.text_column, "text");
  e = read(dir, "y.jsonl", "{\"sentence\": \"a\", \"text\": \"other\"}\n");
  EXPECT_EQ(e.examples[0].text, "a");  // 'sentence' first, as for TSV
  EXPECT_FALSE(e.labelled());
  e = read(dir, "z.jsonl", "{\"review\": \"a\", \"stars\": 4}\n", {"review", "stars"});
  EXPECT_EQ(e.examples[0].label, 4);
  expect_error(
      [&] { read(dir, "k.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\", \"label\": 1}\n"); },
      {"k.jsonl:2", "label every record or none"});
  expect_error(
      [&] { read(dir, "m.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n"); },
      {"m.jsonl:2", "no 'label' key"});
  expect_error([&] { read(dir, "j.jsonl", "{\"text\": \"a\"}\n{\"text\": \n"); },
               {"j.jsonl:2", "not valid JSON"});
  expect_error([&] { read(dir, "s.jsonl", "{\"text\": 5}\n"); }, {"s.jsonl:1", "must be a string"});
}

TEST(TextExamples, PlainTextOneExamplePerLine) {
  TempDir dir;
  const TextExamples e = read(dir, "x.txt", "first line\n\nsecond\tline\n   \nthird\n\n\n");
  ASSERT_EQ(e.examples.size(), 3u);
  EXPECT_EQ(e.examples[1].text, "second\tline");
  EXPECT_EQ(e.examples[2].line, 5u);
  EXPECT_EQ(e.blank_lines_skipped, 2u);
  EXPECT_FALSE(e.labelled());
}

TEST(TextExamples, NonUtf8BytesAreRefusedWithLineAndColumn) {
  TempDir dir;
  expect_error([&] { read(dir, "x.tsv", "sentence\tlabel\ngood\t1\nbad \xFF byte\t0\n"); },
               {"x.tsv:3", "invalid UTF-8 at column 5", "0xFF"});
  expect_error([&] { read(dir, "y.txt", "caf\xE9\n"); }, {"y.txt:1", "invalid UTF-8"});  // Latin-1
}

TEST(TextExamples, MissingColumnsAreRefused) {
  TempDir dir;
  expect_error([&] { read(dir, "x.tsv", "review\tlabel\nfine\t1\n"); },
               {"x.tsv:1", "no text column 'sentence' or 'text'", "'review', 'label'"});
  expect_error(
      [&] {
        read(dir, "y.tsv", "sentence\tlabel\nfine\t1\n", {"", "polarity"});
      },
      {"y.tsv:1", "no label column 'polarity'"});
  expect_error([&] { read(dir, "z.jsonl", "{\"body\": \"a\"}\n"); },
               {"z.jsonl:1", "no text key", "'body'"});
  expect_error([&] { read(dir, "w.jsonl", "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n"); },
               {"w.jsonl:2", "no 'text' key"});
}

TEST(TextExamples, LabelsMustBeNonNegativeIntegers) {
  TempDir dir;
  for (const std::string label : {"positive", "1.0", "-1", "", " 1"}) {
    expect_error([&] { read(dir, "x.tsv", "sentence\tlabel\nok\t1\nbad\t" + label + "\n"); },
                 {"x.tsv:3", "label '" + label + "'", "not a non-negative integer"});
  }
  expect_error([&] { read(dir, "x.jsonl", "{\"text\": \"a\", \"label\": \"1\"}\n"); },
               {"x.jsonl:1", "not a non-negative integer"});
  expect_error([&] { read(dir, "y.jsonl", "{\"text\": \"a\", \"label\": 0.5}\n"); },
               {"y.jsonl:1", "not a non-negative integer"});
}

TEST(TextExamples, EmptyFilesAreRefused) {
  TempDir dir;
  expect_error([&] { read(dir, "x.tsv", ""); }, {"x.tsv", "is empty"});
  expect_error([&] { read(dir, "y.txt", "\n  \n"); }, {"y.txt", "is empty"});
  expect_error([&] { read(dir, "z.tsv", "sentence\tlabel\n"); }, {"z.tsv", "no examples"});
  expect_error([&] { read_text_examples(dir.path() / "missing.tsv", TextFormat::Tsv, {}); },
               {"missing.tsv", "does not exist"});
}

TEST(TextExamples, RaggedRowsAreRefused) {
  TempDir dir;
  expect_error([&] { read(dir, "x.tsv", "sentence\tlabel\nok\t1\ntab\tinside\t0\n"); },
               {"x.tsv:3", "3 fields, but the header has 2", "tab inside"});
  expect_error([&] { read(dir, "y.tsv", "sentence\tlabel\nno label\n"); },
               {"y.tsv:2", "1 fields, but the header has 2"});
  expect_error([&] { read(dir, "z.csv", "text,label\na,1,extra\n"); }, {"z.csv:2", "3 fields"});
  expect_error([&] { read(dir, "e.tsv", "sentence\tlabel\na\t1\n\nb\t0\n"); },
               {"e.tsv:3", "empty line"});
  expect_error([&] { read(dir, "d.tsv", "text\ttext\na\tb\n"); }, {"d.tsv:1", "appears twice"});
}

std::vector<TextExample> labelled_examples(const std::vector<std::int64_t>& labels) {
  std::vector<TextExample> examples;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    examples.push_back({"text " + std::to_string(i), labels[i], i + 2});
  }
  return examples;
}

std::vector<std::size_t> lines_of(const std::vector<TextExample>& examples) {
  std::vector<std::size_t> lines;
  for (const TextExample& e : examples) lines.push_back(e.line);
  return lines;
}

TEST(ExampleSelection, LimitShuffleAndBalance) {
  const auto examples = labelled_examples({0, 0, 0, 0, 1, 1, 0, 1});
  SelectionOptions options;
  EXPECT_EQ(lines_of(select_examples(examples, options)),
            (std::vector<std::size_t>{2, 3, 4, 5, 6, 7, 8, 9}));
  options.limit = 3;
  EXPECT_EQ(lines_of(select_examples(examples, options)), (std::vector<std::size_t>{2, 3, 4}));
  options.balance = true;
  expect_error([&] { select_examples(examples, options); }, {"multiple of the 2 labels"});
  options.limit = 4;  // two of each, in file order
  EXPECT_EQ(lines_of(select_examples(examples, options)), (std::vector<std::size_t>{2, 3, 6, 7}));
  options.limit = 0;  // as many as the rarest label allows
  EXPECT_EQ(select_examples(examples, options).size(), 6u);
  options.limit = 8;
  expect_error([&] { select_examples(examples, options); },
               {"label 1 has only 3 examples, 4 needed"});

  options = {};
  options.shuffle_seed = 7;
  const auto shuffled = lines_of(select_examples(examples, options));
  EXPECT_EQ(shuffled, lines_of(select_examples(examples, options)));  // deterministic
  EXPECT_NE(shuffled, lines_of(select_examples(examples, SelectionOptions{})));
  auto sorted = shuffled;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<std::size_t>{2, 3, 4, 5, 6, 7, 8, 9}));  // a permutation
  options.limit = 100;
  expect_error([&] { select_examples(examples, options); }, {"--limit 100", "only 8"});
  options = {};
  options.balance = true;
  std::vector<TextExample> unlabelled = {{"a", std::nullopt, 1}};
  expect_error([&] { select_examples(unlabelled, options); },
               {"--balance needs labelled examples"});
}

TEST(ExampleSelection, ShuffleIsPinnedAcrossPlatforms) {
  // mt19937_64 is fully specified; this order must never change (the bundled datasets depend on
  // it). Computed independently with a Python implementation of mt19937_64 and the same draws.
  std::vector<std::size_t> order = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  deterministic_shuffle(order, 0);
  std::vector<std::size_t> again = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  deterministic_shuffle(again, 0);
  EXPECT_EQ(order, again);
  std::vector<std::size_t> other = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  deterministic_shuffle(other, 1);
  EXPECT_NE(order, other);
  EXPECT_EQ(order, (std::vector<std::size_t>{7, 2, 0, 8, 3, 9, 6, 1, 5, 4}));
}

}  // namespace
}  // namespace eaq
