// The measured loop: its iteration count and duration, and a window whose ends sit at energy
// counter updates (TimedLoopOptions::read_counter), checked against counters that step on the
// steady clock as NVML's does.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <thread>

#include "fake_gpu_meter.hpp"
#include "measure/clock.hpp"
#include "measure/energy.hpp"
#include "run/energy_session.hpp"
#include "run/timed_loop.hpp"

namespace eaq::run {
namespace {

using namespace std::chrono_literals;

// A counter that steps every period_s on the steady clock, from `origin`.
struct SteppingCounter {
  double origin = measure::steady_now_s();
  double period_s = 0.05;
  std::optional<std::uint64_t> operator()() const {
    return static_cast<std::uint64_t>(std::floor((measure::steady_now_s() - origin) / period_s));
  }
  // How long after its last step the counter is at steady time t.
  double since_step(double t) const { return std::fmod(t - origin, period_s); }
};

void sleep_iteration(std::int64_t) {
  std::this_thread::sleep_for(2ms);
}
void no_sync() {}

TEST(TimedLoop, RunsTheIterationsAskedAndTimesEach) {
  TimedLoopOptions options;
  options.num_iters = 5;
  int starts = 0, ends = 0;
  const TimedLoopResult r = run_timed_loop(
      sleep_iteration, no_sync, options, [&] { ++starts; }, [&] { ++ends; });
  EXPECT_EQ(r.iterations, 5);
  EXPECT_EQ(r.latencies_s.size(), 5u);
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(ends, 1);
  EXPECT_GE(r.total_time_s(), 0.010);
  EXPECT_FALSE(r.started_at_update || r.ended_at_update);
  EXPECT_EQ(describe_window_edges(options, r),
            "the loop's first and last iterations (no energy counter to align to)");
}

TEST(TimedLoop, WindowStartsAndEndsAtCounterUpdates) {
  const SteppingCounter counter{.period_s = 0.05};
  TimedLoopOptions options;
  options.num_iters = 5;  // ~10 ms: the loop must run on to the next step
  options.read_counter = counter;
  const TimedLoopResult r = run_timed_loop(sleep_iteration, no_sync, options);
  ASSERT_TRUE(r.started_at_update);
  ASSERT_TRUE(r.ended_at_update);
  EXPECT_EQ(describe_window_edges(options, r), "energy-counter updates");
  // The start within a poll of a step, the end within an iteration (2 ms) of one; loose bounds
  // for loaded machines, but well inside the 50 ms a plain read can be stale.
  EXPECT_LT(counter.since_step(r.t0_s), 0.015);
  EXPECT_LT(counter.since_step(r.t1_s), 0.015);
  EXPECT_GT(r.iterations, 5);  // the extra iterations are part of the window
  EXPECT_EQ(r.latencies_s.size(), static_cast<std::size_t>(r.iterations));
}

// NVML reads can take milliseconds: the loop's last iterations must not wait for them (read
// between iterations, they slowed the last ~100 ms of every GPU window to one step per read).
TEST(TimedLoop, SlowCounterReadsDoNotSlowTheIterations) {
  const SteppingCounter steps{.period_s = 0.05};
  TimedLoopOptions options;
  options.num_iters = 5;
  options.read_counter = [steps] {
    std::this_thread::sleep_for(20ms);
    return steps();
  };
  const TimedLoopResult r =
      run_timed_loop([](std::int64_t) { std::this_thread::sleep_for(1ms); }, no_sync, options);
  ASSERT_TRUE(r.ended_at_update);
  ASSERT_GT(r.latencies_s.size(), 5u);
  double slowest = 0;
  for (std::size_t k = 5; k < r.latencies_s.size(); ++k) {
    slowest = std::max(slowest, r.latencies_s[k]);
  }
  EXPECT_LT(slowest, 0.010) << "an iteration after the planned ones waited for a 20 ms read";
  // Seen within a read (20 ms) and an iteration of the update.
  EXPECT_LT(steps.since_step(r.t1_s), 0.035);
}

TEST(TimedLoop, ACounterThatDoesNotMoveEndsTheWaitsAfterTheirLimit) {
  TimedLoopOptions options;
  options.num_iters = 3;
  options.sync_each_iter = false;
  options.read_counter = [] { return std::optional<std::uint64_t>(7); };
  options.counter_wait_s = 0.03;
  const TimedLoopResult r = run_timed_loop(sleep_iteration, no_sync, options);
  EXPECT_FALSE(r.started_at_update);
  EXPECT_FALSE(r.ended_at_update);
  EXPECT_GE(r.iterations, 3);
  EXPECT_TRUE(r.latencies_s.empty());
  EXPECT_EQ(describe_window_edges(options, r),
            "the loop's first and last iterations (the energy counter did not move)");
}

TEST(TimedLoop, AnUnreadableCounterLeavesThePlainLoop) {
  TimedLoopOptions options;
  options.num_iters = 4;
  options.read_counter = [] { return std::optional<std::uint64_t>(); };
  const TimedLoopResult r = run_timed_loop(sleep_iteration, no_sync, options);
  EXPECT_EQ(r.iterations, 4);
  EXPECT_FALSE(r.started_at_update || r.ended_at_update);
}

// End to end with the fake NVML meter (constant 200 W, a counter that updates every 100 ms): the
// counter's energy over an aligned window is the exact energy to within the last iteration, where
// plain reads at the loop's ends could each be up to 20 J off.
TEST(TimedLoop, AlignedWindowGivesTheCounterEnergyToWithinAnIteration) {
  test::FakeGpuMeter meter = test::FakeGpuMeter::constant(200, 0.100);
  EnergySession session(meter, nullptr, {.sample_interval = 10ms, .idle_seconds = 0});
  TimedLoopOptions options;
  options.num_iters = 20;  // ~40 ms of 2 ms iterations, then on to the next update
  options.read_counter = session.counter_reader();
  options.counter_wait_s = session.counter_wait_s();
  ASSERT_TRUE(options.read_counter);
  session.start_sampling();
  const TimedLoopResult r = run_timed_loop(
      sleep_iteration, no_sync, options, [&] { session.mark_start(); },
      [&] { session.mark_end(); });
  session.stop_sampling();
  ASSERT_TRUE(r.started_at_update && r.ended_at_update);
  const measure::EnergyResult e =
      session.result(r.t0_s, r.t1_s, static_cast<std::uint64_t>(r.iterations));
  ASSERT_TRUE(e.counter_energy_j);
  EXPECT_NEAR(*e.counter_energy_j, 200 * (r.t1_s - r.t0_s), 4.0);  // 20 ms at 200 W
}

TEST(TimedLoop, EnergySessionWithoutAMeterGivesNoCounter) {
  measure::UnavailableGpuMeter meter("NVML unavailable: test");
  EnergySession session(meter, nullptr, {});
  EXPECT_FALSE(session.counter_reader());
}

}  // namespace
}  // namespace eaq::run
