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
    gate_.mark();
    ++enqueued_;
  }
  gate_.open();
  ++opened_;
  synced_ = false;
  enqueue_(i + 1);  // behind the gate, while step i runs
  gate_.mark();
  ++enqueued_;
}

void GatedSteps::sync() {
  if (opened_ == 0 || synced_) return;
  gate_.wait_for_mark(opened_ - 1);
  synced_ = true;
}

void GatedSteps::drain() {
  sync();
  if (enqueued_ > opened_) {
    gate_.open();
    ++opened_;
    synced_ = false;
    sync();
  }
}

}  // namespace eaq::run
