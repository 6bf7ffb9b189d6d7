// The measured loop of the seed: iterations timed on the steady clock, with a device sync after
// each (--sync-each-iter, the seed's behaviour) or only at the end, extended past num_iters until
// a minimum duration has passed (--min-duration-s) so the energy counter can resolve the window,
// and with its ends at energy-counter updates when given the counter (read_counter below).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace eaq::run {

struct TimedLoopOptions {
  std::int64_t num_iters = 1000;
  double min_duration_s = 0.0;  // keep iterating until this much time has passed
  bool sync_each_iter = true;
  // The energy counter, when the window should start and end where it updates (NVML's updates
  // every ~100 ms, and a plain read at either end is up to one update stale: +-5% of a 2 s
  // window). Given, the loop waits (the device idle) for the counter to move before at_start,
  // and after its last planned iteration goes on one synchronized iteration at a time until a
  // watcher thread sees the counter move again, so the window's energy is exact to within one
  // iteration and one read. Each wait gives up after counter_wait_s (a counter that does not
  // move). read_counter must be callable from another thread. nullptr: plain ends.
  std::function<std::optional<std::uint64_t>()> read_counter;
  double counter_wait_s = 0.5;
};

struct TimedLoopResult {
  std::vector<double> latencies_s;  // per iteration (empty without sync_each_iter)
  std::int64_t iterations = 0;
  double t0_s = 0, t1_s = 0;  // steady clock at the (synchronized) start and end
  // With read_counter: whether the window started, and ended, at a counter update.
  bool started_at_update = false, ended_at_update = false;
  double total_time_s() const { return t1_s - t0_s; }
};

// `iteration(i)` enqueues iteration i; `sync()` waits for the device. `at_start` runs after the
// first sync (and the wait for a counter update), immediately before the first iteration; `at_end`
// right after the last sync. No I/O happens in between.
TimedLoopResult run_timed_loop(const std::function<void(std::int64_t)>& iteration,
                               const std::function<void()>& sync, const TimedLoopOptions& options,
                               const std::function<void()>& at_start = {},
                               const std::function<void()>& at_end = {});

// Where the window started and ended, for the result's energy_window_edges field.
std::string describe_window_edges(const TimedLoopOptions& options, const TimedLoopResult& result);

}  // namespace eaq::run
