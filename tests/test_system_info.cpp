#include <gtest/gtest.h>

#include <chrono>

#include "fake_gpu_meter.hpp"
#include "measure/system_info.hpp"

namespace eaq::measure {
namespace {

using namespace std::chrono;

TEST(SystemInfo, TimestampsAreUtc) {
  const sys_days day = year{2025} / January / 31;
  const system_clock::time_point t =
      day + hours(12) + minutes(34) + seconds(56) + milliseconds(789);
  EXPECT_EQ(iso8601_utc(t), "2025-01-31T12:34:56.789Z");
  EXPECT_EQ(filename_timestamp(t), "20250131_123456");
  EXPECT_EQ(iso8601_utc(sys_days{year{1999} / December / 31}), "1999-12-31T00:00:00.000Z");
}

TEST(SystemInfo, Host) {
  const HostInfo host = host_info();
  EXPECT_FALSE(host.hostname.empty());
  EXPECT_EQ(host.kernel.rfind("Linux ", 0), 0u) << host.kernel;
  EXPECT_FALSE(host.cpu_model.empty());
  EXPECT_GE(host.hardware_threads, 1u);
}

TEST(SystemInfo, GpuSnapshotThroughTheInterface) {
  const auto meter = eaq::test::FakeGpuMeter::constant(80, 0.1);
  const SystemSnapshot snap = take_system_snapshot(meter);
  EXPECT_EQ(snap.timestamp_utc.size(), 24u);
  EXPECT_EQ(snap.timestamp_utc.back(), 'Z');
  EXPECT_EQ(*snap.gpu.name, "Fake GPU");
  EXPECT_EQ(*snap.gpu.cuda_driver_version, "12.4");
  EXPECT_EQ(*snap.gpu.sm_clock_mhz, 1980u);
  EXPECT_EQ(*snap.gpu.power_limit_mw, 700000u);
  EXPECT_EQ(snap.gpu.memory->total_bytes, 80'000'000'000u);
}

TEST(SystemInfo, NoGpuMeansEveryGpuFieldSaysWhy) {
  const UnavailableGpuMeter meter("CPU run: no GPU meter", 0);
  const SystemSnapshot snap = take_system_snapshot(meter);
  EXPECT_FALSE(snap.gpu.name);
  EXPECT_EQ(snap.gpu.name.reason(), "CPU run: no GPU meter");
  EXPECT_FALSE(snap.gpu.temperature_c);
  EXPECT_FALSE(snap.gpu.memory);
  EXPECT_FALSE(snap.host.hostname.empty());
}

}  // namespace
}  // namespace eaq::measure
