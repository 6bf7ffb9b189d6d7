// Reading the GPU while it does nothing: the energy counter's update period (how long a window
// must be for the counter to resolve it) and the idle power that dynamic energy subtracts.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "measure/energy.hpp"
#include "measure/gpu_meter.hpp"
#include "measure/power_logger.hpp"

namespace eaq::measure {

struct CounterProbe {
  std::vector<CounterReading> readings;  // millijoules, one per poll
  Reading<double> update_period_s;       // median time between changes
  Reading<double> power_w;               // average power between the first and last change
};

// Polls the energy counter every `poll` for `duration` in the calling thread. With a 1-2 ms poll
// the update period is resolved to about the poll interval.
CounterProbe probe_energy_counter(const GpuMeter& meter, std::chrono::milliseconds duration,
                                  std::chrono::microseconds poll = std::chrono::milliseconds(2));

struct IdleBaseline {
  double duration_s = 0;
  // The counter's estimate when it changed at least twice, else the samples' time-weighted mean.
  Reading<double> idle_power_w;
  std::string idle_power_source;  // "nvml_counter", "nvml_power_samples" or "none"
  Reading<double> counter_power_w;
  Reading<double> samples_power_w;
  Reading<double> counter_update_period_s;
  std::vector<PowerSample> samples;
};

// Runs a PowerLogger and probes the counter at the same time for `duration`. The caller makes sure
// the GPU is idle (synchronised, nothing queued). Right after heavy work the GPU takes a moment
// to drop its clocks, so an idle baseline taken straight after warm-up reads high at first.
IdleBaseline measure_idle_baseline(const GpuMeter& meter, std::chrono::milliseconds duration,
                                   PowerLoggerOptions logger_options = {},
                                   std::chrono::microseconds poll = std::chrono::milliseconds(2));

}  // namespace eaq::measure
