// EnergySession's automatic window: long enough for the counter and for the power samples.
#include <gtest/gtest.h>

#include <chrono>

#include "fake_gpu_meter.hpp"
#include "run/energy_session.hpp"

namespace eaq::run {
namespace {

using namespace std::chrono_literals;

TEST(EnergySession, AutoWindowHoldsElevenSampleIntervals) {
  // A fast counter (10 ms): ten updates take 0.1 s, but ten 100 ms power samples need > 1 s.
  test::FakeGpuMeter meter = test::FakeGpuMeter::constant(100, 0.010);
  EnergySession session(meter, nullptr, {.sample_interval = 100ms, .idle_seconds = 0.3});
  session.measure_idle();
  EXPECT_NEAR(session.min_window_s(), 1.1, 1e-9);
}

TEST(EnergySession, AutoWindowHoldsTenCounterUpdates) {
  // A slow counter (200 ms) sets the window: ten updates take 2 s, more than 11 x 20 ms samples.
  test::FakeGpuMeter meter = test::FakeGpuMeter::constant(100, 0.200);
  EnergySession session(meter, nullptr, {.sample_interval = 20ms, .idle_seconds = 1.2});
  session.measure_idle();
  EXPECT_NEAR(session.min_window_s(), 2.0, 0.3);
}

TEST(EnergySession, NoMeterNoWindow) {
  measure::UnavailableGpuMeter meter("NVML unavailable: test");
  EnergySession session(meter, nullptr, {});
  EXPECT_EQ(session.min_window_s(), 0.0);
  EXPECT_NE(session.no_energy_reason().find("NVML unavailable: test"), std::string::npos);
}

}  // namespace
}  // namespace eaq::run
