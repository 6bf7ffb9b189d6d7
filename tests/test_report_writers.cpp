#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "report/csv_writer.hpp"
#include "report/json_writer.hpp"
#include "report/markdown_table.hpp"
#include "report/result.hpp"
#include "report/text_table.hpp"
#include "seed_metric_names.hpp"

namespace eaq::report {
namespace {

// An RFC 4180 reader (quoted cells, doubled quotes, line breaks inside quotes), as pandas reads it.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows(1);
  std::string cell;
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        cell += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cell += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().push_back(cell);
      cell.clear();
    } else if (c == '\n') {
      rows.back().push_back(cell);
      cell.clear();
      rows.emplace_back();
    } else {
      cell += c;
    }
  }
  if (rows.back().empty() && cell.empty()) rows.pop_back();
  return rows;
}

Result sample_result() {
  Result r = Result::from_schema();
  r.set("mean_latency", 0.0012345);
  r.set("throughput", 51234.5);
  r.set("num_correct", 871);
  r.set("accuracy", 0.871);
  r.set("dtype", "float16");
  r.set("no_warmup", false);
  r.set("command_line", "eaq measure --dataset \"my data, v2\"\n--precision fp16");
  r.set("cpu_model", " padded ");
  r.set_unavailable("total_energy_j", "NVML unavailable: cannot load libnvidia-ml.so.1");
  r.set("energy_quality", "window_too_short;counter_samples_disagree");
  return r;
}

TEST(CsvWriter, OneHeaderRowOneDataRowWithEverySeedColumn) {
  const Result r = sample_result();
  const auto rows = parse_csv(to_csv(r));
  ASSERT_EQ(rows.size(), 2u);
  ASSERT_EQ(rows[0].size(), r.fields().size());
  ASSERT_EQ(rows[1].size(), r.fields().size());
  for (const auto& seed : eaq::test::kSeedMetrics) {
    EXPECT_NE(std::find(rows[0].begin(), rows[0].end(), seed.name), rows[0].end()) << seed.name;
  }
  for (std::size_t i = 0; i < rows[0].size(); ++i) EXPECT_EQ(rows[0][i], r.fields()[i].name);
}

TEST(CsvWriter, ValuesRoundTrip) {
  const Result r = sample_result();
  const auto rows = parse_csv(to_csv(r));
  ASSERT_EQ(rows.size(), 2u);
  const auto cell = [&](std::string_view name) {
    const auto it = std::find(rows[0].begin(), rows[0].end(), name);
    return rows[1][static_cast<std::size_t>(it - rows[0].begin())];
  };
  EXPECT_EQ(std::stod(cell("mean_latency")), 0.0012345);
  EXPECT_EQ(cell("num_correct"), "871");
  EXPECT_EQ(cell("dtype"), "float16");
  EXPECT_EQ(cell("no_warmup"), "false");
  EXPECT_EQ(cell("command_line"), "eaq measure --dataset \"my data, v2\"\n--precision fp16");
  EXPECT_EQ(cell("cpu_model"), " padded ");
  EXPECT_EQ(cell("total_energy_j"), "");  // null -> empty cell (NaN in pandas)
  EXPECT_EQ(cell("energy_quality"), "window_too_short;counter_samples_disagree");
}

TEST(CsvWriter, QuotesOnlyWhenNeeded) {
  EXPECT_EQ(csv_cell("plain"), "plain");
  EXPECT_EQ(csv_cell("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_cell("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(csv_cell(" edge"), "\" edge\"");
  EXPECT_EQ(csv_cell(""), "");
}

TEST(JsonWriter, SectionsKeysNullsAndReasons) {
  const Result r = sample_result();
  const nlohmann::json doc = nlohmann::json::parse(to_json(r));
  EXPECT_EQ(doc.at("schema_version"), kJsonSchemaVersion);
  for (const char* section :
       {"metrics", "metadata", "configuration", "units", "unavailable_reasons"}) {
    ASSERT_TRUE(doc.contains(section)) << section;
  }
  for (const auto& seed : eaq::test::kSeedMetrics) {
    EXPECT_TRUE(doc["metrics"].contains(seed.name)) << seed.name;
  }
  EXPECT_EQ(doc["metrics"]["mean_latency"].get<double>(), 0.0012345);
  EXPECT_TRUE(doc["metrics"]["num_correct"].is_number_integer());
  EXPECT_EQ(doc["metrics"]["num_correct"], 871);
  EXPECT_EQ(doc["configuration"]["no_warmup"], false);
  EXPECT_EQ(doc["metadata"]["command_line"],
            "eaq measure --dataset \"my data, v2\"\n--precision fp16");
  EXPECT_TRUE(doc["metrics"]["total_energy_j"].is_null());
  EXPECT_EQ(doc["unavailable_reasons"]["total_energy_j"],
            "NVML unavailable: cannot load libnvidia-ml.so.1");
  EXPECT_FALSE(doc["unavailable_reasons"].contains("mean_latency"));
  EXPECT_EQ(doc["units"]["energy_per_inference_mj"], "mJ");
  // Every field appears exactly once, in its own section.
  std::size_t keys = 0;
  for (const char* section : {"metrics", "metadata", "configuration"}) keys += doc[section].size();
  EXPECT_EQ(keys, r.fields().size());
  // Indented for people.
  EXPECT_NE(to_json(r).find("\n  \"metrics\": {\n    \"mean_latency\""), std::string::npos);
}

TEST(JsonWriter, KeepsFieldOrder) {
  const Result r = sample_result();
  const nlohmann::ordered_json doc = nlohmann::ordered_json::parse(to_json(r));
  std::vector<std::string> order;
  for (const auto& [key, value] : doc["metrics"].items()) order.push_back(key);
  ASSERT_GE(order.size(), 3u);
  EXPECT_EQ(order[0], "mean_latency");
  EXPECT_EQ(order[1], "std_latency");
  EXPECT_EQ(order[2], "throughput");
}

TEST(TextTable, AlignedRowsWithUnitsAndReasons) {
  Result r = sample_result();
  const std::string_view names[] = {"mean_latency", "num_correct", "total_energy_j", "nope"};
  const std::string table = to_text_table(r, names);
  std::istringstream lines(table);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 3u);  // the unknown name is skipped
  EXPECT_EQ(rows[0], "  mean_latency    0.0012345 s");
  EXPECT_EQ(rows[1], "  num_correct     871 count");
  EXPECT_EQ(rows[2],
            "  total_energy_j  unavailable (NVML unavailable: cannot load libnvidia-ml.so.1)");
  // The default summary shows the headline metrics.
  const std::string summary = to_text_table(r);
  EXPECT_NE(summary.find("energy_per_inference_mj"), std::string::npos);
  EXPECT_NE(summary.find("throughput"), std::string::npos);
}

TEST(MarkdownTable, OneRowPerResult) {
  Result a = sample_result();
  a.set("precision", "fp32");
  a.set("mean_latency", 0.00123456);
  Result b = sample_result();
  b.set("precision", "int8|static");
  b.set("mean_latency", 0.000456789);
  const std::vector<Result> results = {a, b};
  const std::vector<std::string> columns = {"precision", "mean_latency", "total_energy_j",
                                            "missing"};
  const std::string table = to_markdown_table(results, columns);
  EXPECT_EQ(table,
            "| precision | mean_latency (s) | total_energy_j (J) | missing |\n"
            "|---|---|---|---|\n"
            "| fp32 | 0.001235 | unavailable | unavailable |\n"
            "| int8\\|static | 0.0004568 | unavailable | unavailable |\n");
}

}  // namespace
}  // namespace eaq::report
