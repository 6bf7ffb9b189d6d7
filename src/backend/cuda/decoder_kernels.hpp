// Launchers of the decoding kernels (decoder_kernels.cu); references: cpu/cpu_decoder_kernels.cpp.
// Every launcher enqueues on `stream` and never synchronizes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.hpp"
#include "backend/cuda/kernels.hpp"

namespace eaq::cuda {

void launch_start_prompt(const PromptState& state, cudaStream_t stream);
void launch_write_cache(const CacheWrite& args, cudaStream_t stream);
void launch_mark_cache_slot(const std::int32_t* slot, std::int32_t* key_mask, std::int64_t batch,
                            std::int64_t capacity, cudaStream_t stream);
// `dependent`: launched with programmatic dependent launch (the kernel waits for the one before).
void launch_increment(std::int32_t* values, std::int64_t count, bool dependent,
                      cudaStream_t stream);

// Backend::start_decode_step (DecodeStart) in one kernel, one block a row, launched dependent.
struct DecodeStartArgs {
  const std::int32_t* ids = nullptr;
  const std::int32_t* slot = nullptr;
  std::int32_t* key_mask = nullptr;
  std::int32_t* tokens = nullptr;
  std::int64_t batch = 0, capacity = 0;
  const void* word_table = nullptr;
  const std::int32_t* positions = nullptr;
  const void* position_table = nullptr;
  void* hidden = nullptr;
  std::int64_t width = 0;  // E
  // A StepGate's word (host memory mapped for the device) or null: once its rows are written,
  // block 0 holds the kernel, and so the step's kernels after it, until the host opens the gate.
  int* gate = nullptr;
};
void launch_start_decode_step(DType act, const DecodeStartArgs& args, cudaStream_t stream);
// A kernel that only holds the stream until the host opens the gate (`gate`: as
// DecodeStartArgs::gate): for the steps that do not start with start_decode_step's kernel.
void launch_step_gate(int* gate, cudaStream_t stream);
// x: float dtype `act` [rows, cols]. A long row (a vocabulary) is split over several blocks when
// `scratch` has room (see SplitScratch), the last block of a row picking among their winners.
void launch_argmax_rows(DType act, const void* x, std::int32_t* out, std::int64_t rows,
                        std::int64_t cols, const SplitScratch& scratch, cudaStream_t stream);
SplitNeed argmax_split_need(std::int64_t rows, std::int64_t cols);
// A target outside [0, vocab) gives NaN.
void launch_token_nll(DType act, const void* logits, const std::int32_t* targets, float* nll,
                      std::int64_t rows, std::int64_t vocab, cudaStream_t stream);

}  // namespace eaq::cuda
