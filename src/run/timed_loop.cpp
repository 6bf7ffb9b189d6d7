#include "run/timed_loop.hpp"

#include <atomic>
#include <chrono>
#include <thread>

#include "core/error.hpp"
#include "measure/clock.hpp"

namespace eaq::run {

namespace {

enum class CounterWait { Updated, NotMoved, Unreadable, Stopped };

// Reads the counter every `interval` until it differs from its first reading, it cannot be read,
// counter_wait_s has passed, or `stop` is set.
CounterWait wait_for_counter_update(const TimedLoopOptions& options,
                                    std::chrono::microseconds interval,
                                    const std::atomic<bool>* stop = nullptr) {
  const std::optional<std::uint64_t> first = options.read_counter();
  if (!first) return CounterWait::Unreadable;
  const double give_up = measure::steady_now_s() + options.counter_wait_s;
  while (measure::steady_now_s() < give_up) {
    if (stop && stop->load()) return CounterWait::Stopped;
    std::this_thread::sleep_for(interval);
    const std::optional<std::uint64_t> now = options.read_counter();
    if (!now) return CounterWait::Unreadable;
    if (*now != *first) return CounterWait::Updated;
  }
  return CounterWait::NotMoved;
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
  // Reads 100 us apart keep the start within 0.1 ms (and one read) of the update.
  const CounterWait start_wait =
      options.read_counter ? wait_for_counter_update(options, std::chrono::microseconds(100))
                           : CounterWait::Unreadable;
  result.started_at_update = start_wait == CounterWait::Updated;
  if (at_start) at_start();
  result.t0_s = measure::steady_now_s();
  double last_end = result.t0_s;
  const auto record_latency = [&] {  // after an iteration's sync
    const double end_s = measure::steady_now_s();
    result.latencies_s.push_back(end_s - last_end);
    last_end = end_s;
  };
  std::int64_t i = 0;
  while (true) {
    iteration(i);
    if (options.sync_each_iter) {
      sync();
      record_latency();
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
  // off too: the update must be seen when the device has done exactly the work enqueued). Another
  // thread watches the counter, so the iterations run at their own pace: an NVML read takes up to
  // milliseconds, and made between iterations (0859500 and before) it slowed the last ~100 ms of
  // each window to one iteration per read (GPT-2 decode: 3-5% fewer tokens/s, docs/results.md).
  // The window ends with the first iteration that completes after the watcher saw the update.
  if (start_wait != CounterWait::Unreadable) {
    // The watcher takes the first reading too: read here, it would idle the GPU inside the window.
    // 1 ms apart: a 1 ms later end costs ~0.05% of a 2 s window, and the driver is not polled
    // hard while the loop's thread launches and syncs.
    std::atomic<bool> moved{false}, unreadable{false}, stop{false};
    std::thread watcher([&] {
      const CounterWait wait =
          wait_for_counter_update(options, std::chrono::milliseconds(1), &stop);
      moved.store(wait == CounterWait::Updated);
      unreadable.store(wait == CounterWait::Unreadable);
    });
    const double give_up = measure::steady_now_s() + options.counter_wait_s;
    while (!unreadable.load() && measure::steady_now_s() < give_up) {
      iteration(i);
      sync();
      ++i;
      if (options.sync_each_iter) record_latency();
      if (moved.load()) {
        result.ended_at_update = true;
        break;
      }
    }
    stop.store(true);
    watcher.join();
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
