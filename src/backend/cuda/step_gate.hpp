// The CUDA StepGate (backend.hpp): one word of pinned host memory mapped for the device, which a
// gated step's first kernel polls and closes again as it passes (decoder_kernels.cu), and two
// events for the marks.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.hpp"

namespace eaq::cuda {

class CudaStepGate final : public StepGate {
 public:
  CudaStepGate(int device, cudaStream_t stream);
  // Opens the gate and waits for the stream (a gated step still waiting would otherwise poll
  // freed memory). Every graph captured with the gate must be gone first.
  ~CudaStepGate() override;
  CudaStepGate(const CudaStepGate&) = delete;
  CudaStepGate& operator=(const CudaStepGate&) = delete;

  void open() override;
  std::int64_t mark() override;
  void wait_for_mark(std::int64_t index) override;
  void* device_word() const override { return device_word_; }

 private:
  int device_;
  cudaStream_t stream_;
  int* host_word_ = nullptr;
  void* device_word_ = nullptr;
  cudaEvent_t marks_[2] = {};
  std::int64_t marks_made_ = 0;
};

}  // namespace eaq::cuda
