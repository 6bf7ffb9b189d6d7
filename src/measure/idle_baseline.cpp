#include "measure/idle_baseline.hpp"

#include <fmt/format.h>

#include <thread>

#include "core/error.hpp"
#include "measure/clock.hpp"

namespace eaq::measure {

CounterProbe probe_energy_counter(const GpuMeter& meter, std::chrono::milliseconds duration,
                                  std::chrono::microseconds poll) {
  EAQ_CHECK(duration.count() > 0, "counter probe duration must be positive");
  EAQ_CHECK(poll.count() > 0, "counter probe poll interval must be positive");
  CounterProbe probe;
  std::string failure;
  const auto end = SteadyClock::now() + duration;
  auto next = SteadyClock::now();
  while (SteadyClock::now() < end) {
    const Reading<std::uint64_t> mj = meter.energy_mj();
    if (!mj) {
      failure = mj.reason();
      break;
    }
    probe.readings.push_back({steady_now_s(), *mj});
    next += poll;
    std::this_thread::sleep_until(next);
  }
  if (probe.readings.empty()) {
    const std::string reason = failure.empty() ? "no counter reading" : failure;
    probe.update_period_s = Reading<double>::unavailable(reason);
    probe.power_w = Reading<double>::unavailable(reason);
    return probe;
  }
  if (const auto period = counter_update_period_s(probe.readings)) {
    probe.update_period_s = Reading<double>::ok(*period);
  } else {
    probe.update_period_s = Reading<double>::unavailable(
        fmt::format("the energy counter changed fewer than 3 times in {} ms", duration.count()));
  }
  if (const auto watts = counter_power_between_changes_w(probe.readings)) {
    probe.power_w = Reading<double>::ok(*watts);
  } else {
    probe.power_w = Reading<double>::unavailable(
        fmt::format("the energy counter changed fewer than 2 times in {} ms", duration.count()));
  }
  return probe;
}

IdleBaseline measure_idle_baseline(const GpuMeter& meter, std::chrono::milliseconds duration,
                                   PowerLoggerOptions logger_options,
                                   std::chrono::microseconds poll) {
  IdleBaseline idle;
  PowerLogger logger(meter, logger_options);
  const bool logging = logger.start();
  const double t0 = steady_now_s();
  const CounterProbe probe = probe_energy_counter(meter, duration, poll);
  const double t1 = steady_now_s();
  logger.stop();

  idle.duration_s = t1 - t0;
  idle.samples = logger.samples();
  idle.counter_power_w = probe.power_w;
  idle.counter_update_period_s = probe.update_period_s;

  const std::vector<TimedValue> series = power_series(idle.samples);
  if (!logging) {
    idle.samples_power_w = Reading<double>::unavailable(logger.unavailable_reason());
  } else if (series.empty()) {
    idle.samples_power_w =
        Reading<double>::unavailable("no power samples during the idle baseline");
  } else {
    const Reading<SampleIntegral> integral = integrate_power(series, t0, t1);
    idle.samples_power_w =
        integral.map([](const SampleIntegral& s) { return s.joules / s.window_s; });
  }

  if (idle.counter_power_w) {
    idle.idle_power_w = idle.counter_power_w;
    idle.idle_power_source = "nvml_counter";
  } else if (idle.samples_power_w) {
    idle.idle_power_w = idle.samples_power_w;
    idle.idle_power_source = "nvml_power_samples";
  } else {
    idle.idle_power_w = Reading<double>::unavailable(fmt::format(
        "counter: {}; samples: {}", idle.counter_power_w.reason(), idle.samples_power_w.reason()));
    idle.idle_power_source = "none";
  }
  return idle;
}

}  // namespace eaq::measure
