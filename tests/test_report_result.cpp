#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <set>
#include <string>

#include "core/error.hpp"
#include "measure/reading.hpp"
#include "report/result.hpp"
#include "report/schema.hpp"
#include "seed_metric_names.hpp"

namespace eaq::report {
namespace {

TEST(ResultSchema, NamesAreUniqueAndGroupedBySection) {
  std::set<std::string_view> names;
  int last_section = 0;
  for (const FieldSpec& spec : result_schema()) {
    EXPECT_TRUE(names.insert(spec.name).second) << "duplicate field " << spec.name;
    EXPECT_GE(static_cast<int>(spec.section), last_section) << spec.name << " is out of its group";
    last_section = static_cast<int>(spec.section);
    EXPECT_FALSE(spec.description.empty()) << spec.name;
  }
}

TEST(ResultSchema, HasEverySeedMetricWithTheSeedUnit) {
  for (const auto& seed : eaq::test::kSeedMetrics) {
    const FieldSpec* spec = find_field_spec(seed.name);
    ASSERT_NE(spec, nullptr) << "seed metric missing: " << seed.name;
    EXPECT_EQ(spec->section, Section::Metrics) << seed.name;
    EXPECT_EQ(spec->unit, seed.unit) << seed.name;
  }
}

TEST(ResultSchema, HasTheFieldsBeyondTheSeed) {
  for (const char* name : {"p95_latency",
                           "p99_latency",
                           "idle_power_w",
                           "dynamic_energy_per_inference_mj",
                           "energy_from_samples_j",
                           "energy_from_samples_per_inference_mj",
                           "energy_counter_update_period_ms",
                           "energy_quality",
                           "energy_source",
                           "gpu_name",
                           "gpu_uuid",
                           "driver_version",
                           "cuda_driver_version",
                           "sm_clock_mhz_start",
                           "sm_clock_mhz_end",
                           "mem_clock_mhz_start",
                           "mem_clock_mhz_end",
                           "temperature_c_start",
                           "temperature_c_end",
                           "cpu_model",
                           "git_commit",
                           "command_line",
                           "timestamp"}) {
    EXPECT_NE(find_field_spec(name), nullptr) << name;
  }
  EXPECT_EQ(find_field_spec("no_such_field"), nullptr);
}

TEST(Result, StartsAsTheSchemaAllNotMeasured) {
  const Result r = Result::from_schema();
  ASSERT_EQ(r.fields().size(), result_schema().size());
  for (const Field& f : r.fields()) {
    EXPECT_TRUE(f.is_null()) << f.name;
    EXPECT_EQ(f.unavailable_reason, "not measured");
  }
  EXPECT_EQ(r.at("mean_latency").unit, "s");
}

TEST(Result, SetsEachKindOfValue) {
  Result r = Result::from_schema();
  r.set("mean_latency", 0.00125);
  r.set("num_correct", 871);
  r.set("num_parameters", std::uint64_t{66'955'010});
  r.set("no_warmup", false);
  r.set("dtype", "float16");
  r.set("precision", std::string("fp16"));
  EXPECT_EQ(std::get<double>(r.at("mean_latency").value), 0.00125);
  EXPECT_EQ(std::get<std::int64_t>(r.at("num_correct").value), 871);
  EXPECT_EQ(std::get<std::int64_t>(r.at("num_parameters").value), 66'955'010);
  EXPECT_EQ(std::get<bool>(r.at("no_warmup").value), false);
  EXPECT_EQ(std::get<std::string>(r.at("dtype").value), "float16");
  EXPECT_TRUE(r.at("dtype").unavailable_reason.empty());
}

TEST(Result, UnavailableCarriesItsReason) {
  Result r = Result::from_schema();
  r.set("total_energy_j", measure::Reading<double>::unavailable("NVML unavailable: no driver"));
  EXPECT_TRUE(r.at("total_energy_j").is_null());
  EXPECT_EQ(r.at("total_energy_j").unavailable_reason, "NVML unavailable: no driver");
  r.set("total_energy_j", measure::Reading<double>::ok(12.5));
  EXPECT_EQ(std::get<double>(r.at("total_energy_j").value), 12.5);
  EXPECT_TRUE(r.at("total_energy_j").unavailable_reason.empty());
  r.set("mean_power_w", std::numeric_limits<double>::quiet_NaN());
  EXPECT_TRUE(r.at("mean_power_w").is_null());
  EXPECT_NE(r.at("mean_power_w").unavailable_reason.find("not a finite number"), std::string::npos);
  r.set("sm_clock_mhz_start", measure::Reading<std::uint32_t>::ok(1980));
  EXPECT_EQ(std::get<std::int64_t>(r.at("sm_clock_mhz_start").value), 1980);
}

TEST(Result, UnknownNamesAreErrors) {
  Result r = Result::from_schema();
  EXPECT_THROW(r.set("mean_latncy", 1.0), Error);
  EXPECT_THROW(r.at("mean_latncy"), Error);
  EXPECT_THROW(r.set("num_parameters", std::numeric_limits<std::uint64_t>::max()), Error);
}

TEST(Result, ExtraFieldsStayInTheirSection) {
  Result r = Result::from_schema();
  r.add(Section::Metadata, "seq_len", "tokens", std::int64_t{128});
  r.add(Section::Metrics, "tokens_per_s", "tokens/s", 1.5e6);
  EXPECT_THROW(r.add(Section::Metrics, "mean_latency", "s", 1.0), Error);
  // Order: ... last metric, tokens_per_s, metadata ..., seq_len, configuration ...
  const auto& f = r.fields();
  std::size_t seq_len = 0, tokens = 0, first_config = 0, first_metadata = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i].name == "seq_len") seq_len = i;
    if (f[i].name == "tokens_per_s") tokens = i;
    if (first_config == 0 && f[i].section == Section::Configuration) first_config = i;
    if (first_metadata == 0 && f[i].section == Section::Metadata) first_metadata = i;
  }
  EXPECT_EQ(seq_len + 1, first_config);
  EXPECT_EQ(tokens + 1, first_metadata);
  r.set("seq_len", 256);
  EXPECT_EQ(std::get<std::int64_t>(r.at("seq_len").value), 256);
}

TEST(Result, FormatValue) {
  EXPECT_EQ(format_value(std::monostate{}), "");
  EXPECT_EQ(format_value(true), "true");
  EXPECT_EQ(format_value(std::int64_t{-42}), "-42");
  EXPECT_EQ(format_value(0.1), "0.1");  // shortest form that reads back exactly
  EXPECT_EQ(std::stod(format_value(1.0 / 3.0)), 1.0 / 3.0);
  EXPECT_EQ(format_value(std::string("x,y")), "x,y");
}

}  // namespace
}  // namespace eaq::report
