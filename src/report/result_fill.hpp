// Filling a Result from what the measure library produced, so that every field name is written
// in one place (here and schema.cpp) and not scattered through the command.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "measure/energy.hpp"
#include "measure/system_info.hpp"
#include "report/result.hpp"

namespace eaq::report {

// mean/std/min/max/median/p95/p99_latency (seconds, per iteration), throughput (num_inferences /
// total_time_s), total_time_s, num_inferences. Throws eaq::Error for no latencies or a
// non-positive total time.
void fill_latency(Result& result, std::span<const double> iteration_latencies_s,
                  double total_time_s, std::uint64_t num_inferences);

// Every power and energy field: *_power_w, num_power_samples, idle_power_w, total/dynamic/counter/
// sample energies, per inference figures, energy_window_s, energy_counter_update_period_ms,
// energy_source, energy_quality and energy_quality_notes.
void fill_energy(Result& result, const measure::EnergyResult& energy);

// timestamp (start) and timestamp_end, host, GPU identity, power limit, memory, and the SM/memory
// clocks and temperature at start and end.
void fill_system(Result& result, const measure::SystemSnapshot& start,
                 const measure::SystemSnapshot& end);

// eaq_version and git_commit (build_info), and command_line from argv.
void fill_build_and_command(Result& result, int argc, const char* const* argv);

// argv as a shell would need it typed: arguments with spaces or special characters single-quoted.
std::string join_command_line(int argc, const char* const* argv);

}  // namespace eaq::report
