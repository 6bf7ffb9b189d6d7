#include "measure/power_sampler.hpp"

#include <fmt/format.h>

namespace eaq::measure {

std::vector<TimedValue> power_series(const std::vector<PowerSample>& samples, PowerField field) {
  std::vector<TimedValue> series;
  series.reserve(samples.size());
  for (const PowerSample& s : samples) {
    std::optional<double> watts;
    switch (field) {
      case PowerField::Best:
        watts = s.instant_power_w ? s.instant_power_w : s.power_w;
        break;
      case PowerField::Averaged:
        watts = s.power_w;
        break;
      case PowerField::Instant:
        watts = s.instant_power_w;
        break;
    }
    if (watts) series.push_back({s.t_s, *watts});
  }
  return series;
}

std::vector<CounterReading> energy_counter_series(const std::vector<PowerSample>& samples) {
  std::vector<CounterReading> series;
  for (const PowerSample& s : samples) {
    if (s.energy_mj) series.push_back({s.t_s, *s.energy_mj});
  }
  return series;
}

Reading<std::vector<TimedValue>> power_samples_or_reason(const PowerSampler& sampler,
                                                         PowerField field) {
  std::vector<TimedValue> series = power_series(sampler.samples(), field);
  if (!series.empty()) return Reading<std::vector<TimedValue>>::ok(std::move(series));
  std::string reason = sampler.unavailable_reason();
  if (reason.empty()) reason = fmt::format("{} recorded no power samples", sampler.source_name());
  return Reading<std::vector<TimedValue>>::unavailable(reason);
}

}  // namespace eaq::measure
