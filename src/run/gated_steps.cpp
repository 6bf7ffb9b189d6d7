#include "run/gated_steps.hpp"

#include <utility>

#include "core/error.hpp"

namespace eaq::run {

GatedSteps::GatedSteps(StepGate& gate, std::function<void(std::int64_t)> enqueue)
    : gate_(gate), enqueue_(std::move(enqueue)) {}

void GatedSteps::run(std::int64_t i) {
  EAQ_CHECK(i == opened_, "gated steps: step {} asked for, step {} is next", i, opened_);
  EAQ_CHECK(synced_, "gated steps: step {} asked for before step {} was waited for", i, i - 1);
  if (enqueued_ == i) {
    enqueue_(i);
    ahead_mark_ = gate_.mark();
    ++enqueued_;
  }
  open_ahead();
  enqueue_(i + 1);  // behind the gate, while step i runs
  ahead_mark_ = gate_.mark();
  ++enqueued_;
}

void GatedSteps::sync() {
  if (synced_) return;
  gate_.wait_for_mark(opened_mark_);
  synced_ = true;
}

void GatedSteps::drain() {
  sync();
  if (enqueued_ > opened_) {
    open_ahead();
    sync();
  }
}

void GatedSteps::open_ahead() {
  gate_.open();
  ++opened_;
  opened_mark_ = ahead_mark_;
  synced_ = false;
}

}  // namespace eaq::run
