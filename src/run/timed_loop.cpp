#include "run/timed_loop.hpp"

#include "core/error.hpp"
#include "measure/clock.hpp"

namespace eaq::run {

TimedLoopResult run_timed_loop(const std::function<void(std::int64_t)>& iteration,
                               const std::function<void()>& sync, const TimedLoopOptions& options,
                               const std::function<void()>& at_start,
                               const std::function<void()>& at_end) {
  EAQ_CHECK(options.num_iters > 0, "--num_iters must be positive, got {}", options.num_iters);
  TimedLoopResult result;
  if (options.sync_each_iter)
    result.latencies_s.reserve(static_cast<std::size_t>(options.num_iters));
  sync();
  if (at_start) at_start();
  result.t0_s = measure::steady_now_s();
  double last = result.t0_s;
  std::int64_t i = 0;
  while (true) {
    iteration(i);
    if (options.sync_each_iter) {
      sync();
      const double now = measure::steady_now_s();
      result.latencies_s.push_back(now - last);
      last = now;
    }
    ++i;
    if (i < options.num_iters) continue;
    // Past num_iters: stop once the minimum duration is reached (checked cheaply: without
    // per-iteration syncs the clock runs ahead of the device, so sync before deciding).
    if (options.min_duration_s <= 0.0) break;
    if (!options.sync_each_iter && i % 64 == 0) sync();
    if ((options.sync_each_iter || i % 64 == 0) &&
        measure::steady_now_s() - result.t0_s >= options.min_duration_s) {
      break;
    }
  }
  sync();
  result.t1_s = measure::steady_now_s();
  if (at_end) at_end();
  result.iterations = i;
  return result;
}

}  // namespace eaq::run
