#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "core/error.hpp"
#include "measure/energy.hpp"

namespace eaq::measure {
namespace {

// --- Counter deltas ---------------------------------------------------------------------------

TEST(EnergyCounter, NvmlDeltaInJoules) {
  const CounterDelta d = nvml_energy_delta(1'000, 3'500);
  ASSERT_TRUE(d.joules);
  EXPECT_DOUBLE_EQ(*d.joules, 2.5);
  EXPECT_FALSE(d.reset);
  EXPECT_DOUBLE_EQ(*nvml_energy_delta(77, 77).joules, 0.0);
  // Large counters (the driver has been up for months) keep full precision in the difference.
  const std::uint64_t big = std::numeric_limits<std::uint64_t>::max() - 5'000;
  EXPECT_DOUBLE_EQ(*nvml_energy_delta(big, big + 1'234).joules, 1.234);
}

TEST(EnergyCounter, NvmlDecreaseIsFlaggedNotNegative) {
  const CounterDelta d = nvml_energy_delta(5'000'000, 1'000);
  EXPECT_FALSE(d.joules);
  EXPECT_TRUE(d.reset);
  EXPECT_NE(d.joules.reason().find("backwards"), std::string::npos) << d.joules.reason();
  EXPECT_NE(d.joules.reason().find("5000000 mJ -> 1000 mJ"), std::string::npos);
}

TEST(EnergyCounter, RaplDeltaAndWrap) {
  const CounterDelta plain = rapl_energy_delta(100, 2'000'100, 262'143'328'850);
  ASSERT_TRUE(plain.joules);
  EXPECT_DOUBLE_EQ(*plain.joules, 2.0);
  EXPECT_FALSE(plain.wrapped);

  // Wraps at 1'000'000 uJ: 900'000 -> (wrap) -> 100'000 is 200'000 uJ.
  const CounterDelta wrapped = rapl_energy_delta(900'000, 100'000, 1'000'000);
  ASSERT_TRUE(wrapped.joules);
  EXPECT_DOUBLE_EQ(*wrapped.joules, 0.2);
  EXPECT_TRUE(wrapped.wrapped);
  EXPECT_FALSE(wrapped.reset);
}

TEST(EnergyCounter, RaplImpossibleReadingsAreFlagged) {
  const CounterDelta beyond = rapl_energy_delta(2'000'000, 10, 1'000'000);
  EXPECT_FALSE(beyond.joules);
  EXPECT_TRUE(beyond.reset);
  const CounterDelta unknown_range = rapl_energy_delta(500, 10, 0);
  EXPECT_FALSE(unknown_range.joules);
  EXPECT_TRUE(unknown_range.reset);
  EXPECT_NE(unknown_range.joules.reason().find("wrap range is unknown"), std::string::npos);
}

TEST(EnergyCounter, UpdatePeriodIsTheMedianTimeBetweenChanges) {
  // Read every 1 ms; the value changes every 100 ms.
  std::vector<CounterReading> readings;
  for (int ms = 0; ms <= 1000; ++ms) {
    readings.push_back({ms / 1000.0, static_cast<std::uint64_t>(5000 + 7 * (ms / 100))});
  }
  const auto period = counter_update_period_s(readings);
  ASSERT_TRUE(period.has_value());
  EXPECT_NEAR(*period, 0.100, 1e-9);

  // Irregular gaps: 0.1, 0.1, 0.3, 0.1 -> median 0.1.
  const std::vector<CounterReading> irregular = {{0.0, 1},  {0.05, 2}, {0.15, 3},
                                                 {0.25, 4}, {0.55, 5}, {0.65, 6}};
  EXPECT_NEAR(*counter_update_period_s(irregular), 0.1, 1e-12);

  // Two changes give one interval only: not enough.
  const std::vector<CounterReading> few = {{0.0, 1}, {0.1, 2}, {0.2, 3}, {0.3, 3}};
  EXPECT_FALSE(counter_update_period_s(few).has_value());
}

TEST(EnergyCounter, PowerBetweenChangePoints) {
  // Changes at 0.1 s (1000 mJ) and 0.5 s (41000 mJ): 40 J over 0.4 s = 100 W. The readings before
  // the first change and after the last do not count.
  const std::vector<CounterReading> readings = {{0.0, 0},     {0.1, 1000},  {0.2, 1000},
                                                {0.3, 21000}, {0.5, 41000}, {0.55, 41000}};
  const auto watts = counter_power_between_changes_w(readings);
  ASSERT_TRUE(watts.has_value());
  EXPECT_NEAR(*watts, 100.0, 1e-9);
  EXPECT_FALSE(counter_power_between_changes_w(std::vector<CounterReading>{{0, 1}, {1, 2}}));
}

// --- Trapezoid integration --------------------------------------------------------------------

TEST(EnergyIntegral, ConstantPower) {
  const std::vector<TimedValue> s = {{0, 50}, {1, 50}, {2, 50}};
  const auto r = integrate_power(s, 0, 2);
  ASSERT_TRUE(r);
  EXPECT_DOUBLE_EQ(r->joules, 100);
  EXPECT_DOUBLE_EQ(r->covered_s, 2);
  EXPECT_EQ(r->samples_in_window, 3u);
}

TEST(EnergyIntegral, RampClippedToTheWindowIsExact) {
  // P(t) = 10 t sampled irregularly; the integral over [0.5, 2.5] is 5 (2.5^2 - 0.5^2) = 30.
  const std::vector<TimedValue> s = {{0, 0}, {1, 10}, {3, 30}};
  const auto r = integrate_power(s, 0.5, 2.5);
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->joules, 30.0, 1e-12);
  EXPECT_EQ(r->samples_in_window, 1u);
}

TEST(EnergyIntegral, IrregularSamplesByHand) {
  const std::vector<TimedValue> s = {{0, 10}, {0.3, 20}, {1.0, 0}, {1.2, 40}};
  // Edges: P(0.1) = 10 + 10 * 0.1/0.3 = 13.33..., P(1.1) = 0 + 40 * 0.1/0.2 = 20.
  // [0.1,0.3]: (13.33 + 20)/2 * 0.2 = 3.33...; [0.3,1.0]: 20/2 * 0.7 = 7; [1.0,1.1]: 20/2 * 0.1 = 1
  const auto r = integrate_power(s, 0.1, 1.1);
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->joules, 10.0 / 3.0 + 7.0 + 1.0, 1e-12);
  EXPECT_EQ(r->samples_in_window, 2u);
  EXPECT_NEAR(r->covered_s, 1.0, 1e-12);
  EXPECT_NEAR(r->window_s, 1.0, 1e-12);
}

TEST(EnergyIntegral, BeyondTheSamplesHoldsTheEdgeValueAndSaysSo) {
  const std::vector<TimedValue> s = {{1, 10}, {2, 20}};
  const auto r = integrate_power(s, 0, 3);
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->joules, 10 + 15 + 20, 1e-12);  // held 10 W, the ramp, held 20 W
  EXPECT_NEAR(r->covered_s, 1.0, 1e-12);
  EXPECT_NEAR(r->window_s, 3.0, 1e-12);
}

TEST(EnergyIntegral, DuplicateTimestampsDoNotBreakIt) {
  const std::vector<TimedValue> s = {{0, 10}, {1, 10}, {1, 30}, {2, 30}};
  const auto r = integrate_power(s, 0, 2);
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->joules, 40, 1e-12);  // a step at t=1
}

TEST(EnergyIntegral, BadInput) {
  const std::vector<TimedValue> none;
  EXPECT_FALSE(integrate_power(none, 0, 1));
  EXPECT_EQ(integrate_power(none, 0, 1).reason(), "no power samples");
  const std::vector<TimedValue> ok = {{0, 1}, {1, 1}};
  EXPECT_THROW(integrate_power(ok, 1, 1), Error);
  EXPECT_THROW(integrate_power(ok, 2, 1), Error);
  const std::vector<TimedValue> unordered = {{1, 1}, {0, 1}};
  EXPECT_THROW(integrate_power(unordered, 0, 1), Error);
  const std::vector<TimedValue> nan = {{0, 1}, {1, std::numeric_limits<double>::quiet_NaN()}};
  EXPECT_THROW(integrate_power(nan, 0, 1), Error);
}

TEST(EnergyIdle, DynamicEnergySubtractsIdlePowerTimesDuration) {
  EXPECT_DOUBLE_EQ(dynamic_energy_j(100, 50, 1.5), 25);
  EXPECT_DOUBLE_EQ(dynamic_energy_j(10, 50, 1), -40);  // honest, and flagged by compute_energy
}

// --- compute_energy -----------------------------------------------------------------------------

// 100 W sampled every 10 ms over [10, 11.2] s.
std::vector<TimedValue> flat_samples(double watts, double t0, double t1, double step) {
  std::vector<TimedValue> s;
  for (double t = t0; t <= t1 + 1e-9; t += step) s.push_back({t, watts});
  return s;
}

EnergyInputs good_inputs() {
  EnergyInputs in;
  in.t0_s = 10;
  in.t1_s = 11.2;
  in.num_inferences = 1000;
  in.counter = nvml_energy_delta(1'000'000, 1'120'000);  // 120 J
  in.counter_update_period_s = 0.1;
  in.power_samples_w = Reading<std::vector<TimedValue>>::ok(flat_samples(100, 9.995, 11.205, 0.01));
  in.idle_power_w = Reading<double>::ok(40);
  return in;
}

TEST(ComputeEnergy, EveryFigureFromAGoodRun) {
  const EnergyResult r = compute_energy(good_inputs());
  EXPECT_NEAR(r.duration_s, 1.2, 1e-12);
  EXPECT_EQ(r.energy_source, "nvml_counter");
  EXPECT_DOUBLE_EQ(*r.total_energy_j, 120);
  EXPECT_DOUBLE_EQ(*r.counter_energy_j, 120);
  EXPECT_NEAR(*r.energy_from_samples_j, 120, 1e-9);
  EXPECT_NEAR(*r.energy_per_inference_j, 0.12, 1e-12);
  EXPECT_NEAR(*r.energy_per_inference_mj, 120, 1e-9);
  EXPECT_NEAR(*r.inferences_per_joule, 1000.0 / 120, 1e-12);
  EXPECT_NEAR(*r.energy_from_samples_per_inference_mj, 120, 1e-6);
  EXPECT_DOUBLE_EQ(*r.idle_power_w, 40);
  EXPECT_NEAR(*r.dynamic_energy_j, 120 - 40 * 1.2, 1e-9);
  EXPECT_NEAR(*r.dynamic_energy_per_inference_mj, 72, 1e-9);
  ASSERT_TRUE(r.power_w);
  EXPECT_DOUBLE_EQ(r.power_w->mean, 100);
  EXPECT_DOUBLE_EQ(r.power_w->std, 0);
  EXPECT_GE(r.num_power_samples, 119u);
  EXPECT_LE(r.num_power_samples, 121u);
  EXPECT_DOUBLE_EQ(*r.counter_update_period_ms, 100);
  EXPECT_TRUE(r.quality.ok()) << r.quality.summary();
  EXPECT_EQ(r.quality.summary(), "ok");
}

TEST(ComputeEnergy, WindowTooShortForTheCounter) {
  EnergyInputs in = good_inputs();
  in.t1_s = 10.5;  // 500 ms < 10 x 100 ms
  in.counter = nvml_energy_delta(0, 50'000);
  const EnergyResult r = compute_energy(in);
  ASSERT_TRUE(r.quality.has(quality_flag::kWindowTooShort)) << r.quality.summary();
  EXPECT_EQ(r.quality.messages.front(),
            "window too short for the counter: 500.0 ms < 10 x update period 100.0 ms; use "
            "--min-duration-s");
  EXPECT_DOUBLE_EQ(min_window_for_counter_s(0.1), 1.0);
  EXPECT_EQ(r.energy_source, "nvml_counter");  // still the counter, but flagged
}

TEST(ComputeEnergy, CounterAndSamplesDisagreeing) {
  EnergyInputs in = good_inputs();
  in.counter = nvml_energy_delta(0, 100'000);  // 100 J vs 120 J from samples: 20 %
  const EnergyResult r = compute_energy(in);
  EXPECT_TRUE(r.quality.has(quality_flag::kCounterSamplesDisagree)) << r.quality.summary();
  EXPECT_EQ(r.quality.summary(), "counter_samples_disagree");
  // 4 % is within the 5 % threshold.
  in.counter = nvml_energy_delta(0, 115'000);
  EXPECT_TRUE(compute_energy(in).quality.ok());
}

TEST(ComputeEnergy, CounterResetFallsBackToSamples) {
  EnergyInputs in = good_inputs();
  in.counter = nvml_energy_delta(2'000'000, 1'000);
  const EnergyResult r = compute_energy(in);
  EXPECT_FALSE(r.counter_energy_j);
  EXPECT_EQ(r.energy_source, "nvml_power_samples");
  EXPECT_NEAR(*r.total_energy_j, 120, 1e-9);
  EXPECT_TRUE(r.quality.has(quality_flag::kCounterReset));
  EXPECT_FALSE(r.quality.has(quality_flag::kCounterUnavailable));
}

TEST(ComputeEnergy, NothingToMeasureWithIsUnavailableNeverZero) {
  EnergyInputs in;
  in.t0_s = 0;
  in.t1_s = 2;
  in.num_inferences = 10;
  in.counter.joules =
      Reading<double>::unavailable("NVML unavailable: cannot load libnvidia-ml.so.1");
  in.power_samples_w = Reading<std::vector<TimedValue>>::unavailable("--power-source none");
  in.idle_power_w = Reading<double>::unavailable("no idle baseline");
  const EnergyResult r = compute_energy(in);
  EXPECT_EQ(r.energy_source, "none");
  EXPECT_FALSE(r.total_energy_j);
  EXPECT_NE(r.total_energy_j.reason().find("cannot load libnvidia-ml.so.1"), std::string::npos);
  EXPECT_NE(r.total_energy_j.reason().find("--power-source none"), std::string::npos);
  EXPECT_FALSE(r.energy_per_inference_j);
  EXPECT_FALSE(r.energy_per_inference_mj);
  EXPECT_FALSE(r.inferences_per_joule);
  EXPECT_FALSE(r.dynamic_energy_j);
  EXPECT_FALSE(r.power_w);
  EXPECT_EQ(r.power_w.reason(), "--power-source none");
  EXPECT_EQ(r.quality.summary(), "no_energy_source");
}

TEST(ComputeEnergy, SampleProblemsAreFlagged) {
  EnergyInputs in = good_inputs();
  // Five samples that stop half way through the window.
  in.power_samples_w = Reading<std::vector<TimedValue>>::ok(flat_samples(100, 10.0, 10.6, 0.15));
  in.counter = nvml_energy_delta(0, 120'000);
  const EnergyResult r = compute_energy(in);
  EXPECT_TRUE(r.quality.has(quality_flag::kTooFewSamples)) << r.quality.summary();
  EXPECT_TRUE(r.quality.has(quality_flag::kSamplesPartialCoverage)) << r.quality.summary();
  EXPECT_EQ(r.num_power_samples, 5u);
}

TEST(ComputeEnergy, UnknownCounterPeriodAndNegativeDynamicEnergy) {
  EnergyInputs in = good_inputs();
  in.counter_update_period_s.reset();
  in.idle_power_w = Reading<double>::ok(150);  // more than the 100 W the run drew
  in.power_samples_w = Reading<std::vector<TimedValue>>::unavailable("not sampled");
  const EnergyResult r = compute_energy(in);
  EXPECT_TRUE(r.quality.has(quality_flag::kCounterPeriodUnknown));
  EXPECT_TRUE(r.quality.has(quality_flag::kDynamicEnergyNegative));
  EXPECT_EQ(r.quality.summary(), "counter_period_unknown;dynamic_energy_negative");
  EXPECT_LT(*r.dynamic_energy_j, 0);
  EXPECT_FALSE(r.counter_update_period_ms);
}

TEST(ComputeEnergy, SamplesOnlyIsFlaggedAsNoCounter) {
  EnergyInputs in = good_inputs();
  in.counter.joules =
      Reading<double>::unavailable("this NVML has no nvmlDeviceGetTotalEnergyConsumption");
  in.samples_source = "nvidia-smi";
  const EnergyResult r = compute_energy(in);
  EXPECT_EQ(r.energy_source, "nvidia-smi");
  EXPECT_EQ(r.quality.summary(), "counter_unavailable");
}

TEST(ComputeEnergy, RejectsAnEmptyWindowOrNoInferences) {
  EnergyInputs in = good_inputs();
  in.num_inferences = 0;
  EXPECT_THROW(compute_energy(in), Error);
  in = good_inputs();
  in.t1_s = in.t0_s;
  EXPECT_THROW(compute_energy(in), Error);
}

}  // namespace
}  // namespace eaq::measure
