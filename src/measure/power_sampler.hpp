// Power samples and the interface every power source implements (the NVML logger thread,
// the nvidia-smi subprocess), so the caller picks one with --power-source and treats them alike.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "measure/energy.hpp"
#include "measure/reading.hpp"

namespace eaq::measure {

struct PowerSample {
  double t_s = 0;                         // steady clock seconds (clock.hpp)
  std::optional<double> power_w;          // averaged board power (NVML power usage, smi power.draw)
  std::optional<double> instant_power_w;  // NVML_FI_DEV_POWER_INSTANT
  std::optional<std::uint64_t> energy_mj;  // NVML total-energy counter
};

class PowerSampler {
 public:
  virtual ~PowerSampler() = default;
  virtual std::string source_name() const = 0;  // e.g. "nvml_power_samples", "nvidia-smi"
  // Starts sampling. False when the source is unavailable: unavailable_reason() says why.
  // Starting a running sampler throws eaq::Error. A restart clears the previous samples.
  virtual bool start() = 0;
  // Stops sampling; idempotent. Takes one last sample where the source allows, so that samples
  // bracket a window that ended just before stop().
  virtual void stop() = 0;
  virtual bool running() const = 0;
  // A copy of the samples so far; safe to call while running.
  virtual std::vector<PowerSample> samples() const = 0;
  // Why the source gave no samples (empty when it works).
  virtual std::string unavailable_reason() const = 0;
};

enum class PowerField { Best, Averaged, Instant };

// The samples as (time, watts) for integrate_power(): Best takes the instantaneous reading where a
// sample has one and the averaged reading otherwise. Samples without the field are skipped.
std::vector<TimedValue> power_series(const std::vector<PowerSample>& samples,
                                     PowerField field = PowerField::Best);

// The energy counter readings in the samples (for counter_update_period_s()).
std::vector<CounterReading> energy_counter_series(const std::vector<PowerSample>& samples);

// The series of a stopped sampler, or unavailable with its reason (no samples at all included):
// what EnergyInputs::power_samples_w wants.
Reading<std::vector<TimedValue>> power_samples_or_reason(const PowerSampler& sampler,
                                                         PowerField field = PowerField::Best);

}  // namespace eaq::measure
