// `eaq tokenize`: text -> token ids. Three modes:
//   --text "..."                         print the ids (with special tokens) as a JSON array
//   --input FILE --ids-out IDS.jsonl     one JSON array of ids per example (special tokens, no
//                                        padding or truncation), in input order
//   --input FILE --output DIR            a pre-tokenized dataset: DIR/dataset.safetensors
#include <fmt/format.h>

#include <fstream>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/text_examples.hpp"
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

int run_tokenize(const TokenizeOptions& options, CLI::App& app) {
  const bool text_mode = app.count("--text") > 0;
  const int modes =
      (text_mode ? 1 : 0) + (options.ids_out.empty() ? 0 : 1) + (options.output.empty() ? 0 : 1);
  EAQ_CHECK(modes == 1, "give exactly one of --text, --ids-out or --output (see --help)");
  if (text_mode) EAQ_CHECK(options.input.empty(), "--text and --input exclude each other");
  if (!text_mode) EAQ_CHECK(!options.input.empty(), "--ids-out and --output need --input FILE");

  const text::Tokenizer tokenizer = text::load_tokenizer(options.tokenizer);
  if (text_mode) {
    fmt::print("{}\n", ids_json(tokenizer.encode(options.text).ids));
    return 0;
  }

  const auto format =
      parse_text_format(options.format).value_or(text_format_from_extension(options.input));
  const TextExamples examples = read_text_examples(
      options.input, format, TextColumns{options.text_column, options.label_column});
  if (!options.ids_out.empty()) {
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
    fmt::print(stderr, "eaq tokenize: wrote the ids of {} examples to {}\n",
               examples.examples.size(), options.ids_out);
    return 0;
  }
  fail("--output is not implemented yet");
}

}  // namespace

Command tokenize_command() {
  return {"tokenize",
          "Turn text into token ids: inspect one text, or write a pre-tokenized dataset",
          [](CLI::App& app) {
            auto options = std::make_shared<TokenizeOptions>();
            app.add_option("--tokenizer", options->tokenizer,
                           "Tokenizer folder (tokenizer.json, or vocab.txt, or vocab.json + "
                           "merges.txt; tokenizer_config.json is read when present), or a "
                           "tokenizer.json file")
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
                           "Keep only the first N examples (after shuffling and balancing)");
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
