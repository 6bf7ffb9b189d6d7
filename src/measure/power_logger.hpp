// The power-logger thread: samples a GpuMeter (power, instantaneous power, energy counter) at a
// fixed interval on steady-clock timestamps. The seed's PowerLogger, with NVML instead of polling
// nvidia-smi.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "measure/gpu_meter.hpp"
#include "measure/power_sampler.hpp"

namespace eaq::measure {

struct PowerLoggerOptions {
  std::chrono::milliseconds interval{100};  // --power_sample_interval
  bool read_power = true;                   // nvmlDeviceGetPowerUsage
  bool read_instant_power = true;           // NVML_FI_DEV_POWER_INSTANT
  bool read_energy = true;                  // total-energy counter
};

class PowerLogger final : public PowerSampler {
 public:
  // `meter` must outlive the logger. Throws eaq::Error for an interval below 1 ms.
  explicit PowerLogger(const GpuMeter& meter, PowerLoggerOptions options = {});
  ~PowerLogger() override;  // stops

  PowerLogger(const PowerLogger&) = delete;
  PowerLogger& operator=(const PowerLogger&) = delete;

  std::string source_name() const override { return "nvml_power_samples"; }
  // Takes the first sample before returning, so samples start before any window the caller opens.
  bool start() override;
  void stop() override;
  bool running() const override;
  std::vector<PowerSample> samples() const override;
  std::string unavailable_reason() const override;

  // The energy counter's update period as seen in the samples (median time between changes;
  // only as fine as the sampling interval). Unavailable with fewer than three changes.
  Reading<double> observed_counter_update_period_s() const;

 private:
  void run();
  // Reads the meter; records the sample, or, when every read failed, the reason.
  void sample_now();

  const GpuMeter& meter_;
  PowerLoggerOptions options_;

  std::mutex control_mutex_;  // serialises start() and stop()
  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable wake_;
  bool stop_requested_ = false;
  bool running_ = false;
  std::vector<PowerSample> samples_;
  std::string unavailable_reason_;
  std::string last_failure_;  // why the last sample had no reading at all
  std::thread thread_;
};

}  // namespace eaq::measure
