// Energy arithmetic, pure and testable: counter deltas (with reset and wrap handling), trapezoid
// integration of power samples over a window, idle baseline and dynamic energy, per-inference
// figures, and an explicit quality assessment. The seed's compute_energy() counterpart is
// compute_energy() at the bottom.
//
// Units: time in seconds (steady clock, see clock.hpp), power in watts, energy in joules unless a
// name says otherwise (_mj: millijoules, _uj: microjoules).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "measure/reading.hpp"
#include "measure/stats.hpp"

namespace eaq::measure {

// --- Counters ---------------------------------------------------------------------------------

struct CounterDelta {
  Reading<double> joules;  // unavailable with the reason when no trustworthy delta exists
  bool reset = false;      // the counter went backwards (driver reload, GPU reset): no delta
  bool wrapped = false;    // a RAPL counter wrapped once during the window (handled)
};

// NVML's total-energy counter: a 64-bit millijoule count since the driver was loaded. It cannot
// wrap in practice, so a decrease means the driver was reloaded or the GPU reset: flagged, never
// turned into a negative or huge number.
CounterDelta nvml_energy_delta(std::uint64_t start_mj, std::uint64_t end_mj);

// A RAPL energy_uj counter wraps to 0 after max_energy_range_uj. A decrease is taken as exactly one
// wrap (the window must be shorter than one full wrap: minutes at server power); a value above
// the range is flagged as a reset.
CounterDelta rapl_energy_delta(std::uint64_t start_uj, std::uint64_t end_uj,
                               std::uint64_t max_energy_range_uj);

struct CounterReading {
  double t_s = 0;
  std::uint64_t value = 0;
};

// The counter's update period: the median time between consecutive changes of its value (the
// change time is the first reading that shows the new value, so the estimate is only as fine as
// the reading interval). Needs at least three changes (two full periods); nullopt otherwise.
std::optional<double> counter_update_period_s(std::span<const CounterReading> readings);

// Average power, in watts, between the first and the last change of a millijoule counter.
// Measuring between change points removes the error of up to one update period that a plain
// (end - start) / duration has. nullopt with fewer than two changes or a decreasing counter.
std::optional<double> counter_power_between_changes_w(std::span<const CounterReading> readings_mj);

// --- Power samples ------------------------------------------------------------------------------

struct TimedValue {
  double t_s = 0;
  double value = 0;
};

struct SampleIntegral {
  double joules = 0;                  // integral of power over [t0, t1]
  double window_s = 0;                // t1 - t0
  double covered_s = 0;               // part of the window between the first and last sample
  std::size_t samples_in_window = 0;  // samples with t0 <= t <= t1
};

// Trapezoid integral of power (watts) over [t0_s, t1_s]. Samples may be irregular; they must be in
// time order with finite values. Power is interpolated linearly at the window edges; outside the
// first/last sample it is held constant (covered_s tells how much of the window that was).
// Unavailable with no samples. Throws eaq::Error for t1 <= t0 or unordered/non-finite samples.
Reading<SampleIntegral> integrate_power(std::span<const TimedValue> samples_w, double t0_s,
                                        double t1_s);

// Values of the samples with t0 <= t <= t1.
std::vector<double> values_in_window(std::span<const TimedValue> samples, double t0_s, double t1_s);

// --- Idle baseline, dynamic energy, per inference -----------------------------------------------

// Energy above the idle baseline: total - idle_power * duration. It can come out negative when the
// run draws no more than idle (noise); the quality assessment flags that.
double dynamic_energy_j(double total_j, double idle_power_w, double duration_s);

// --- Quality ------------------------------------------------------------------------------------

// The flags an energy number can carry (the energy_quality field joins them with ';', or says
// "ok").
namespace quality_flag {
inline constexpr std::string_view kOk = "ok";
// Neither a counter nor power samples: every energy field is unavailable.
inline constexpr std::string_view kNoEnergySource = "no_energy_source";
// No counter; total energy comes from integrated samples (less exact).
inline constexpr std::string_view kCounterUnavailable = "counter_unavailable";
// The counter went backwards during the window (driver reload or GPU reset): no counter energy.
inline constexpr std::string_view kCounterReset = "counter_reset";
// The counter's update period was not measured, so the window length cannot be judged.
inline constexpr std::string_view kCounterPeriodUnknown = "counter_period_unknown";
// The window spans fewer than min_counter_updates counter updates: the counter cannot resolve it.
inline constexpr std::string_view kWindowTooShort = "window_too_short";
// Fewer than min_samples power samples inside the window.
inline constexpr std::string_view kTooFewSamples = "too_few_samples";
// The samples cover less than min_sample_coverage of the window (edges were extrapolated).
inline constexpr std::string_view kSamplesPartialCoverage = "samples_partial_coverage";
// Counter and integrated samples differ by more than max_disagreement (relative to the counter).
inline constexpr std::string_view kCounterSamplesDisagree = "counter_samples_disagree";
// Total energy is below idle power x duration.
inline constexpr std::string_view kDynamicEnergyNegative = "dynamic_energy_negative";
}  // namespace quality_flag

struct QualityThresholds {
  double min_counter_updates = 10;    // window >= this many update periods
  double max_disagreement = 0.05;     // |samples - counter| / counter
  std::size_t min_samples = 10;       // power samples inside the window
  double min_sample_coverage = 0.99;  // fraction of the window between first and last sample
};

struct EnergyQuality {
  std::vector<std::string> flags;     // quality_flag values, in the order found
  std::vector<std::string> messages;  // one sentence per flag, for warnings
  bool ok() const { return flags.empty(); }
  bool has(std::string_view flag) const;
  std::string summary() const;  // "ok" or the flags joined by ';'
};

// Shortest window the counter can resolve: min_counter_updates x its update period.
double min_window_for_counter_s(double counter_update_period_s,
                                const QualityThresholds& thresholds = {});

// --- The whole computation (the seed's compute_energy) ------------------------------------------

struct EnergyInputs {
  double t0_s = 0;  // the measured window on the steady clock
  double t1_s = 0;
  std::uint64_t num_inferences =
      0;  // what "per inference" divides by (the caller decides: samples)

  // Primary: a hardware energy counter delta over the window (nvml_energy_delta,
  // rapl_energy_delta).
  CounterDelta counter;
  std::string counter_source = "nvml_counter";
  std::optional<double> counter_update_period_s;

  // Secondary: power samples in watts (power_series() of a sampler), or unavailable with why.
  Reading<std::vector<TimedValue>> power_samples_w;
  std::string samples_source = "nvml_power_samples";

  Reading<double> idle_power_w;  // from the idle baseline, or unavailable

  QualityThresholds thresholds;
};

struct EnergyResult {
  double duration_s = 0;
  std::uint64_t num_inferences = 0;

  Reading<double> total_energy_j;  // the counter when it gave a delta, else integrated samples
  std::string energy_source;       // counter_source, samples_source, or "none"
  Reading<double> counter_energy_j;
  Reading<double> energy_from_samples_j;

  Reading<double> energy_per_inference_j;
  Reading<double> energy_per_inference_mj;
  Reading<double> inferences_per_joule;
  Reading<double> energy_from_samples_per_inference_mj;

  Reading<double> idle_power_w;
  Reading<double> dynamic_energy_j;
  Reading<double> dynamic_energy_per_inference_mj;

  Reading<Summary> power_w;  // statistics of the samples inside the window (the seed's *_power_w)
  std::size_t num_power_samples = 0;  // samples inside the window
  Reading<double> counter_update_period_ms;

  EnergyQuality quality;
};

// Throws eaq::Error for t1 <= t0 or num_inferences == 0; everything else that is missing becomes
// an unavailable field with its reason plus a quality flag.
EnergyResult compute_energy(const EnergyInputs& in);

}  // namespace eaq::measure
