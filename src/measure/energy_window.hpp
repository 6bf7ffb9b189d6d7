// The two ends of a measured window: read the energy counter and the steady clock together, after
// the caller has synchronised the device, then turn two marks into EnergyInputs' window and
// counter delta.
//
//   sync; const EnergyMark start = mark_energy(meter);
//   ... measured loop ...
//   sync; const EnergyMark end = mark_energy(meter);
//   inputs.t0_s = start.t_s; inputs.t1_s = end.t_s; inputs.counter = energy_between(start, end);
#pragma once

#include <cstdint>

#include "measure/energy.hpp"
#include "measure/gpu_meter.hpp"
#include "measure/reading.hpp"

namespace eaq::measure {

struct EnergyMark {
  double t_s = 0;                    // steady clock, the middle of the counter read
  Reading<std::uint64_t> energy_mj;  // unavailable with the meter's reason
};

EnergyMark mark_energy(const GpuMeter& meter);

// nvml_energy_delta() of the two marks, or unavailable with the reason of the mark that failed.
CounterDelta energy_between(const EnergyMark& start, const EnergyMark& end);

}  // namespace eaq::measure
