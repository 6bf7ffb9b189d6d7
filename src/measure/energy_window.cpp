#include "measure/energy_window.hpp"

#include "measure/clock.hpp"

namespace eaq::measure {

EnergyMark mark_energy(const GpuMeter& meter) {
  EnergyMark mark;
  const double before = steady_now_s();
  mark.energy_mj = meter.energy_mj();
  mark.t_s = before + (steady_now_s() - before) / 2;
  return mark;
}

CounterDelta energy_between(const EnergyMark& start, const EnergyMark& end) {
  for (const EnergyMark* mark : {&start, &end}) {
    if (!mark->energy_mj) {
      CounterDelta missing;
      missing.joules = Reading<double>::unavailable(mark->energy_mj.reason());
      return missing;
    }
  }
  return nvml_energy_delta(*start.energy_mj, *end.energy_mj);
}

}  // namespace eaq::measure
