#include "measure/energy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.hpp"

namespace eaq::measure {

// --- Counters ---------------------------------------------------------------------------------

CounterDelta nvml_energy_delta(std::uint64_t start_mj, std::uint64_t end_mj) {
  CounterDelta delta;
  if (end_mj < start_mj) {
    delta.reset = true;
    delta.joules = Reading<double>::unavailable(fmt::format(
        "the energy counter went backwards ({} mJ -> {} mJ): the driver was reloaded or the GPU "
        "reset during the window",
        start_mj, end_mj));
    return delta;
  }
  delta.joules = Reading<double>::ok(static_cast<double>(end_mj - start_mj) / 1e3);
  return delta;
}

CounterDelta rapl_energy_delta(std::uint64_t start_uj, std::uint64_t end_uj,
                               std::uint64_t max_energy_range_uj) {
  CounterDelta delta;
  if (max_energy_range_uj > 0 && (start_uj > max_energy_range_uj || end_uj > max_energy_range_uj)) {
    delta.reset = true;
    delta.joules = Reading<double>::unavailable(
        fmt::format("RAPL reading beyond max_energy_range_uj ({} or {} > {})", start_uj, end_uj,
                    max_energy_range_uj));
    return delta;
  }
  if (end_uj >= start_uj) {
    delta.joules = Reading<double>::ok(static_cast<double>(end_uj - start_uj) / 1e6);
    return delta;
  }
  if (max_energy_range_uj == 0) {
    delta.reset = true;
    delta.joules = Reading<double>::unavailable(
        fmt::format("RAPL counter went backwards ({} uJ -> {} uJ) and its wrap range is unknown",
                    start_uj, end_uj));
    return delta;
  }
  delta.wrapped = true;
  delta.joules =
      Reading<double>::ok(static_cast<double>(max_energy_range_uj - start_uj + end_uj) / 1e6);
  return delta;
}

namespace {

// Indices of readings whose value differs from the previous reading.
std::vector<std::size_t> change_points(std::span<const CounterReading> readings) {
  std::vector<std::size_t> changes;
  for (std::size_t i = 1; i < readings.size(); ++i) {
    if (readings[i].value != readings[i - 1].value) changes.push_back(i);
  }
  return changes;
}

}  // namespace

std::optional<double> counter_update_period_s(std::span<const CounterReading> readings) {
  const std::vector<std::size_t> changes = change_points(readings);
  if (changes.size() < 3) return std::nullopt;
  std::vector<double> intervals;
  for (std::size_t k = 1; k < changes.size(); ++k) {
    intervals.push_back(readings[changes[k]].t_s - readings[changes[k - 1]].t_s);
  }
  return median(intervals);
}

std::optional<double> counter_power_between_changes_w(std::span<const CounterReading> readings_mj) {
  const std::vector<std::size_t> changes = change_points(readings_mj);
  if (changes.size() < 2) return std::nullopt;
  const CounterReading& first = readings_mj[changes.front()];
  const CounterReading& last = readings_mj[changes.back()];
  if (last.value < first.value || last.t_s <= first.t_s) return std::nullopt;
  return static_cast<double>(last.value - first.value) / 1e3 / (last.t_s - first.t_s);
}

// --- Power samples ------------------------------------------------------------------------------

namespace {

void check_samples(std::span<const TimedValue> samples) {
  for (std::size_t i = 0; i < samples.size(); ++i) {
    EAQ_CHECK(std::isfinite(samples[i].t_s) && std::isfinite(samples[i].value),
              "power sample {} is not finite (t={}, value={})", i, samples[i].t_s,
              samples[i].value);
    EAQ_CHECK(i == 0 || samples[i].t_s >= samples[i - 1].t_s,
              "power samples out of time order at sample {} ({} s after {} s)", i, samples[i].t_s,
              samples[i - 1].t_s);
  }
}

// Piecewise-linear through the samples, constant before the first and after the last.
double interpolate(std::span<const TimedValue> samples, double t) {
  if (t <= samples.front().t_s) return samples.front().value;
  if (t >= samples.back().t_s) return samples.back().value;
  const auto upper =
      std::upper_bound(samples.begin(), samples.end(), t,
                       [](double time, const TimedValue& s) { return time < s.t_s; });
  const TimedValue& b = *upper;
  const TimedValue& a = *(upper - 1);
  const double span = b.t_s - a.t_s;
  if (span <= 0) return b.value;
  return a.value + (b.value - a.value) * (t - a.t_s) / span;
}

}  // namespace

Reading<SampleIntegral> integrate_power(std::span<const TimedValue> samples_w, double t0_s,
                                        double t1_s) {
  EAQ_CHECK(t1_s > t0_s, "energy window is empty: end {} s is not after start {} s", t1_s, t0_s);
  check_samples(samples_w);
  if (samples_w.empty()) return Reading<SampleIntegral>::unavailable("no power samples");

  // Breakpoints: the window edges and every sample strictly inside. Between breakpoints the
  // interpolant is linear, so the trapezoid rule on them is exact for it.
  std::vector<TimedValue> points;
  points.push_back({t0_s, interpolate(samples_w, t0_s)});
  SampleIntegral result;
  for (const TimedValue& s : samples_w) {
    if (s.t_s >= t0_s && s.t_s <= t1_s) ++result.samples_in_window;
    if (s.t_s > t0_s && s.t_s < t1_s) points.push_back(s);
  }
  points.push_back({t1_s, interpolate(samples_w, t1_s)});

  for (std::size_t i = 1; i < points.size(); ++i) {
    result.joules +=
        0.5 * (points[i].value + points[i - 1].value) * (points[i].t_s - points[i - 1].t_s);
  }
  result.window_s = t1_s - t0_s;
  const double covered_begin = std::max(t0_s, samples_w.front().t_s);
  const double covered_end = std::min(t1_s, samples_w.back().t_s);
  result.covered_s = std::max(0.0, covered_end - covered_begin);
  return Reading<SampleIntegral>::ok(result);
}

std::vector<double> values_in_window(std::span<const TimedValue> samples, double t0_s,
                                     double t1_s) {
  std::vector<double> values;
  for (const TimedValue& s : samples) {
    if (s.t_s >= t0_s && s.t_s <= t1_s) values.push_back(s.value);
  }
  return values;
}

double dynamic_energy_j(double total_j, double idle_power_w, double duration_s) {
  return total_j - idle_power_w * duration_s;
}

// --- Quality ------------------------------------------------------------------------------------

bool EnergyQuality::has(std::string_view flag) const {
  return std::find(flags.begin(), flags.end(), flag) != flags.end();
}

std::string EnergyQuality::summary() const {
  if (flags.empty()) return std::string(quality_flag::kOk);
  std::string joined;
  for (const std::string& f : flags) joined += (joined.empty() ? "" : ";") + f;
  return joined;
}

double min_window_for_counter_s(double counter_update_period_s,
                                const QualityThresholds& thresholds) {
  return thresholds.min_counter_updates * counter_update_period_s;
}

namespace {

void flag(EnergyQuality& quality, std::string_view code, std::string message) {
  quality.flags.emplace_back(code);
  quality.messages.push_back(std::move(message));
}

Reading<double> per_inference(const Reading<double>& joules, std::uint64_t n, double scale) {
  return joules.map([&](double j) { return j / static_cast<double>(n) * scale; });
}

}  // namespace

EnergyResult compute_energy(const EnergyInputs& in) {
  EAQ_CHECK(in.t1_s > in.t0_s, "energy window is empty: end {} s is not after start {} s", in.t1_s,
            in.t0_s);
  EAQ_CHECK(in.num_inferences > 0, "energy per inference needs at least one inference");
  const QualityThresholds& th = in.thresholds;

  EnergyResult r;
  r.duration_s = in.t1_s - in.t0_s;
  r.num_inferences = in.num_inferences;
  r.counter_energy_j = in.counter.joules;
  if (in.counter_update_period_s) {
    r.counter_update_period_ms = Reading<double>::ok(*in.counter_update_period_s * 1e3);
  } else {
    r.counter_update_period_ms =
        Reading<double>::unavailable("the counter's update period was not measured");
  }

  // Samples: integral over the window and the seed's statistics of the samples inside it.
  std::optional<SampleIntegral> integral;
  if (in.power_samples_w) {
    const std::vector<TimedValue>& samples = *in.power_samples_w;
    const Reading<SampleIntegral> got = integrate_power(samples, in.t0_s, in.t1_s);
    if (got) integral = *got;
    r.energy_from_samples_j = got.map([](const SampleIntegral& s) { return s.joules; });
    const std::vector<double> inside = values_in_window(samples, in.t0_s, in.t1_s);
    r.num_power_samples = inside.size();
    if (const auto summary = summarize(inside)) {
      r.power_w = Reading<Summary>::ok(*summary);
    } else {
      r.power_w = Reading<Summary>::unavailable(
          fmt::format("no power sample inside the {:.1f} ms window", r.duration_s * 1e3));
    }
  } else {
    r.energy_from_samples_j = Reading<double>::unavailable(in.power_samples_w.reason());
    r.power_w = Reading<Summary>::unavailable(in.power_samples_w.reason());
  }

  // Total: the counter first, the samples second.
  if (r.counter_energy_j) {
    r.total_energy_j = r.counter_energy_j;
    r.energy_source = in.counter_source;
  } else if (r.energy_from_samples_j) {
    r.total_energy_j = r.energy_from_samples_j;
    r.energy_source = in.samples_source;
  } else {
    r.total_energy_j = Reading<double>::unavailable(
        fmt::format("no energy source: counter: {}; power samples: {}", r.counter_energy_j.reason(),
                    r.energy_from_samples_j.reason()));
    r.energy_source = "none";
  }

  const std::uint64_t n = in.num_inferences;
  r.energy_per_inference_j = per_inference(r.total_energy_j, n, 1.0);
  r.energy_per_inference_mj = per_inference(r.total_energy_j, n, 1e3);
  r.energy_from_samples_per_inference_mj = per_inference(r.energy_from_samples_j, n, 1e3);
  if (r.total_energy_j && *r.total_energy_j > 0) {
    r.inferences_per_joule = Reading<double>::ok(static_cast<double>(n) / *r.total_energy_j);
  } else if (r.total_energy_j) {
    r.inferences_per_joule = Reading<double>::unavailable("total energy is zero");
  } else {
    r.inferences_per_joule = Reading<double>::unavailable(r.total_energy_j.reason());
  }

  r.idle_power_w = in.idle_power_w;
  if (r.total_energy_j && r.idle_power_w) {
    r.dynamic_energy_j =
        Reading<double>::ok(dynamic_energy_j(*r.total_energy_j, *r.idle_power_w, r.duration_s));
  } else {
    r.dynamic_energy_j = Reading<double>::unavailable(
        !r.total_energy_j ? r.total_energy_j.reason()
                          : fmt::format("no idle baseline: {}", r.idle_power_w.reason()));
  }
  r.dynamic_energy_per_inference_mj = per_inference(r.dynamic_energy_j, n, 1e3);

  // Quality.
  EnergyQuality& q = r.quality;
  if (!r.counter_energy_j && !r.energy_from_samples_j) {
    flag(q, quality_flag::kNoEnergySource, r.total_energy_j.reason());
  }
  if (in.counter.reset) {
    flag(q, quality_flag::kCounterReset, in.counter.joules.reason());
  } else if (!r.counter_energy_j && r.energy_from_samples_j) {
    flag(q, quality_flag::kCounterUnavailable,
         fmt::format("no energy counter ({}); total energy integrates power samples",
                     r.counter_energy_j.reason()));
  }
  if (r.counter_energy_j) {
    if (!in.counter_update_period_s) {
      flag(q, quality_flag::kCounterPeriodUnknown,
           "the energy counter's update period was not measured: cannot tell whether the window "
           "is long enough for it");
    } else {
      const double period_s = *in.counter_update_period_s;
      const double needed_s = min_window_for_counter_s(period_s, th);
      if (r.duration_s < needed_s) {
        flag(q, quality_flag::kWindowTooShort,
             fmt::format("window too short for the counter: {:.1f} ms < {:g} x update period "
                         "{:.1f} ms; use --min-duration-s",
                         r.duration_s * 1e3, th.min_counter_updates, period_s * 1e3));
      }
    }
  }
  if (integral) {
    if (integral->samples_in_window < th.min_samples) {
      flag(q, quality_flag::kTooFewSamples,
           fmt::format("only {} power sample(s) inside the {:.1f} ms window (want >= {})",
                       integral->samples_in_window, r.duration_s * 1e3, th.min_samples));
    }
    const double coverage = integral->covered_s / integral->window_s;
    if (coverage < th.min_sample_coverage) {
      flag(q, quality_flag::kSamplesPartialCoverage,
           fmt::format("power samples cover only {:.1f}% of the window; the rest was extrapolated",
                       coverage * 100.0));
    }
  }
  if (r.counter_energy_j && r.energy_from_samples_j && *r.counter_energy_j > 0) {
    const double counter_j = *r.counter_energy_j;
    const double samples_j = *r.energy_from_samples_j;
    const double disagreement = std::abs(samples_j - counter_j) / counter_j;
    if (disagreement > th.max_disagreement) {
      flag(q, quality_flag::kCounterSamplesDisagree,
           fmt::format("counter energy {:.4g} J and sample energy {:.4g} J differ by {:.1f}% "
                       "(> {:g}%)",
                       counter_j, samples_j, disagreement * 100.0, th.max_disagreement * 100.0));
    }
  }
  if (r.dynamic_energy_j && *r.dynamic_energy_j < 0) {
    flag(q, quality_flag::kDynamicEnergyNegative,
         fmt::format("total energy {:.4g} J is below idle power x duration ({:.4g} J)",
                     *r.total_energy_j, *r.idle_power_w * r.duration_s));
  }
  return r;
}

}  // namespace eaq::measure
