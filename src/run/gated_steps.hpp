// A host loop that syncs after every decode step, with each step enqueued one ahead behind a
// StepGate (backend.hpp): step i + 1 is launched (its first kernels resident, loading weights)
// while the host waits for step i, and let through once the host has seen step i finish. So a
// step no longer waits for the host's launch, and the host still sees every step finish before
// the next one runs. run() and sync() are what run_timed_loop calls as iteration(i) and sync().
#pragma once

#include <cstdint>
#include <functional>

#include "backend/backend.hpp"

namespace eaq::run {

class GatedSteps {
 public:
  // enqueue(i) enqueues step i: whatever it enqueues before the gated graph (a rewind) runs as
  // soon as the step before has finished, the rest once the gate opens.
  GatedSteps(StepGate& gate, std::function<void(std::int64_t)> enqueue);
  GatedSteps(const GatedSteps&) = delete;
  GatedSteps& operator=(const GatedSteps&) = delete;

  // Lets step i through (enqueuing it first when it is the first), then enqueues step i + 1
  // behind the closed gate. Steps run in order from 0; call sync() between two run()s.
  void run(std::int64_t i);
  // Waits for the last step let through (nothing when none was).
  void sync();
  // Lets the step enqueued ahead through and waits for it: it runs, so the steps done are one
  // more than run() was given. Afterwards nothing waits at the gate.
  void drain();

  std::int64_t enqueued() const { return enqueued_; }

 private:
  void open_ahead();  // lets the step enqueued ahead through

  StepGate& gate_;
  std::function<void(std::int64_t)> enqueue_;
  std::int64_t enqueued_ = 0;  // steps enqueued
  std::int64_t opened_ = 0;    // steps let through
  // The gate's marks after the step enqueued ahead and after the last step let through (a gate
  // numbers its marks over its life, across loops).
  std::int64_t ahead_mark_ = -1, opened_mark_ = -1;
  bool synced_ = true;  // the last step let through has been waited for
};

}  // namespace eaq::run
