#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <vector>

#include "core/build_info.hpp"
#include "core/error.hpp"
#include "fake_gpu_meter.hpp"
#include "measure/energy.hpp"
#include "measure/system_info.hpp"
#include "report/csv_writer.hpp"
#include "report/json_writer.hpp"
#include "report/result_fill.hpp"

namespace eaq::report {
namespace {

double number(const Result& r, std::string_view name) {
  return std::get<double>(r.at(name).value);
}

TEST(ResultFill, Latency) {
  Result r = Result::from_schema();
  const std::vector<double> latencies = {0.004, 0.002, 0.003, 0.003};
  fill_latency(r, latencies, 0.012, 128);
  EXPECT_DOUBLE_EQ(number(r, "mean_latency"), 0.003);
  EXPECT_NEAR(number(r, "std_latency"), 0.000707106781, 1e-9);  // population
  EXPECT_DOUBLE_EQ(number(r, "min_latency"), 0.002);
  EXPECT_DOUBLE_EQ(number(r, "max_latency"), 0.004);
  EXPECT_DOUBLE_EQ(number(r, "median_latency"), 0.003);
  EXPECT_NEAR(number(r, "p99_latency"), 0.00397, 1e-12);
  EXPECT_NEAR(number(r, "throughput"), 128 / 0.012, 1e-6);
  EXPECT_EQ(std::get<std::int64_t>(r.at("num_inferences").value), 128);
  EXPECT_THROW(fill_latency(r, std::vector<double>{}, 1, 1), Error);
  EXPECT_THROW(fill_latency(r, latencies, 0, 1), Error);
}

TEST(ResultFill, EnergyFromAGoodRun) {
  measure::EnergyInputs in;
  in.t0_s = 0;
  in.t1_s = 2;
  in.num_inferences = 500;
  in.counter = measure::nvml_energy_delta(10'000, 210'000);  // 200 J
  in.counter_update_period_s = 0.1;
  std::vector<measure::TimedValue> samples;
  for (int i = 0; i <= 40; ++i) samples.push_back({i * 0.05, i % 2 == 0 ? 90.0 : 110.0});
  in.power_samples_w = measure::Reading<std::vector<measure::TimedValue>>::ok(samples);
  in.idle_power_w = measure::Reading<double>::ok(60);
  Result r = Result::from_schema();
  fill_energy(r, measure::compute_energy(in));
  EXPECT_DOUBLE_EQ(number(r, "total_energy_j"), 200);
  EXPECT_DOUBLE_EQ(number(r, "energy_per_inference_j"), 0.4);
  EXPECT_DOUBLE_EQ(number(r, "energy_per_inference_mj"), 400);
  EXPECT_DOUBLE_EQ(number(r, "inferences_per_joule"), 2.5);
  EXPECT_DOUBLE_EQ(number(r, "dynamic_energy_j"), 80);
  EXPECT_DOUBLE_EQ(number(r, "dynamic_energy_per_inference_mj"), 160);
  EXPECT_DOUBLE_EQ(number(r, "idle_power_w"), 60);
  EXPECT_NEAR(number(r, "mean_power_w"), 100 - 10.0 / 41, 1e-9);  // 21 x 90 W, 20 x 110 W
  EXPECT_DOUBLE_EQ(number(r, "min_power_w"), 90);
  EXPECT_DOUBLE_EQ(number(r, "max_power_w"), 110);
  EXPECT_EQ(std::get<std::int64_t>(r.at("num_power_samples").value), 41);
  EXPECT_NEAR(number(r, "energy_from_samples_j"), 200, 1e-9);
  EXPECT_DOUBLE_EQ(number(r, "energy_window_s"), 2);
  EXPECT_DOUBLE_EQ(number(r, "energy_counter_update_period_ms"), 100);
  EXPECT_EQ(std::get<std::string>(r.at("energy_source").value), "nvml_counter");
  EXPECT_EQ(std::get<std::string>(r.at("energy_quality").value), "ok");
  EXPECT_EQ(std::get<std::string>(r.at("energy_quality_notes").value), "");
}

TEST(ResultFill, CpuRunWithoutEnergyIsNullWithReasonsNeverZero) {
  measure::EnergyInputs in;
  in.t0_s = 0;
  in.t1_s = 1;
  in.num_inferences = 10;
  in.counter.joules = measure::Reading<double>::unavailable(
      "RAPL unavailable: /sys/class/powercap does not exist (no powercap on this machine)");
  in.counter_source = "rapl";
  in.power_samples_w = measure::Reading<std::vector<measure::TimedValue>>::unavailable(
      "no GPU power samples on a CPU run");
  in.idle_power_w = measure::Reading<double>::unavailable("no idle baseline on a CPU run");
  Result r = Result::from_schema();
  fill_energy(r, measure::compute_energy(in));
  for (const char* name : {"total_energy_j", "energy_per_inference_j", "energy_per_inference_mj",
                           "inferences_per_joule", "mean_power_w", "num_power_samples",
                           "idle_power_w", "dynamic_energy_per_inference_mj"}) {
    EXPECT_TRUE(r.at(name).is_null()) << name;
    EXPECT_FALSE(r.at(name).unavailable_reason.empty()) << name;
  }
  EXPECT_NE(r.at("total_energy_j").unavailable_reason.find("RAPL unavailable"), std::string::npos);
  EXPECT_EQ(std::get<std::string>(r.at("energy_quality").value), "no_energy_source");
  const nlohmann::json doc = nlohmann::json::parse(to_json(r));
  EXPECT_TRUE(doc["metrics"]["energy_per_inference_mj"].is_null());
  EXPECT_TRUE(doc["unavailable_reasons"].contains("energy_per_inference_mj"));
}

TEST(ResultFill, SystemAtStartAndEnd) {
  const auto meter = eaq::test::FakeGpuMeter::constant(80, 0.1);
  measure::SystemSnapshot start = measure::take_system_snapshot(meter);
  measure::SystemSnapshot end = start;
  end.timestamp_utc = "2099-01-01T00:00:00.000Z";
  end.gpu.temperature_c = measure::Reading<std::uint32_t>::ok(63);
  end.gpu.sm_clock_mhz = measure::Reading<std::uint32_t>::unavailable("read failed");
  Result r = Result::from_schema();
  fill_system(r, start, end);
  EXPECT_EQ(std::get<std::string>(r.at("gpu_name").value), "Fake GPU");
  EXPECT_EQ(std::get<std::int64_t>(r.at("gpu_index").value), 0);
  EXPECT_EQ(std::get<std::int64_t>(r.at("temperature_c_start").value), 41);
  EXPECT_EQ(std::get<std::int64_t>(r.at("temperature_c_end").value), 63);
  EXPECT_EQ(std::get<std::int64_t>(r.at("sm_clock_mhz_start").value), 1980);
  EXPECT_TRUE(r.at("sm_clock_mhz_end").is_null());
  EXPECT_EQ(r.at("sm_clock_mhz_end").unavailable_reason, "read failed");
  EXPECT_DOUBLE_EQ(number(r, "gpu_power_limit_w"), 700);
  EXPECT_DOUBLE_EQ(number(r, "gpu_memory_total_gb"), 80);
  EXPECT_EQ(std::get<std::string>(r.at("timestamp_end").value), "2099-01-01T00:00:00.000Z");
  EXPECT_EQ(std::get<std::string>(r.at("cuda_driver_version").value), "12.4");
  EXPECT_FALSE(r.at("hostname").is_null());
}

TEST(ResultFill, NoGpuSystem) {
  const measure::UnavailableGpuMeter meter("CPU run");
  const measure::SystemSnapshot snap = measure::take_system_snapshot(meter);
  Result r = Result::from_schema();
  fill_system(r, snap, snap);
  EXPECT_TRUE(r.at("gpu_index").is_null());
  EXPECT_EQ(r.at("gpu_name").unavailable_reason, "CPU run");
  EXPECT_TRUE(r.at("temperature_c_end").is_null());
  EXPECT_FALSE(r.at("cpu_model").is_null());
}

TEST(ResultFill, CommandLineAndBuild) {
  const char* argv[] = {"eaq", "measure", "--dataset", "my data", "--note", "it's", "--x=1"};
  EXPECT_EQ(join_command_line(7, argv), "eaq measure --dataset 'my data' --note 'it'\\''s' --x=1");
  Result r = Result::from_schema();
  fill_build_and_command(r, 7, argv);
  EXPECT_EQ(std::get<std::string>(r.at("git_commit").value), build_info().git_commit);
  EXPECT_EQ(std::get<std::string>(r.at("eaq_version").value), build_info().version);
  EXPECT_EQ(std::get<std::string>(r.at("command_line").value), join_command_line(7, argv));
}

}  // namespace
}  // namespace eaq::report
