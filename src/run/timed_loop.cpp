#include "run/timed_loop.hpp"

#include <chrono>
#include <thread>

#include "core/error.hpp"
#include "measure/clock.hpp"

namespace eaq::run {

namespace {

// Polls the counter (the device idle) until it differs from its first reading; false when it
// cannot be read or does not move within wait_s.
bool wait_for_counter_update(const TimedLoopOptions& options) {
  const std::optional<std::uint64_t> first = options.read_counter();
  if (!first) return false;
  const double give_up = measure::steady_now_s() + options.counter_wait_s;
  while (measure::steady_now_s() < give_up) {
    // A read takes microseconds; 100 us apart keeps the start within 0.1 ms of the update.
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    const std::optional<std::uint64_t> now = options.read_counter();
    if (!now) return false;
    if (*now != *first) return true;
  }
  return false;
}

}  // namespace

TimedLoopResult run_timed_loop(const std::function<void(std::int64_t)>& iteration,
                               const std::function<void()>& sync, const TimedLoopOptions& options,
                               const std::function<void()>& at_start,
                               const std::function<void()>& at_end) {
  EAQ_CHECK(options.num_iters > 0, "--num_iters must be positive, got {}", options.num_iters);
  TimedLoopResult result;
  if (options.sync_each_iter)
    result.latencies_s.reserve(static_cast<std::size_t>(options.num_iters));
  sync();
  if (options.read_counter) result.started_at_update = wait_for_counter_update(options);
  if (at_start) at_start();
  result.t0_s = measure::steady_now_s();
  double last_end = result.t0_s;
  std::int64_t i = 0;
  while (true) {
    iteration(i);
    if (options.sync_each_iter) {
      sync();
      const double now = measure::steady_now_s();
      result.latencies_s.push_back(now - last_end);
      last_end = now;
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
  // On to the counter's next update, one synchronized iteration at a time (with sync_each_iter
  // off too: the update must be seen when the device has done exactly the work enqueued). The
  // counter is read while the iteration runs, not between iterations: an NVML read takes from
  // tens of microseconds to, now and then, milliseconds, and read between iterations it left the
  // GPU idle inside the window (decode steps 3% slower on an H100, docs/results.md). Seen moved
  // during iteration i, the update happened before i ended: the window ends with i.
  if (options.read_counter) {
    const std::optional<std::uint64_t> last = options.read_counter();
    const double give_up = measure::steady_now_s() + options.counter_wait_s;
    while (last && measure::steady_now_s() < give_up) {
      iteration(i);
      const std::optional<std::uint64_t> now = options.read_counter();
      sync();
      ++i;
      if (options.sync_each_iter) {
        const double end = measure::steady_now_s();
        result.latencies_s.push_back(end - last_end);
        last_end = end;
      }
      if (!now) break;
      if (*now != *last) {
        result.ended_at_update = true;
        break;
      }
    }
  }
  result.t1_s = measure::steady_now_s();
  if (at_end) at_end();
  result.iterations = i;
  return result;
}

std::string describe_window_edges(const TimedLoopOptions& options, const TimedLoopResult& result) {
  if (!options.read_counter)
    return "the loop's first and last iterations (no energy counter to align to)";
  if (result.started_at_update && result.ended_at_update) return "energy-counter updates";
  if (!result.started_at_update && !result.ended_at_update) {
    return "the loop's first and last iterations (the energy counter did not move)";
  }
  return result.started_at_update
             ? "an energy-counter update at the start, the loop's last iteration at the end"
             : "the loop's first iteration at the start, an energy-counter update at the end";
}

}  // namespace eaq::run
