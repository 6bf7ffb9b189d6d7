// Raw text examples for `eaq tokenize`: TSV or CSV with a header row (GLUE's SST-2 dev.tsv as it
// is: `sentence<TAB>label`), JSONL (one object per line: {"text": ..., "label": ...}), or plain
// text (one unlabelled example per line). Every problem is reported with the file and line.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace eaq {

enum class TextFormat { Tsv, Csv, Jsonl, PlainText };

// "tsv", "csv", "jsonl", "text".
std::string_view text_format_name(TextFormat format);
// From the extension: .tsv, .csv, .jsonl/.ndjson; anything else is plain text.
TextFormat text_format_from_extension(const std::filesystem::path& path);
// Parses "auto" (nullopt), "tsv", "csv", "jsonl", "text"; throws eaq::Error otherwise.
std::optional<TextFormat> parse_text_format(const std::string& name);

struct TextExample {
  std::string text;                   // valid UTF-8
  std::optional<std::int64_t> label;  // set for every example of a labelled file, never otherwise
  std::size_t line = 0;               // 1-based line where the example starts
};

struct TextColumns {
  // Empty: the default. Text: "sentence" if the file has it, else "text". Label: "label" if the
  // file has it, else the examples are unlabelled. A column named here must exist.
  std::string text;
  std::string label;
};

struct TextExamples {
  std::vector<TextExample> examples;
  TextFormat format = TextFormat::PlainText;
  std::string text_column;              // the column or key used ("" for plain text)
  std::string label_column;             // "" when unlabelled
  std::size_t blank_lines_skipped = 0;  // plain text only
  bool labelled() const { return !label_column.empty(); }
};

// Reads the examples. Errors (eaq::Error, naming file and line): an unreadable or empty file,
// bytes that are not UTF-8, a missing column or key, a row with a different number of fields
// than the header, a label that is not a non-negative integer, a file with no examples.
TextExamples read_text_examples(const std::filesystem::path& path, TextFormat format,
                                const TextColumns& columns = {});

}  // namespace eaq
