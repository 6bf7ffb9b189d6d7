// `eaq tokenize`: text -> token ids. Three modes:
//   --text "..."                         print the ids (with special tokens) as a JSON array
//   --input FILE --ids-out IDS.jsonl     one JSON array of ids per example (special tokens, no
//                                        padding or truncation), in input order
//   --input FILE --output DIR            a pre-tokenized dataset: DIR/dataset.safetensors
#include <fmt/format.h>

#include <fstream>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/sha256.hpp"
#include "io/dataset.hpp"
#include "io/example_selection.hpp"
#include "io/model_folder.hpp"
#include "io/text_examples.hpp"
#include "text/tokenize_dataset.hpp"
#include "text/tokenizer_loader.hpp"

namespace eaq::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string text;
  std::string input;
  std::string ids_out;
  std::string output;
  std::string format = "auto";
  std::size_t max_length = 128;
  std::string text_column;
  std::string label_column;
  std::size_t limit = 0;
  std::optional<std::uint64_t> shuffle_seed;
  bool balance = false;
  std::string label_names;
};

std::string ids_json(const std::vector<std::int32_t>& ids) {
  return fmt::format("[{}]", fmt::join(ids, ","));
}

// A tokenizer folder or tokenizer.json given as a path, else a hub name in the Hugging Face cache.
text::Tokenizer load_named_tokenizer(const std::string& name_or_path) {
  if (std::filesystem::exists(name_or_path)) return text::load_tokenizer(name_or_path);
  return text::load_tokenizer(resolve_model_path(name_or_path));
}

std::vector<std::string> parse_label_names(const std::string& list) {
  std::vector<std::string> names;
  if (list.empty()) return names;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = list.find(',', start);
    names.push_back(
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    EAQ_CHECK(!names.back().empty(), "--label-names '{}': a name is empty", list);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return names;
}

int write_ids(const text::Tokenizer& tokenizer, const TextExamples& examples,
              const TokenizeOptions& options) {
  std::ofstream out(options.ids_out, std::ios::binary | std::ios::trunc);
  EAQ_CHECK(out.good(), "cannot write {}", options.ids_out);
  for (const TextExample& example : examples.examples) {
    std::vector<std::int32_t> ids;
    try {
      ids = tokenizer.encode(example.text).ids;
    } catch (const Error& e) {
      fail("{}:{}: {}", options.input, example.line, e.what());
    }
    out << ids_json(ids) << '\n';
  }
  out.close();
  EAQ_CHECK(out.good(), "cannot write {}", options.ids_out);
  fmt::print(stderr, "eaq tokenize: wrote the ids of {} examples to {}\n", examples.examples.size(),
             options.ids_out);
  return 0;
}

int write_dataset_folder(const text::Tokenizer& tokenizer, TextExamples examples,
                         const TokenizeOptions& options) {
  const std::vector<std::string> label_names = parse_label_names(options.label_names);
  EAQ_CHECK(label_names.empty() || examples.labelled(),
            "--label-names given, but {} has no label column", options.input);
  SelectionOptions selection;
  selection.shuffle_seed = options.shuffle_seed;
  selection.balance = options.balance;
  selection.limit = options.limit;

  text::DatasetSource source;
  source.path = options.input;
  source.sha256 = sha256_file_hex(options.input);
  source.format = std::string(text_format_name(examples.format));
  source.text_column = examples.text_column;
  source.label_column = examples.label_column;
  source.examples_in_file = examples.examples.size();
  source.selection = describe_selection(selection);
  const std::vector<TextExample> selected =
      select_examples(std::move(examples.examples), selection);

  const text::TokenizedDataset dataset =
      text::tokenize_dataset(tokenizer, selected, source, options.max_length, label_names);
  const std::filesystem::path written = write_dataset(options.output, dataset.tensors);

  fmt::print("eaq tokenize: {} examples from {} ({}; {} in the file; selection: {})\n",
             selected.size(), options.input, source.format, source.examples_in_file,
             source.selection);
  if (examples.blank_lines_skipped > 0) {
    fmt::print("eaq tokenize: skipped {} blank lines\n", examples.blank_lines_skipped);
  }
  fmt::print(
      "eaq tokenize: tokenizer {} ({}, {} tokens), max length {}: {} of {} examples "
      "truncated (longest {} tokens)\n",
      tokenizer.name(), tokenizer.model_kind(), tokenizer.vocab_size(), options.max_length,
      dataset.truncated, selected.size(), dataset.longest);
  if (!dataset.label_counts.empty()) {
    std::vector<std::string> counts;
    for (const auto& [label, count] : dataset.label_counts) {
      const auto index = static_cast<std::size_t>(label);
      counts.push_back(index < label_names.size()
                           ? fmt::format("{} ({}) {}", label, label_names[index], count)
                           : fmt::format("{} {}", label, count));
    }
    fmt::print("eaq tokenize: labels: {}\n", fmt::join(counts, ", "));
  }
  fmt::print("eaq tokenize: wrote {}\n", written.string());
  return 0;
}

int run_tokenize(const TokenizeOptions& options, CLI::App& app) {
  const bool text_mode = app.count("--text") > 0;
  const int modes =
      (text_mode ? 1 : 0) + (options.ids_out.empty() ? 0 : 1) + (options.output.empty() ? 0 : 1);
  EAQ_CHECK(modes == 1, "give exactly one of --text, --ids-out or --output (see --help)");
  if (text_mode) EAQ_CHECK(options.input.empty(), "--text and --input exclude each other");
  if (!text_mode) EAQ_CHECK(!options.input.empty(), "--ids-out and --output need --input FILE");
  if (options.output.empty()) {
    for (const char* flag :
         {"--max-length", "--limit", "--shuffle-seed", "--balance", "--label-names"}) {
      EAQ_CHECK(app.count(flag) == 0, "{} applies to --output only", flag);
    }
  }

  const text::Tokenizer tokenizer = load_named_tokenizer(options.tokenizer);
  if (text_mode) {
    fmt::print("{}\n", ids_json(tokenizer.encode(options.text).ids));
    return 0;
  }
  const auto format =
      parse_text_format(options.format).value_or(text_format_from_extension(options.input));
  TextExamples examples = read_text_examples(
      options.input, format, TextColumns{options.text_column, options.label_column});
  if (!options.ids_out.empty()) return write_ids(tokenizer, examples, options);
  return write_dataset_folder(tokenizer, std::move(examples), options);
}

}  // namespace

Command tokenize_command() {
  return {
      "tokenize", "Turn text into token ids: inspect one text, or write a pre-tokenized dataset",
      [](CLI::App& app) {
        auto options = std::make_shared<TokenizeOptions>();
        app.add_option("--tokenizer", options->tokenizer,
                       "Tokenizer folder (tokenizer.json, or vocab.txt, or vocab.json + "
                       "merges.txt; tokenizer_config.json is read when present), a "
                       "tokenizer.json file, or a model name in the Hugging Face cache")
            ->required();
        app.add_option("--text", options->text,
                       "Print the ids of this text (special tokens included) as a JSON array");
        app.add_option("--input", options->input,
                       "Input file: .tsv/.csv with a header row, .jsonl (one JSON object per "
                       "line) or plain text (one unlabelled example per line)");
        app.add_option("--format", options->format,
                       "Input format: auto (from the extension), tsv, csv, jsonl or text");
        app.add_option("--ids-out", options->ids_out,
                       "Write one JSON array of ids per input example (special tokens, no "
                       "truncation or padding)");
        app.add_option("--output", options->output,
                       "Write a pre-tokenized dataset to this folder (dataset.safetensors)");
        app.add_option("--max-length", options->max_length,
                       "Dataset sequence length: longer examples are truncated (and counted), "
                       "shorter ones padded")
            ->check(CLI::PositiveNumber);
        app.add_option("--text-column", options->text_column,
                       "Column (TSV/CSV) or key (JSONL) of the text [default: 'sentence' if "
                       "present, else 'text']");
        app.add_option("--label-column", options->label_column,
                       "Column or key of the integer label [default: 'label' if present, "
                       "else the dataset is unlabelled]");
        app.add_option("--limit", options->limit,
                       "Keep only the first N examples, after shuffling and balancing (0: all)");
        app.add_option("--shuffle-seed", options->shuffle_seed,
                       "Shuffle the examples with this seed (deterministic) before --limit");
        app.add_flag("--balance", options->balance,
                     "Keep the same number of examples of every label (with --limit: "
                     "N / labels each)");
        app.add_option("--label-names", options->label_names,
                       "Comma-separated names of labels 0, 1, ... for the metadata, e.g. "
                       "negative,positive");
        return std::function<int()>([options, &app] { return run_tokenize(*options, app); });
      }};
}

}  // namespace eaq::cli
