// A GpuMeter test double whose power and energy are functions of time, so power-logger and energy
// tests are deterministic: power_w(t) and energy_j(t) (its integral) with t in seconds since the
// meter was made; the energy counter only advances every counter_period_s, like NVML's.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "measure/clock.hpp"
#include "measure/gpu_meter.hpp"

namespace eaq::test {

class FakeGpuMeter final : public measure::GpuMeter {
 public:
  FakeGpuMeter(std::function<double(double)> power_w, std::function<double(double)> energy_j,
               double counter_period_s)
      : power_w_(std::move(power_w)),
        energy_j_(std::move(energy_j)),
        counter_period_s_(counter_period_s),
        t0_s_(measure::steady_now_s()) {}

  // Constant power: the simplest fake.
  static FakeGpuMeter constant(double watts, double counter_period_s) {
    return FakeGpuMeter([watts](double) { return watts; }, [watts](double t) { return watts * t; },
                        counter_period_s);
  }

  double t0_s() const { return t0_s_; }
  double elapsed(double steady_s) const { return steady_s - t0_s_; }
  // The exact energy between two steady-clock times.
  double exact_energy_j(double t0, double t1) const {
    return energy_j_(t1 - t0_s_) - energy_j_(t0 - t0_s_);
  }
  double power_at(double steady_s) const { return power_w_(steady_s - t0_s_); }

  mutable std::atomic<int> power_reads{0};
  mutable std::atomic<int> energy_reads{0};
  std::atomic<bool> fail_readings{false};  // every power/energy read becomes unavailable

  bool available() const override { return true; }
  std::string unavailable_reason() const override { return {}; }
  unsigned index() const override { return 0; }

  measure::Reading<std::string> name() const override { return ok<std::string>("Fake GPU"); }
  measure::Reading<std::string> uuid() const override {
    return ok<std::string>("GPU-00000000-1111-2222-3333-444444444444");
  }
  measure::Reading<std::string> pci_bus_id() const override {
    return ok<std::string>("00000000:3B:00.0");
  }
  measure::Reading<std::string> driver_version() const override {
    return ok<std::string>("550.54.15");
  }
  measure::Reading<std::string> cuda_driver_version() const override {
    return ok<std::string>("12.4");
  }

  measure::Reading<std::uint64_t> energy_mj() const override {
    ++energy_reads;
    if (fail_readings) return measure::Reading<std::uint64_t>::unavailable("fake energy failure");
    const double t = measure::steady_now_s() - t0_s_;
    const double updated_at = std::floor(t / counter_period_s_) * counter_period_s_;
    return ok<std::uint64_t>(kCounterOffsetMj +
                             static_cast<std::uint64_t>(std::llround(energy_j_(updated_at) * 1e3)));
  }
  measure::Reading<std::uint32_t> power_mw() const override { return power(); }
  measure::Reading<std::uint32_t> instant_power_mw() const override { return power(); }

  measure::Reading<std::uint32_t> sm_clock_mhz() const override { return ok<std::uint32_t>(1980); }
  measure::Reading<std::uint32_t> mem_clock_mhz() const override { return ok<std::uint32_t>(2619); }
  measure::Reading<std::uint32_t> temperature_c() const override { return ok<std::uint32_t>(41); }
  measure::Reading<std::uint32_t> power_limit_mw() const override {
    return ok<std::uint32_t>(700000);
  }
  measure::Reading<measure::GpuMemoryInfo> memory() const override {
    return ok<measure::GpuMemoryInfo>({80'000'000'000ULL, 79'000'000'000ULL, 1'000'000'000ULL});
  }

  static constexpr std::uint64_t kCounterOffsetMj = 123'456'789;  // the driver has been up a while

 private:
  template <class T>
  static measure::Reading<T> ok(T value) {
    return measure::Reading<T>::ok(std::move(value));
  }
  measure::Reading<std::uint32_t> power() const {
    ++power_reads;
    if (fail_readings) return measure::Reading<std::uint32_t>::unavailable("fake power failure");
    const double t = measure::steady_now_s() - t0_s_;
    return ok<std::uint32_t>(static_cast<std::uint32_t>(std::llround(power_w_(t) * 1e3)));
  }

  std::function<double(double)> power_w_;
  std::function<double(double)> energy_j_;
  double counter_period_s_;
  double t0_s_;
};

}  // namespace eaq::test
