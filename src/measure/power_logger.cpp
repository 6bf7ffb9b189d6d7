#include "measure/power_logger.hpp"

#include <fmt/format.h>

#include <utility>

#include "core/error.hpp"
#include "measure/clock.hpp"

namespace eaq::measure {

PowerLogger::PowerLogger(const GpuMeter& meter, PowerLoggerOptions options)
    : meter_(meter), options_(options) {
  EAQ_CHECK(options_.interval.count() >= 1,
            "power sample interval must be at least 1 ms, got {} ms", options_.interval.count());
}

PowerLogger::~PowerLogger() {
  stop();
}

bool PowerLogger::start() {
  std::lock_guard control(control_mutex_);
  std::unique_lock lock(mutex_);
  EAQ_CHECK(!running_, "the power logger is already running");
  samples_.clear();
  unavailable_reason_.clear();
  last_failure_.clear();
  if (!meter_.available()) {
    unavailable_reason_ = meter_.unavailable_reason();
    return false;
  }
  stop_requested_ = false;
  running_ = true;
  lock.unlock();
  sample_now();
  thread_ = std::thread([this] { run(); });
  return true;
}

void PowerLogger::stop() {
  std::lock_guard control(control_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (!running_) return;
    stop_requested_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  sample_now();
  std::lock_guard lock(mutex_);
  running_ = false;
  if (samples_.empty()) {
    unavailable_reason_ =
        last_failure_.empty() ? "the GPU meter returned no power or energy reading" : last_failure_;
  }
}

bool PowerLogger::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

std::vector<PowerSample> PowerLogger::samples() const {
  std::lock_guard lock(mutex_);
  return samples_;
}

std::string PowerLogger::unavailable_reason() const {
  std::lock_guard lock(mutex_);
  return unavailable_reason_;
}

Reading<double> PowerLogger::observed_counter_update_period_s() const {
  const std::vector<CounterReading> counter = energy_counter_series(samples());
  if (counter.empty()) return Reading<double>::unavailable("no energy counter readings");
  if (const auto period = counter_update_period_s(counter)) return Reading<double>::ok(*period);
  return Reading<double>::unavailable(
      fmt::format("the energy counter changed fewer than 3 times in {} readings", counter.size()));
}

void PowerLogger::run() {
  // Deadlines advance by whole intervals from the start, so sampling does not drift; after an
  // overrun (a slow read) the schedule restarts from now instead of bursting to catch up.
  auto next = SteadyClock::now() + options_.interval;
  std::unique_lock lock(mutex_);
  while (true) {
    if (wake_.wait_until(lock, next, [this] { return stop_requested_; })) return;
    lock.unlock();
    sample_now();
    next += options_.interval;
    const auto now = SteadyClock::now();
    if (next <= now) next = now + options_.interval;
    lock.lock();
  }
}

void PowerLogger::sample_now() {
  const double before = steady_now_s();
  PowerSample sample;
  std::string failure;
  const auto note = [&failure](const std::string& reason) {
    if (failure.empty()) failure = reason;
  };
  if (options_.read_instant_power) {
    const Reading<std::uint32_t> mw = meter_.instant_power_mw();
    if (mw)
      sample.instant_power_w = *mw / 1e3;
    else
      note(mw.reason());
  }
  if (options_.read_power) {
    const Reading<std::uint32_t> mw = meter_.power_mw();
    if (mw)
      sample.power_w = *mw / 1e3;
    else
      note(mw.reason());
  }
  if (options_.read_energy) {
    const Reading<std::uint64_t> mj = meter_.energy_mj();
    if (mj)
      sample.energy_mj = *mj;
    else
      note(mj.reason());
  }
  // The reads take time (NVML: tens to hundreds of microseconds each): stamp the middle.
  sample.t_s = before + (steady_now_s() - before) / 2;

  std::lock_guard lock(mutex_);
  if (sample.power_w || sample.instant_power_w || sample.energy_mj) {
    samples_.push_back(sample);
  } else {
    last_failure_ = failure.empty() ? "every reading is switched off" : failure;
  }
}

}  // namespace eaq::measure
