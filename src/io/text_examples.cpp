#include "io/text_examples.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "text/unicode.hpp"

namespace eaq {

namespace fs = std::filesystem;
using nlohmann::json;

std::string_view text_format_name(TextFormat format) {
  switch (format) {
    case TextFormat::Tsv:
      return "tsv";
    case TextFormat::Csv:
      return "csv";
    case TextFormat::Jsonl:
      return "jsonl";
    case TextFormat::PlainText:
      return "text";
  }
  return "text";
}

TextFormat text_format_from_extension(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (extension == ".tsv") return TextFormat::Tsv;
  if (extension == ".csv") return TextFormat::Csv;
  if (extension == ".jsonl" || extension == ".ndjson") return TextFormat::Jsonl;
  return TextFormat::PlainText;
}

std::optional<TextFormat> parse_text_format(const std::string& name) {
  if (name == "auto") return std::nullopt;
  if (name == "tsv") return TextFormat::Tsv;
  if (name == "csv") return TextFormat::Csv;
  if (name == "jsonl") return TextFormat::Jsonl;
  if (name == "text") return TextFormat::PlainText;
  fail("unknown input format '{}' (auto, tsv, csv, jsonl or text)", name);
}

namespace {

struct Line {
  std::string text;
  std::size_t number;
};

// The file's bytes, checked for UTF-8 (the error gives line and column), a leading byte-order
// mark removed.
std::string read_utf8_file(const fs::path& path) {
  EAQ_CHECK(fs::is_regular_file(path), "input file {} does not exist or is not a file",
            path.string());
  std::ifstream in(path, std::ios::binary);
  EAQ_CHECK(in.good(), "cannot open {}", path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  std::string bytes = std::move(buffer).str();
  if (bytes.rfind("\xEF\xBB\xBF", 0) == 0) bytes.erase(0, 3);
  if (const auto bad = text::find_invalid_utf8(bytes)) {
    const std::size_t line =
        1 + static_cast<std::size_t>(
                std::count(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(*bad), '\n'));
    const std::size_t line_start = bytes.rfind('\n', *bad == 0 ? 0 : *bad - 1);
    const std::size_t column =
        line_start == std::string::npos || *bad == 0 ? *bad + 1 : *bad - line_start;
    fail("{}:{}: invalid UTF-8 at column {} (byte 0x{:02X}); the input must be UTF-8 text",
         path.string(), line, column, static_cast<unsigned char>(bytes[*bad]));
  }
  EAQ_CHECK(bytes.find_first_not_of(" \t\r\n") != std::string::npos, "{} is empty", path.string());
  return bytes;
}

// '\n'-separated lines, '\r' before '\n' dropped. Blank lines at the end of the file are dropped;
// other empty lines are kept for the caller to judge.
std::vector<Line> split_lines(const std::string& bytes) {
  std::vector<Line> lines;
  std::size_t start = 0;
  std::size_t number = 1;
  while (start < bytes.size()) {
    std::size_t end = bytes.find('\n', start);
    if (end == std::string::npos) end = bytes.size();
    std::string text = bytes.substr(start, end - start);
    if (!text.empty() && text.back() == '\r') text.pop_back();
    lines.push_back({std::move(text), number++});
    start = end + 1;
  }
  while (!lines.empty() && lines.back().text.find_first_not_of(" \t") == std::string::npos) {
    lines.pop_back();
  }
  return lines;
}

std::int64_t parse_label(const std::string& field, const fs::path& path, std::size_t line,
                         const std::string& column) {
  const bool digits =
      !field.empty() && field.size() <= 18 &&
      std::all_of(field.begin(), field.end(), [](char c) { return c >= '0' && c <= '9'; });
  EAQ_CHECK(digits, "{}:{}: label '{}' in column '{}' is not a non-negative integer", path.string(),
            line, field, column);
  return std::stoll(field);
}

// Splits one CSV record starting at `pos` (RFC 4180 quoting); advances `pos` past it and counts
// the lines it spans.
std::vector<std::string> next_csv_record(const std::string& bytes, std::size_t& pos,
                                         std::size_t& line, const fs::path& path) {
  std::vector<std::string> fields;
  std::string field;
  const std::size_t start_line = line;
  bool quoted = false;
  bool field_was_quoted = false;
  while (pos < bytes.size()) {
    const char c = bytes[pos];
    if (quoted) {
      if (c == '"') {
        if (pos + 1 < bytes.size() && bytes[pos + 1] == '"') {
          field.push_back('"');
          pos += 2;
          continue;
        }
        quoted = false;
        ++pos;
        const char next = pos < bytes.size() ? bytes[pos] : '\n';
        EAQ_CHECK(next == ',' || next == '\n' || next == '\r',
                  "{}:{}: unexpected '{}' after a closing quote", path.string(), line, next);
        continue;
      }
      if (c == '\n') ++line;
      field.push_back(c);
      ++pos;
      continue;
    }
    if (c == '"' && field.empty() && !field_was_quoted) {
      quoted = true;
      field_was_quoted = true;
      ++pos;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
      field_was_quoted = false;
      ++pos;
    } else if (c == '\n' || (c == '\r' && pos + 1 < bytes.size() && bytes[pos + 1] == '\n')) {
      pos += c == '\r' ? 2 : 1;
      ++line;
      fields.push_back(std::move(field));
      return fields;
    } else {
      EAQ_CHECK(c != '"',
                "{}:{}: a quote inside an unquoted field (quote the whole field and "
                "double the quote)",
                path.string(), line);
      field.push_back(c);
      ++pos;
    }
  }
  EAQ_CHECK(!quoted, "{}:{}: a quoted field is never closed", path.string(), start_line);
  fields.push_back(std::move(field));
  return fields;
}

struct Table {
  std::vector<std::string> header;
  std::vector<std::pair<std::vector<std::string>, std::size_t>> rows;  // fields, line
};

Table read_table(const std::string& bytes, TextFormat format, const fs::path& path) {
  Table table;
  if (format == TextFormat::Tsv) {
    std::vector<Line> lines = split_lines(bytes);
    const auto split_tabs = [](const std::string& text) {
      std::vector<std::string> fields;
      std::size_t start = 0;
      while (true) {
        const std::size_t tab = text.find('\t', start);
        fields.push_back(
            text.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
        if (tab == std::string::npos) break;
        start = tab + 1;
      }
      return fields;
    };
    table.header = split_tabs(lines.front().text);
    for (std::size_t i = 1; i < lines.size(); ++i) {
      EAQ_CHECK(!lines[i].text.empty(), "{}:{}: empty line in a TSV file", path.string(),
                lines[i].number);
      table.rows.emplace_back(split_tabs(lines[i].text), lines[i].number);
    }
  } else {
    std::size_t pos = 0;
    std::size_t line = 1;
    table.header = next_csv_record(bytes, pos, line, path);
    while (pos < bytes.size()) {
      const std::size_t start_line = line;
      std::vector<std::string> fields = next_csv_record(bytes, pos, line, path);
      if (fields.size() == 1 && fields[0].empty()) {
        EAQ_CHECK(bytes.find_first_not_of("\r\n", pos) == std::string::npos,
                  "{}:{}: empty line in a CSV file", path.string(), start_line);
        break;
      }
      table.rows.emplace_back(std::move(fields), start_line);
    }
  }
  for (std::size_t i = 0; i < table.header.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      EAQ_CHECK(table.header[i] != table.header[j], "{}:1: column '{}' appears twice in the header",
                path.string(), table.header[i]);
    }
  }
  return table;
}

std::string describe_columns(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "'" : ", '") + name + "'";
  return out;
}

// The column to use: the one named, or the first default present (nullopt if none is).
std::optional<std::string> choose_column(const std::string& named,
                                         std::initializer_list<const char*> defaults,
                                         const std::vector<std::string>& available) {
  const auto has = [&](const std::string& name) {
    return std::find(available.begin(), available.end(), name) != available.end();
  };
  if (!named.empty()) return has(named) ? std::optional<std::string>(named) : std::nullopt;
  for (const char* name : defaults) {
    if (has(name)) return std::string(name);
  }
  return std::nullopt;
}

TextExamples read_tabular(const std::string& bytes, TextFormat format, const fs::path& path,
                          const TextColumns& columns) {
  const Table table = read_table(bytes, format, path);
  TextExamples result;
  result.format = format;
  const auto text_column = choose_column(columns.text, {"sentence", "text"}, table.header);
  EAQ_CHECK(text_column.has_value(), "{}:1: no text column {} in the header (columns: {})",
            path.string(), columns.text.empty() ? "'sentence' or 'text'" : "'" + columns.text + "'",
            describe_columns(table.header));
  const auto label_column = choose_column(columns.label, {"label"}, table.header);
  EAQ_CHECK(label_column.has_value() || columns.label.empty(),
            "{}:1: no label column '{}' in the header (columns: {})", path.string(), columns.label,
            describe_columns(table.header));
  result.text_column = *text_column;
  result.label_column = label_column.value_or("");
  const auto index_of = [&](const std::string& name) {
    return static_cast<std::size_t>(std::find(table.header.begin(), table.header.end(), name) -
                                    table.header.begin());
  };
  const std::size_t text_index = index_of(*text_column);
  const std::size_t label_index = label_column ? index_of(*label_column) : 0;
  for (const auto& [fields, line] : table.rows) {
    EAQ_CHECK(fields.size() == table.header.size(),
              "{}:{}: {} fields, but the header has {} (a ragged row{})", path.string(), line,
              fields.size(), table.header.size(),
              format == TextFormat::Tsv ? "; is there a tab inside the text?" : "");
    TextExample example;
    example.text = fields[text_index];
    example.line = line;
    if (label_column) example.label = parse_label(fields[label_index], path, line, *label_column);
    result.examples.push_back(std::move(example));
  }
  return result;
}

std::string json_keys(const json& object) {
  std::vector<std::string> keys;
  for (const auto& item : object.items()) keys.push_back(item.key());
  return describe_columns(keys);
}

TextExamples read_jsonl(const std::string& bytes, const fs::path& path,
                        const TextColumns& columns) {
  TextExamples result;
  result.format = TextFormat::Jsonl;
  std::vector<std::string> first_keys;
  for (const Line& line : split_lines(bytes)) {
    EAQ_CHECK(!line.text.empty(), "{}:{}: empty line in a JSONL file", path.string(), line.number);
    json record;
    try {
      record = json::parse(line.text);
    } catch (const json::exception& e) {
      fail("{}:{}: not valid JSON: {}", path.string(), line.number, e.what());
    }
    EAQ_CHECK(record.is_object(), "{}:{}: expected a JSON object per line", path.string(),
              line.number);
    if (result.examples.empty()) {  // the first record decides the keys
      for (const auto& item : record.items()) first_keys.push_back(item.key());
      const auto text_key = choose_column(columns.text, {"sentence", "text"}, first_keys);
      EAQ_CHECK(text_key.has_value(), "{}:{}: no text key {} (keys: {})", path.string(),
                line.number,
                columns.text.empty() ? "'sentence' or 'text'" : "'" + columns.text + "'",
                json_keys(record));
      const auto label_key = choose_column(columns.label, {"label"}, first_keys);
      EAQ_CHECK(label_key.has_value() || columns.label.empty(),
                "{}:{}: no label key '{}' (keys: {})", path.string(), line.number, columns.label,
                json_keys(record));
      result.text_column = *text_key;
      result.label_column = label_key.value_or("");
    }
    EAQ_CHECK(record.contains(result.text_column), "{}:{}: no '{}' key (keys: {})", path.string(),
              line.number, result.text_column, json_keys(record));
    const json& text = record[result.text_column];
    EAQ_CHECK(text.is_string(), "{}:{}: '{}' must be a string", path.string(), line.number,
              result.text_column);
    TextExample example;
    example.text = text.get<std::string>();
    example.line = line.number;
    const std::string label_key = result.labelled() ? result.label_column : std::string("label");
    if (result.labelled()) {
      EAQ_CHECK(record.contains(label_key), "{}:{}: no '{}' key, but the first record has one",
                path.string(), line.number, label_key);
      const json& label = record[label_key];
      EAQ_CHECK(label.is_number_integer() && label.get<std::int64_t>() >= 0,
                "{}:{}: label {} in key '{}' is not a non-negative integer", path.string(),
                line.number, label.dump(), label_key);
      example.label = label.get<std::int64_t>();
    } else {
      EAQ_CHECK(!record.contains(label_key),
                "{}:{}: has a '{}' key, but the first record has none; label every record or none",
                path.string(), line.number, label_key);
    }
    result.examples.push_back(std::move(example));
  }
  return result;
}

TextExamples read_plain_text(const std::string& bytes) {
  TextExamples result;
  result.format = TextFormat::PlainText;
  for (Line& line : split_lines(bytes)) {
    if (line.text.find_first_not_of(" \t") == std::string::npos) {
      ++result.blank_lines_skipped;
      continue;
    }
    result.examples.push_back({std::move(line.text), std::nullopt, line.number});
  }
  return result;
}

}  // namespace

TextExamples read_text_examples(const fs::path& path, TextFormat format,
                                const TextColumns& columns) {
  const std::string bytes = read_utf8_file(path);
  TextExamples result;
  switch (format) {
    case TextFormat::Tsv:
    case TextFormat::Csv:
      result = read_tabular(bytes, format, path, columns);
      break;
    case TextFormat::Jsonl:
      result = read_jsonl(bytes, path, columns);
      break;
    case TextFormat::PlainText:
      EAQ_CHECK(columns.label.empty(), "{}: plain text has no label column ('{}' was asked for)",
                path.string(), columns.label);
      result = read_plain_text(bytes);
      break;
  }
  EAQ_CHECK(!result.examples.empty(), "{}: no examples (only a header?)", path.string());
  return result;
}

}  // namespace eaq
