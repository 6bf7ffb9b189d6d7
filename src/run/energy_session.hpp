// Everything energy around one measured window, in the order DESIGN.md asks for: an idle
// baseline first, then a power sampler (NVML thread or nvidia-smi) started before the window,
// the energy counter read after a device sync at both ends, and the result with its quality
// flags. CPU runs use RAPL when readable; otherwise every energy figure is unavailable, with why.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "measure/energy.hpp"
#include "measure/energy_window.hpp"
#include "measure/gpu_meter.hpp"
#include "measure/idle_baseline.hpp"
#include "measure/power_sampler.hpp"
#include "measure/rapl.hpp"

namespace eaq::run {

enum class PowerSource { Nvml, NvidiaSmi, None };
PowerSource parse_power_source(const std::string& name);  // --power-source
const char* power_source_name(PowerSource source);

struct EnergySessionOptions {
  PowerSource source = PowerSource::Nvml;
  std::chrono::milliseconds sample_interval{100};  // --power_sample_interval
  double idle_seconds = 2.0;                       // --idle-seconds
  unsigned smi_gpu_index = 0;                      // nvidia-smi -i
};

class EnergySession {
 public:
  // `meter` reads the GPU (an UnavailableGpuMeter for CPU runs); `rapl` is used when the meter
  // is unavailable (CPU runs). Both must outlive the session.
  EnergySession(const measure::GpuMeter& meter, const measure::RaplMeter* rapl,
                EnergySessionOptions options);
  ~EnergySession();

  // Measures idle power and the counter's update period; the device must be idle.
  void measure_idle();
  const std::optional<measure::IdleBaseline>& idle() const { return idle_; }

  // A window long enough for the counter to resolve (10 update periods) and for the power
  // samples to pass the quality check (11 sample intervals), or 0 when neither applies.
  double min_window_s() const;

  // The GPU energy counter for TimedLoopOptions::read_counter (the window's ends at counter
  // updates), with how long to wait for an update (2.5 update periods, at least 0.25 s); nullptr
  // without NVML or without energy measurement.
  std::function<std::optional<std::uint64_t>()> counter_reader() const;
  double counter_wait_s() const;

  // Around the measured loop; the caller synchronizes the device before each call.
  void start_sampling();  // before the loop's first sync
  void mark_start();      // right after that sync
  void mark_end();        // right after the last sync
  void stop_sampling();

  measure::EnergyResult result(double t0_s, double t1_s, std::uint64_t num_inferences) const;
  // Why there is no energy at all, or empty.
  std::string no_energy_reason() const { return no_energy_reason_; }

 private:
  const measure::GpuMeter& meter_;
  const measure::RaplMeter* rapl_;
  EnergySessionOptions options_;
  std::unique_ptr<measure::PowerSampler> sampler_;
  std::optional<measure::IdleBaseline> idle_;
  measure::EnergyMark start_mark_, end_mark_;
  std::optional<measure::RaplReading> rapl_start_, rapl_end_;
  std::string no_energy_reason_;
};

}  // namespace eaq::run
