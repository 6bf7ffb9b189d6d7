// One time base for every measurement: std::chrono::steady_clock, as seconds in a double.
// Power samples, the measured window and the counter readings all use it, so they compare directly.
#pragma once

#include <chrono>

namespace eaq::measure {

using SteadyClock = std::chrono::steady_clock;

inline double to_seconds(SteadyClock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

inline double steady_now_s() {
  return to_seconds(SteadyClock::now());
}

}  // namespace eaq::measure
