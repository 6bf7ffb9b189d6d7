#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/error.hpp"
#include "measure/idle_baseline.hpp"
#include "measure/nvml.hpp"
#include "measure/power_logger.hpp"

namespace eaq::measure {
namespace {

using namespace std::chrono_literals;

TEST(Nvml, MissingLibraryGivesAnUnavailableMeterNotACrash) {
  const auto meter = open_nvml_meter(0, "libnvidia-ml-eaq-does-not-exist.so.1");
  ASSERT_NE(meter, nullptr);
  EXPECT_FALSE(meter->available());
  const std::string reason = meter->unavailable_reason();
  EXPECT_NE(reason.find("NVML unavailable: cannot load libnvidia-ml-eaq-does-not-exist.so.1"),
            std::string::npos)
      << reason;
  // Every reading is unavailable with that reason: never a 0.
  EXPECT_FALSE(meter->energy_mj());
  EXPECT_EQ(meter->energy_mj().reason(), reason);
  EXPECT_FALSE(meter->power_mw());
  EXPECT_FALSE(meter->instant_power_mw());
  EXPECT_FALSE(meter->name());
  EXPECT_FALSE(meter->memory());
  EXPECT_THROW(meter->power_mw().value(), Error);

  const Reading<unsigned> count = nvml_device_count("libnvidia-ml-eaq-does-not-exist.so.1");
  EXPECT_FALSE(count);
  EXPECT_EQ(count.reason(), reason);
}

TEST(Nvml, ALibraryWithoutNvmlSymbolsIsUnavailable) {
  const auto meter = open_nvml_meter(0, "libm.so.6");
  EXPECT_FALSE(meter->available());
  EXPECT_EQ(meter->unavailable_reason(), "NVML unavailable: libm.so.6 lacks nvmlInit_v2");
  EXPECT_FALSE(open_nvml_meter_by_pci_bus_id("00000000:3B:00.0", "libm.so.6")->available());
}

// --- On a machine with an NVIDIA driver (the GPU machine); skipped elsewhere -------------------

std::unique_ptr<GpuMeter> real_meter_or_skip() {
  auto meter = open_nvml_meter(0);
  if (!meter->available()) return nullptr;
  return meter;
}

TEST(NvmlGpu, ReadsIdentityAndState) {
  const auto meter = real_meter_or_skip();
  if (!meter) GTEST_SKIP() << open_nvml_meter(0)->unavailable_reason();
  ASSERT_TRUE(meter->name()) << meter->name().reason();
  EXPECT_FALSE(meter->name()->empty());
  ASSERT_TRUE(meter->uuid());
  EXPECT_EQ(meter->uuid()->rfind("GPU-", 0), 0u) << *meter->uuid();
  EXPECT_TRUE(meter->driver_version()) << meter->driver_version().reason();
  EXPECT_TRUE(meter->cuda_driver_version()) << meter->cuda_driver_version().reason();
  EXPECT_TRUE(meter->pci_bus_id()) << meter->pci_bus_id().reason();
  ASSERT_TRUE(meter->memory());
  EXPECT_GT(meter->memory()->total_bytes, 1'000'000'000u);
  ASSERT_TRUE(meter->temperature_c());
  EXPECT_LT(*meter->temperature_c(), 120u);
  ASSERT_TRUE(meter->power_limit_mw());
  EXPECT_GT(*meter->power_limit_mw(), 10'000u);
  EXPECT_TRUE(meter->sm_clock_mhz());
  EXPECT_TRUE(meter->mem_clock_mhz());
  std::printf("[   INFO   ] %s, %s, driver %s, CUDA %s, %u W limit\n", meter->name()->c_str(),
              meter->uuid()->c_str(), meter->driver_version()->c_str(),
              meter->cuda_driver_version()->c_str(), *meter->power_limit_mw() / 1000);
}

TEST(NvmlGpu, PowerAndEnergyAdvance) {
  const auto meter = real_meter_or_skip();
  if (!meter) GTEST_SKIP() << "NVML unavailable";
  ASSERT_TRUE(meter->power_mw()) << meter->power_mw().reason();
  EXPECT_GT(*meter->power_mw(), 5'000u);
  EXPECT_LT(*meter->power_mw(), 2'000'000u);
  ASSERT_TRUE(meter->instant_power_mw()) << meter->instant_power_mw().reason();
  EXPECT_GT(*meter->instant_power_mw(), 5'000u);
  const Reading<std::uint64_t> before = meter->energy_mj();
  ASSERT_TRUE(before) << before.reason();
  std::this_thread::sleep_for(1500ms);
  const CounterDelta delta = nvml_energy_delta(*before, *meter->energy_mj());
  ASSERT_TRUE(delta.joules);
  EXPECT_GT(*delta.joules, 5.0);  // more than 1.5 s at >3 W
}

TEST(NvmlGpu, CounterPeriodAndIdleBaseline) {
  const auto meter = real_meter_or_skip();
  if (!meter) GTEST_SKIP() << "NVML unavailable";
  const IdleBaseline idle = measure_idle_baseline(*meter, 2000ms, {.interval = 10ms}, 1ms);
  ASSERT_TRUE(idle.counter_update_period_s) << idle.counter_update_period_s.reason();
  EXPECT_GT(*idle.counter_update_period_s, 0.0005);
  EXPECT_LT(*idle.counter_update_period_s, 1.0);
  ASSERT_TRUE(idle.idle_power_w) << idle.idle_power_w.reason();
  std::printf(
      "[   INFO   ] counter period %.1f ms; idle %.1f W (counter), %s W (samples), %zu samples\n",
      *idle.counter_update_period_s * 1e3, *idle.idle_power_w,
      idle.samples_power_w ? std::to_string(*idle.samples_power_w).c_str() : "n/a",
      idle.samples.size());
  if (idle.samples_power_w && idle.counter_power_w) {
    // At idle the two estimates agree loosely (the averaged power lags, the counter is exact).
    EXPECT_NEAR(*idle.samples_power_w, *idle.counter_power_w, 0.15 * *idle.counter_power_w);
  }
}

TEST(NvmlGpu, OutOfRangeIndexIsAClearError) {
  const Reading<unsigned> count = nvml_device_count();
  if (!count) GTEST_SKIP() << count.reason();
  try {
    open_nvml_meter(*count);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace eaq::measure
