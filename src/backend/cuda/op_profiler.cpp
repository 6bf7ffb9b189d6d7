#include "backend/cuda/op_profiler.hpp"

#include "backend/cuda/env_switch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

namespace eaq::cuda {

OpProfiler::OpProfiler() {
  enabled_ = env_is("EAQ_PROFILE_OPS", "1");
}

OpProfiler::~OpProfiler() {
  for (const Pending& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
}

cudaEvent_t OpProfiler::take_event() {
  if (!free_.empty()) {
    cudaEvent_t e = free_.back();
    free_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  cudaEventCreate(&e);
  return e;
}

void OpProfiler::begin(const std::string& name, cudaStream_t stream) {
  Pending p{name, take_event(), take_event()};
  cudaEventRecord(p.start, stream);
  pending_.push_back(p);
}

void OpProfiler::end(cudaStream_t stream) {
  cudaEventRecord(pending_.back().stop, stream);
}

void OpProfiler::collect() {
  for (const Pending& p : pending_) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, p.start, p.stop) == cudaSuccess) {
      Total& t = totals_[p.name];
      t.ms += ms;
      ++t.count;
    }
    free_.push_back(p.start);
    free_.push_back(p.stop);
  }
  pending_.clear();
}

void OpProfiler::print() const {
  if (!enabled_ || totals_.empty()) return;
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double all = 0;
  for (const auto& row : rows) all += row.second.ms;
  fmt::print(stderr, "\nEAQ_PROFILE_OPS: GPU time per op (events around each op, graphs off)\n");
  fmt::print(stderr, "{:<44} {:>10} {:>8} {:>12} {:>7}\n", "op", "total ms", "calls", "us per call",
             "share");
  for (const auto& [name, t] : rows) {
    fmt::print(stderr, "{:<44} {:>10.3f} {:>8} {:>12.2f} {:>6.1f}%\n", name, t.ms, t.count,
               1000.0 * t.ms / static_cast<double>(t.count), 100.0 * t.ms / all);
  }
}

}  // namespace eaq::cuda
