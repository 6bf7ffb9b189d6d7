// Which files a tokenizer comes from, the settings beside them, and the errors for bad files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "text_test_support.hpp"

namespace eaq::text {
namespace {

using Ids = std::vector<std::int32_t>;
using eaq::test::TempDir;
using eaq::test::write_file;
using nlohmann::json;

// Expects `action` to throw eaq::Error whose message contains every one of `parts`.
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

const char* kSmallVocab =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nHello\nworld\ncafe\ncaf\u00e9\n##s\n\u4e2d\u6587\n";

// A WordPiece tokenizer.json over the small vocabulary (ids as in kSmallVocab).
json small_wordpiece_json() {
  json vocab = json::object();
  const std::vector<std::string> tokens = {"[PAD]",  "[UNK]",     "[CLS]", "[SEP]",
                                           "[MASK]", "hello",     "Hello", "world",
                                           "cafe",   "caf\u00e9", "##s"};
  for (std::size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  const auto special = [](int id, const char* content) {
    return json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  return json{
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]")}},
      {"normalizer",
       {{"type", "BertNormalizer"},
        {"clean_text", true},
        {"handle_chinese_chars", true},
        {"strip_accents", nullptr},
        {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor",
       {{"type", "BertProcessing"}, {"sep", {"[SEP]", 3}}, {"cls", {"[CLS]", 2}}}},
      {"decoder", nullptr},
      {"model",
       {{"type", "WordPiece"},
        {"unk_token", "[UNK]"},
        {"continuing_subword_prefix", "##"},
        {"max_input_chars_per_word", 100},
        {"vocab", vocab}}}};
}

TEST(TokenizerLoader, TokenizerJsonWinsOverClassicFiles) {
  TempDir dir;
  write_file(dir.path() / "vocab.txt", "[UNK]\n[CLS]\n[SEP]\nhello\n");  // different ids on purpose
  write_file(dir.path() / "tokenizer.json", small_wordpiece_json().dump());
  const Tokenizer tokenizer = load_tokenizer(dir.path());
  EXPECT_EQ(tokenizer.source(), (dir.path() / "tokenizer.json").string());
  EXPECT_EQ(tokenizer.encode("Hello worlds").ids, (Ids{2, 5, 7, 10, 3}));
  EXPECT_EQ(tokenizer.pad_token_id(), std::nullopt);  // neither padding nor a config names one
  // The file itself can be given too.
  EXPECT_EQ(load_tokenizer(dir.path() / "tokenizer.json").encode("hello").ids, (Ids{2, 5, 3}));
}

TEST(TokenizerLoader, TokenizerJsonTemplateAddedTokensAndMergesForms) {
  TempDir dir;
  json root = small_wordpiece_json();
  root["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
               {"Sequence": {"id": "B", "type_id": 1}}],
      "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                         "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}})");
  // [MASK] with lstrip takes the space before it; a normalized added token matches lower-case.
  root["added_tokens"].push_back(json{{"id", 4},
                                      {"content", "[MASK]"},
                                      {"lstrip", true},
                                      {"rstrip", false},
                                      {"normalized", false},
                                      {"special", true}});
  root["added_tokens"].push_back(
      json{{"id", 11}, {"content", "NEW"}, {"normalized", true}, {"special", false}});
  root["padding"] = json{{"pad_token", "[PAD]"}, {"pad_id", 0}};
  write_file(dir.path() / "tokenizer.json", root.dump());
  const Tokenizer tokenizer = load_tokenizer(dir.path());
  EXPECT_EQ(tokenizer.encode("hello [MASK]").ids, (Ids{2, 5, 4}));
  EXPECT_EQ(tokenizer.encode("Hello new").ids, (Ids{2, 5, 11}));
  EXPECT_EQ(tokenizer.encode_pair("hello", "world").type_ids, (Ids{0, 0, 1}));
  EXPECT_EQ(tokenizer.vocab_size(), 12);
  EXPECT_EQ(tokenizer.pad_token_id(), 0);

  // A BPE model with merges as "a b" strings and as ["a", "b"] pairs gives the same ids.
  const json vocab = {{"a", 0}, {"b", 1}, {"ab", 2}, {"\u0120", 3}, {"\u0120a", 4}};
  json bpe = {
      {"added_tokens", json::array()},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}, {"trim_offsets", false}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "\u0120 a"}}}}};
  write_file(dir.path() / "bpe1" / "tokenizer.json", bpe.dump());
  bpe["model"]["merges"] = json::array({json::array({"a", "b"}), json::array({"\u0120", "a"})});
  write_file(dir.path() / "bpe2" / "tokenizer.json", bpe.dump());
  for (const char* name : {"bpe1", "bpe2"}) {
    EXPECT_EQ(load_tokenizer(dir.path() / name).encode("ab a").ids, (Ids{2, 4})) << name;
  }
  bpe["pre_tokenizer"]["add_prefix_space"] = true;
  write_file(dir.path() / "bpe3" / "tokenizer.json", bpe.dump());
  EXPECT_EQ(load_tokenizer(dir.path() / "bpe3").encode("a").ids, (Ids{4}));
}

TEST(TokenizerLoader, TokenizerConfigWinsOverTokenizerJsonAsInTransformers) {
  TempDir dir;
  json root = small_wordpiece_json();
  root["normalizer"] = json{{"type", "Sequence"}, {"normalizers", {root["normalizer"]}}};
  write_file(dir.path() / "tokenizer.json", root.dump());
  EXPECT_EQ(load_tokenizer(dir.path()).encode("Hello").ids, (Ids{2, 5, 3}));  // lower-cased
  write_file(dir.path() / "tokenizer_config.json", R"({"do_lower_case": false})");
  EXPECT_EQ(load_tokenizer(dir.path()).encode("Hello").ids, (Ids{2, 6, 3}));  // cased
}

TEST(TokenizerLoader, ClassicWordPieceReadsTokenizerConfig) {
  TempDir dir;
  write_file(dir.path() / "vocab.txt", kSmallVocab);
  // Defaults (no config): lower-case, strip accents, split CJK, no model_max_length.
  Tokenizer tokenizer = load_tokenizer(dir.path());
  EXPECT_EQ(tokenizer.encode("Hello Caf\u00e9").ids, (Ids{2, 5, 8, 3}));
  EXPECT_EQ(tokenizer.encode("\u4e2d\u6587").ids, (Ids{2, 1, 1, 3}));
  EXPECT_EQ(tokenizer.model_max_length(), std::nullopt);

  write_file(dir.path() / "tokenizer_config.json",
             R"({"do_lower_case": false, "tokenize_chinese_chars": false,
                 "model_max_length": 1000000000000000019884624838656,
                 "unk_token": {"content": "[UNK]", "__type": "AddedToken"}})");
  tokenizer = load_tokenizer(dir.path());
  EXPECT_EQ(tokenizer.encode("Hello caf\u00e9").ids, (Ids{2, 6, 9, 3}));  // cased, accents kept
  EXPECT_EQ(tokenizer.encode("\u4e2d\u6587").ids, (Ids{2, 11, 3}));       // CJK not split
  EXPECT_EQ(tokenizer.model_max_length(), std::nullopt);                  // "no limit"

  write_file(dir.path() / "tokenizer_config.json",
             R"({"do_lower_case": true, "strip_accents": false, "model_max_length": 64})");
  tokenizer = load_tokenizer(dir.path());
  EXPECT_EQ(tokenizer.encode("CAF\u00c9").ids, (Ids{2, 9, 3}));  // lower-cased, accent kept
  EXPECT_EQ(tokenizer.model_max_length(), 64u);
}

TEST(TokenizerLoader, ModelTypeHintAndMissingFiles) {
  TempDir dir;
  expect_error([&] { load_tokenizer(dir.path() / "nope"); }, {"does not exist"});
  expect_error([&] { load_tokenizer(dir.path()); }, {"no tokenizer files"});

  write_file(dir.path() / "config.json", R"({"model_type": "gpt2"})");
  write_file(dir.path() / "vocab.txt", kSmallVocab);
  expect_error([&] { load_tokenizer(dir.path()); },
               {"model_type 'gpt2'", "vocab.json + merges.txt"});
  write_file(dir.path() / "config.json", R"({"model_type": "roberta"})");
  expect_error([&] { load_tokenizer(dir.path()); }, {"model_type 'roberta'", "tokenizer.json"});
  write_file(dir.path() / "config.json", R"({"model_type": "distilbert"})");
  EXPECT_EQ(load_tokenizer(dir.path()).model_kind(), "wordpiece");

  // Both kinds of classic files and nothing to choose between them.
  std::filesystem::remove(dir.path() / "config.json");
  write_file(dir.path() / "vocab.json", R"({"a": 0})");
  write_file(dir.path() / "merges.txt", "#version: 0.2\n");
  expect_error([&] { load_tokenizer(dir.path()); }, {"both vocab.txt and vocab.json"});
}

TEST(TokenizerLoader, BadClassicFilesNameFileAndLine) {
  TempDir dir;
  write_file(dir.path() / "vocab.json", R"({"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3})");
  write_file(dir.path() / "merges.txt", "#version: 0.2\na b\nab\n");
  expect_error([&] { load_tokenizer(dir.path()); }, {"merges.txt:3", "two tokens"});
  write_file(dir.path() / "merges.txt", "a c\n");
  expect_error([&] { load_tokenizer(dir.path()); }, {"not in the vocabulary"});
  write_file(dir.path() / "merges.txt", "a b\n");
  EXPECT_EQ(load_tokenizer(dir.path()).encode("ab").ids, (Ids{2}));
  write_file(dir.path() / "vocab.json", R"({"a": "zero"})");
  expect_error([&] { load_tokenizer(dir.path()); }, {"vocab.json", "'a'", "not an integer"});
  write_file(dir.path() / "vocab.json", R"({"a": 0,)");
  expect_error([&] { load_tokenizer(dir.path()); }, {"vocab.json", "malformed JSON"});

  TempDir wordpiece;
  write_file(wordpiece.path() / "vocab.txt", "[UNK]\n[CLS]\n[SEP]\nbad\xFF\n");
  expect_error([&] { load_tokenizer(wordpiece.path()); }, {"vocab.txt:4", "invalid UTF-8"});
  write_file(wordpiece.path() / "vocab.txt", "[CLS]\n[SEP]\nhello\n");
  expect_error([&] { load_tokenizer(wordpiece.path()); }, {"'[UNK]' is not in the vocabulary"});
}

TEST(TokenizerLoader, UnsupportedTokenizerJsonIsRefusedByName) {
  TempDir dir;
  json root = small_wordpiece_json();
  root["normalizer"] = json{{"type", "NFKC"}};
  write_file(dir.path() / "tokenizer.json", root.dump());
  expect_error([&] { load_tokenizer(dir.path()); }, {"tokenizer.json", "normalizer 'NFKC'"});
  root = small_wordpiece_json();
  root["model"]["type"] = "Unigram";
  write_file(dir.path() / "tokenizer.json", root.dump());
  expect_error([&] { load_tokenizer(dir.path()); }, {"model type 'Unigram'"});
  root = small_wordpiece_json();
  root["pre_tokenizer"] = json{{"type", "Metaspace"}};
  write_file(dir.path() / "tokenizer.json", root.dump());
  expect_error([&] { load_tokenizer(dir.path()); }, {"pre-tokenizer 'Metaspace'"});
  root = small_wordpiece_json();
  root["model"].erase("vocab");
  write_file(dir.path() / "tokenizer.json", root.dump());
  expect_error([&] { load_tokenizer(dir.path()); }, {"'vocab' is missing"});
}

}  // namespace
}  // namespace eaq::text
