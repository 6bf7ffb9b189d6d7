#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "fake_gpu_meter.hpp"
#include "measure/clock.hpp"
#include "measure/energy_window.hpp"
#include "measure/idle_baseline.hpp"
#include "measure/power_logger.hpp"

namespace eaq::measure {
namespace {

using eaq::test::FakeGpuMeter;
using namespace std::chrono_literals;

// P(t) = 100 + 200 t watts; E(t) = 100 t + 100 t^2 joules.
FakeGpuMeter ramp_meter(double counter_period_s) {
  return FakeGpuMeter([](double t) { return 100 + 200 * t; },
                      [](double t) { return 100 * t + 100 * t * t; }, counter_period_s);
}

TEST(PowerLogger, SampleCountFollowsTheInterval) {
  FakeGpuMeter meter = FakeGpuMeter::constant(75, 0.1);
  PowerLogger logger(meter, {.interval = 10ms});
  const double t_start = steady_now_s();
  ASSERT_TRUE(logger.start());
  EXPECT_TRUE(logger.running());
  EXPECT_GE(logger.samples().size(), 1u);  // the first sample is taken before start() returns
  std::this_thread::sleep_for(300ms);
  logger.stop();
  const double elapsed = steady_now_s() - t_start;
  EXPECT_FALSE(logger.running());

  const std::vector<PowerSample> samples = logger.samples();
  // One at start, one per elapsed interval (never a catch-up burst), one at stop.
  const auto most = static_cast<std::size_t>(elapsed / 0.010) + 2;
  const auto fewest = static_cast<std::size_t>(0.5 * 0.300 / 0.010);  // generous for busy CI
  EXPECT_LE(samples.size(), most);
  EXPECT_GE(samples.size(), fewest);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    ASSERT_TRUE(samples[i].power_w && samples[i].instant_power_w && samples[i].energy_mj);
    EXPECT_DOUBLE_EQ(*samples[i].power_w, 75.0);
    EXPECT_GE(samples[i].t_s, t_start);
    if (i > 0) {
      EXPECT_GT(samples[i].t_s, samples[i - 1].t_s);
    }
  }
  EXPECT_TRUE(logger.unavailable_reason().empty());
}

TEST(PowerLogger, SamplesFollowThePowerCurveAndIntegrateToItsEnergy) {
  FakeGpuMeter meter = ramp_meter(0.05);
  PowerLogger logger(meter, {.interval = 5ms});
  ASSERT_TRUE(logger.start());
  std::this_thread::sleep_for(20ms);
  const double t0 = steady_now_s();
  std::this_thread::sleep_for(400ms);
  const double t1 = steady_now_s();
  std::this_thread::sleep_for(10ms);
  logger.stop();

  const std::vector<PowerSample> samples = logger.samples();
  for (const PowerSample& s : samples) {
    // The timestamp is the middle of the reads; on a loaded machine (CI runs tests in parallel)
    // the thread can be preempted between them, so allow 10 ms of the 200 W/s ramp.
    EXPECT_NEAR(*s.instant_power_w, meter.power_at(s.t_s), 2.0);
  }
  const auto integral = integrate_power(power_series(samples), t0, t1);
  ASSERT_TRUE(integral);
  const double exact = meter.exact_energy_j(t0, t1);
  EXPECT_NEAR(integral->joules, exact, 0.02 * exact);
  EXPECT_NEAR(integral->covered_s, t1 - t0, 1e-9);
}

TEST(PowerLogger, ObservesTheCounterUpdatePeriod) {
  FakeGpuMeter meter = FakeGpuMeter::constant(60, 0.05);
  PowerLogger logger(meter, {.interval = 2ms});
  ASSERT_TRUE(logger.start());
  std::this_thread::sleep_for(400ms);
  logger.stop();
  const Reading<double> period = logger.observed_counter_update_period_s();
  ASSERT_TRUE(period) << period.reason();
  EXPECT_NEAR(*period, 0.05, 0.01);
  // Every counter step is 60 W x 50 ms = 3000 mJ.
  const std::vector<CounterReading> counter = energy_counter_series(logger.samples());
  for (std::size_t i = 1; i < counter.size(); ++i) {
    const std::uint64_t step = counter[i].value - counter[i - 1].value;
    EXPECT_EQ(step % 3000, 0u) << "at reading " << i;
  }
}

TEST(PowerLogger, StopIsIdempotentAndRestartClears) {
  FakeGpuMeter meter = FakeGpuMeter::constant(50, 0.1);
  PowerLogger logger(meter, {.interval = 5ms});
  logger.stop();  // never started: nothing happens
  ASSERT_TRUE(logger.start());
  EXPECT_THROW(logger.start(), Error);
  std::this_thread::sleep_for(30ms);
  logger.stop();
  logger.stop();
  const std::size_t first_run = logger.samples().size();
  EXPECT_GE(first_run, 2u);
  const double restart_at = steady_now_s();
  ASSERT_TRUE(logger.start());
  logger.stop();
  const std::vector<PowerSample> second = logger.samples();
  ASSERT_FALSE(second.empty());
  EXPECT_GE(second.front().t_s, restart_at);  // the first run's samples are gone
}

TEST(PowerLogger, DestructorStopsARunningLogger) {
  FakeGpuMeter meter = FakeGpuMeter::constant(50, 0.1);
  {
    PowerLogger logger(meter, {.interval = 1ms});
    ASSERT_TRUE(logger.start());
    std::this_thread::sleep_for(10ms);
  }
  const int reads = meter.power_reads.load();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(meter.power_reads.load(), reads);  // the thread is gone
}

TEST(PowerLogger, SamplesCanBeReadWhileItRuns) {
  FakeGpuMeter meter = FakeGpuMeter::constant(50, 0.1);
  PowerLogger logger(meter, {.interval = 1ms});
  ASSERT_TRUE(logger.start());
  std::atomic<bool> done{false};
  std::size_t decreases = 0;
  std::thread reader([&] {
    std::size_t last = 0;
    while (!done) {
      const std::vector<PowerSample> snapshot = logger.samples();
      if (snapshot.size() < last) ++decreases;
      last = snapshot.size();
      for (const PowerSample& s : snapshot) ASSERT_TRUE(s.power_w.has_value());
    }
  });
  std::this_thread::sleep_for(100ms);
  logger.stop();
  done = true;
  reader.join();
  EXPECT_EQ(decreases, 0u);
}

TEST(PowerLogger, UnavailableMeterSaysWhy) {
  UnavailableGpuMeter meter("NVML unavailable: cannot load libnvidia-ml.so.1: no such file");
  PowerLogger logger(meter);
  EXPECT_FALSE(logger.start());
  EXPECT_FALSE(logger.running());
  EXPECT_TRUE(logger.samples().empty());
  EXPECT_EQ(logger.unavailable_reason(), meter.unavailable_reason());
  logger.stop();
  const Reading<std::vector<TimedValue>> series = power_samples_or_reason(logger);
  EXPECT_FALSE(series);
  EXPECT_EQ(series.reason(), meter.unavailable_reason());
}

TEST(PowerLogger, ReadingsThatAllFailLeaveTheReason) {
  FakeGpuMeter meter = FakeGpuMeter::constant(50, 0.1);
  meter.fail_readings = true;
  PowerLogger logger(meter, {.interval = 5ms});
  ASSERT_TRUE(logger.start());
  std::this_thread::sleep_for(20ms);
  logger.stop();
  EXPECT_TRUE(logger.samples().empty());
  EXPECT_EQ(logger.unavailable_reason(), "fake power failure");
}

TEST(PowerLogger, RejectsAZeroInterval) {
  FakeGpuMeter meter = FakeGpuMeter::constant(50, 0.1);
  EXPECT_THROW(PowerLogger(meter, {.interval = 0ms}), Error);
}

TEST(PowerSeries, PicksTheRequestedField) {
  std::vector<PowerSample> samples(3);
  samples[0] = {0.0, 10.0, 11.0, 5};
  samples[1] = {0.1, 12.0, std::nullopt, 6};
  samples[2] = {0.2, std::nullopt, std::nullopt, 7};
  const auto best = power_series(samples);
  ASSERT_EQ(best.size(), 2u);
  EXPECT_EQ(best[0].value, 11.0);  // instant preferred
  EXPECT_EQ(best[1].value, 12.0);  // averaged when there is no instant reading
  EXPECT_EQ(power_series(samples, PowerField::Averaged).size(), 2u);
  EXPECT_EQ(power_series(samples, PowerField::Instant).size(), 1u);
  EXPECT_EQ(energy_counter_series(samples).size(), 3u);
}

TEST(IdleBaseline, CounterBetweenChangesGivesIdlePowerAndPeriod) {
  FakeGpuMeter meter = FakeGpuMeter::constant(70, 0.02);
  const IdleBaseline idle = measure_idle_baseline(meter, 300ms, {.interval = 10ms}, 1ms);
  ASSERT_TRUE(idle.idle_power_w) << idle.idle_power_w.reason();
  EXPECT_EQ(idle.idle_power_source, "nvml_counter");
  EXPECT_NEAR(*idle.idle_power_w, 70, 70 * 0.03);
  ASSERT_TRUE(idle.samples_power_w);
  EXPECT_NEAR(*idle.samples_power_w, 70, 0.01);
  ASSERT_TRUE(idle.counter_update_period_s);
  EXPECT_NEAR(*idle.counter_update_period_s, 0.02, 0.005);
  EXPECT_GE(idle.samples.size(), 10u);
  EXPECT_NEAR(idle.duration_s, 0.3, 0.1);
}

TEST(IdleBaseline, NoMeterMeansNoBaselineWithTheReason) {
  UnavailableGpuMeter meter("NVML unavailable: test");
  const IdleBaseline idle = measure_idle_baseline(meter, 20ms);
  EXPECT_FALSE(idle.idle_power_w);
  EXPECT_EQ(idle.idle_power_source, "none");
  EXPECT_NE(idle.idle_power_w.reason().find("NVML unavailable: test"), std::string::npos);
  EXPECT_FALSE(idle.counter_update_period_s);
}

TEST(CounterProbe, FindsTheUpdatePeriod) {
  FakeGpuMeter meter = FakeGpuMeter::constant(100, 0.025);
  const CounterProbe probe = probe_energy_counter(meter, 250ms, 1ms);
  ASSERT_TRUE(probe.update_period_s) << probe.update_period_s.reason();
  EXPECT_NEAR(*probe.update_period_s, 0.025, 0.005);
  ASSERT_TRUE(probe.power_w);
  EXPECT_NEAR(*probe.power_w, 100, 5);
  EXPECT_GE(probe.readings.size(), 50u);
}

}  // namespace
}  // namespace eaq::measure

namespace eaq::measure {
namespace {

TEST(EnergyWindow, MarksGiveTheWindowAndTheCounterDelta) {
  FakeGpuMeter meter = FakeGpuMeter::constant(200, 0.01);
  const EnergyMark start = mark_energy(meter);
  std::this_thread::sleep_for(200ms);
  const EnergyMark end = mark_energy(meter);
  ASSERT_TRUE(start.energy_mj && end.energy_mj);
  EXPECT_NEAR(end.t_s - start.t_s, 0.2, 0.05);
  const CounterDelta delta = energy_between(start, end);
  ASSERT_TRUE(delta.joules);
  // 200 W over the window, give or take one 10 ms counter step (2 J).
  EXPECT_NEAR(*delta.joules, 200 * (end.t_s - start.t_s), 2.0 + 1e-9);
}

TEST(EnergyWindow, UnavailableMeterGivesAnUnavailableDelta) {
  UnavailableGpuMeter meter("NVML unavailable: test");
  const CounterDelta delta = energy_between(mark_energy(meter), mark_energy(meter));
  EXPECT_FALSE(delta.joules);
  EXPECT_FALSE(delta.reset);
  EXPECT_EQ(delta.joules.reason(), "NVML unavailable: test");
}

}  // namespace
}  // namespace eaq::measure
