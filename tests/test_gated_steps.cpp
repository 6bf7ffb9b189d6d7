// The loop that enqueues each decode step one ahead behind a StepGate (run/gated_steps.hpp),
// checked against a simulated device: a stream of steps and marks that runs a step only through
// an open gate, as the CUDA gate's kernel does. The real gate's GPU test is in test_cuda_gpt2.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "run/gated_steps.hpp"
#include "run/timed_loop.hpp"

namespace eaq::run {
namespace {

// A stream holding gated steps and marks. wait_for_mark runs the stream up to the mark: each step
// needs the gate open and closes it, and a closed gate there is a hang (thrown as an error). open()
// refuses to open an open gate, as CudaStepGate does. Every call is logged.
class SimulatedGate final : public StepGate {
 public:
  void enqueue(std::int64_t step) {
    log.push_back("enqueue " + std::to_string(step));
    stream_.push_back(step);
  }
  void open() override {
    log.push_back("open");
    if (open_) fail("opened twice");
    open_ = true;
  }
  std::int64_t mark() override {
    log.push_back("mark " + std::to_string(marks_.size()));
    marks_.push_back(stream_.size());
    return static_cast<std::int64_t>(marks_.size()) - 1;
  }
  void wait_for_mark(std::int64_t index) override {
    log.push_back("wait " + std::to_string(index));
    if (index < 0 || index >= static_cast<std::int64_t>(marks_.size()) ||
        index < static_cast<std::int64_t>(marks_.size()) - 2) {
      fail("mark {} cannot be waited for", index);
    }
    for (; done_ < marks_[static_cast<std::size_t>(index)]; ++done_) {
      if (!open_) fail("step {} waits at a closed gate forever", stream_[done_]);
      open_ = false;
      ran.push_back(stream_[done_]);
    }
  }
  void* device_word() const override { return nullptr; }

  std::vector<std::string> log;
  std::vector<std::int64_t> ran;  // steps the device has run, in order

 private:
  std::vector<std::int64_t> stream_;
  std::vector<std::size_t> marks_;  // stream length at each mark
  std::size_t done_ = 0;
  bool open_ = false;
};

std::vector<std::int64_t> iota(std::int64_t n) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = 0; i < n; ++i) v.push_back(i);
  return v;
}

TEST(GatedSteps, EnqueuesEachStepBeforeWaitingForTheOneBefore) {
  SimulatedGate gate;
  GatedSteps steps(gate, [&](std::int64_t i) { gate.enqueue(i); });
  steps.sync();  // nothing let through yet: no wait
  steps.run(0);
  steps.sync();
  steps.run(1);
  steps.sync();
  const std::vector<std::string> expected = {"enqueue 0", "mark 0", "open", "enqueue 1",
                                             "mark 1",    "wait 0", "open", "enqueue 2",
                                             "mark 2",    "wait 1"};
  EXPECT_EQ(gate.log, expected);
  EXPECT_EQ(gate.ran, iota(2));
  EXPECT_EQ(steps.enqueued(), 3);
  steps.drain();  // step 2, enqueued ahead, runs
  EXPECT_EQ(gate.ran, iota(3));
  steps.drain();  // nothing left
  EXPECT_EQ(gate.ran, iota(3));
}

TEST(GatedSteps, DriveTheTimedLoopWithoutHangs) {
  SimulatedGate gate;
  GatedSteps steps(gate, [&](std::int64_t i) { gate.enqueue(i); });
  TimedLoopOptions options;
  options.num_iters = 7;
  const TimedLoopResult r =
      run_timed_loop([&](std::int64_t i) { steps.run(i); }, [&] { steps.sync(); }, options);
  EXPECT_EQ(r.iterations, 7);
  EXPECT_EQ(r.latencies_s.size(), 7u);
  EXPECT_EQ(gate.ran, iota(7));  // every step the loop timed ran inside it
  EXPECT_EQ(steps.enqueued(), 8);
  steps.drain();
  EXPECT_EQ(gate.ran, iota(8));
}

// As the measurement runs them: a warm-up loop, then the timed loop, on one gate whose marks go
// on counting.
TEST(GatedSteps, SeveralLoopsShareOneGate) {
  SimulatedGate gate;
  for (int loop = 0; loop < 3; ++loop) {
    gate.ran.clear();
    GatedSteps steps(gate, [&](std::int64_t i) { gate.enqueue(i); });
    for (std::int64_t i = 0; i < 5; ++i) {
      steps.run(i);
      steps.sync();
    }
    steps.drain();
    EXPECT_EQ(gate.ran, iota(6)) << "loop " << loop;
  }
}

TEST(GatedSteps, RefusesStepsOutOfOrderOrUnsynced) {
  SimulatedGate gate;
  GatedSteps steps(gate, [&](std::int64_t i) { gate.enqueue(i); });
  EXPECT_THROW(steps.run(1), Error);
  steps.run(0);
  EXPECT_THROW(steps.run(1), Error);  // step 0 not waited for
  steps.sync();
  EXPECT_THROW(steps.run(0), Error);
  steps.run(1);
  steps.sync();
  EXPECT_EQ(gate.ran, iota(2));
}

}  // namespace
}  // namespace eaq::run
