#include "backend/cuda/step_gate.hpp"

#include <atomic>

#include "backend/cuda/cuda_check.hpp"

namespace eaq::cuda {

CudaStepGate::CudaStepGate(int device, cudaStream_t stream) : device_(device), stream_(stream) {
  EAQ_CUDA_CHECK(cudaSetDevice(device_));
  EAQ_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_word_), sizeof(int),
                               cudaHostAllocMapped | cudaHostAllocPortable));
  *host_word_ = 0;
  EAQ_CUDA_CHECK(cudaHostGetDevicePointer(&device_word_, host_word_, 0));
  for (cudaEvent_t& event : marks_)
    EAQ_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
}

CudaStepGate::~CudaStepGate() {
  cudaSetDevice(device_);
  std::atomic_ref<int>(*host_word_).store(1, std::memory_order_release);
  cudaStreamSynchronize(stream_);
  for (cudaEvent_t event : marks_) cudaEventDestroy(event);
  cudaFreeHost(host_word_);
}

void CudaStepGate::open() {
  // The device puts the word back to 0 as a step passes; still 1 means the last opening is unused
  // (no gated step has reached the gate yet, or none was enqueued).
  std::atomic_ref<int> word(*host_word_);
  EAQ_CHECK(word.load(std::memory_order_acquire) == 0,
            "step gate: opened again before a gated step went through the last opening");
  word.store(1, std::memory_order_release);
}

std::int64_t CudaStepGate::mark() {
  EAQ_CUDA_CHECK(cudaEventRecord(marks_[marks_made_ % 2], stream_));
  return marks_made_++;
}

void CudaStepGate::wait_for_mark(std::int64_t index) {
  EAQ_CHECK(index >= 0 && index < marks_made_ && index >= marks_made_ - 2,
            "step gate: mark {} cannot be waited for ({} made; only the last two can)", index,
            marks_made_);
  EAQ_CUDA_CHECK(cudaEventSynchronize(marks_[index % 2]));
}

}  // namespace eaq::cuda
