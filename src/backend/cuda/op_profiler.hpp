// Per-op GPU time, for finding where a forward spends its time: with EAQ_PROFILE_OPS=1 every op
// is bracketed by CUDA events (graphs are then off), times are collected at each synchronize and
// a table is printed to stderr when the backend is destroyed.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <string>
#include <vector>

namespace eaq::cuda {

class OpProfiler {
 public:
  OpProfiler();
  ~OpProfiler();
  bool enabled() const { return enabled_; }

  void begin(const std::string& name, cudaStream_t stream);
  void end(cudaStream_t stream);
  void collect();  // after a synchronize: turns recorded event pairs into times
  void print() const;

 private:
  struct Pending {
    std::string name;
    cudaEvent_t start, stop;
  };
  struct Total {
    double ms = 0;
    long count = 0;
  };
  cudaEvent_t take_event();

  bool enabled_ = false;
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> free_;
  std::map<std::string, Total> totals_;
};

}  // namespace eaq::cuda
