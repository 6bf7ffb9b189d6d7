// The measured loop of the seed: iterations timed on the steady clock, with a device sync after
// each (--sync-each-iter, the seed's behaviour) or only at the end, extended past num_iters until
// a minimum duration has passed (--min-duration-s) so the energy counter can resolve the window.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace eaq::run {

struct TimedLoopOptions {
  std::int64_t num_iters = 1000;
  double min_duration_s = 0.0;  // keep iterating until this much time has passed
  bool sync_each_iter = true;
};

struct TimedLoopResult {
  std::vector<double> latencies_s;  // per iteration (empty without sync_each_iter)
  std::int64_t iterations = 0;
  double t0_s = 0, t1_s = 0;  // steady clock at the (synchronized) start and end
  double total_time_s() const { return t1_s - t0_s; }
};

// `iteration(i)` enqueues iteration i; `sync()` waits for the device. `at_start` runs after the
// first sync, immediately before the first iteration; `at_end` right after the last sync. No I/O
// happens in between.
TimedLoopResult run_timed_loop(const std::function<void(std::int64_t)>& iteration,
                               const std::function<void()>& sync, const TimedLoopOptions& options,
                               const std::function<void()>& at_start = {},
                               const std::function<void()>& at_end = {});

}  // namespace eaq::run
