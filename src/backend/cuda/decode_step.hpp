// One kernel launch per decode step of a pre-LN decoder (GPT-2) at batch 1: the launcher of
// decode_step.cu. Reference: the same step op by op (Gpt2Model::decode_step with the fused step
// off, itself checked against the CPU backend), compared in tests/test_cuda_gpt2.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.hpp"

namespace eaq::cuda {

// One block's parameters as the kernel reads them (an array of these lives in device memory).
// Weights are [out, in] in the activation dtype, biases [out] (or null), LayerNorms F32.
struct DecodeStepLayer {
  const float *ln_1_weight, *ln_1_bias, *ln_2_weight, *ln_2_bias;
  const void *qkv_weight, *qkv_bias;            // [3E, E]
  const void *attn_out_weight, *attn_out_bias;  // [E, E]
  const void *mlp_in_weight, *mlp_in_bias;      // [I, E]
  const void *mlp_out_weight, *mlp_out_bias;    // [E, I]
  void* kv_cache;                               // [capacity, 2E]: K in [0, E), V in [E, 2E)
  float attention_scale;
};

// The grid barrier's state: zero before the first launch, left at a consistent state by every
// launch (count zero; the generation only grows).
struct GridBarrierState {
  unsigned count;
  unsigned generation;
};

struct DecodeStepArgs {
  const DecodeStepLayer* layers = nullptr;  // device memory, `layer_count` entries
  int layer_count = 0;
  const void *word_table = nullptr, *position_table = nullptr;
  const float *ln_f_weight = nullptr, *ln_f_bias = nullptr;
  const void *lm_head_weight = nullptr, *lm_head_bias = nullptr;  // [vocab, E]
  const std::int32_t* ids = nullptr;                              // [1]: the token fed at the slot
  const std::int32_t* slot = nullptr;       // [1]: the cache position it fills
  const std::int32_t* positions = nullptr;  // [1]: its position id
  std::int32_t* key_mask = nullptr;         // [capacity]
  std::int32_t* tokens = nullptr;           // [capacity]
  void *hidden = nullptr, *query = nullptr, *ffn = nullptr,
       *logits = nullptr;     // [E], [E], [I], [vocab]
  float* partials = nullptr;  // decode_step_partial_floats(heads): the attention's key ranges
  GridBarrierState* barrier = nullptr;
  // Optional (EAQ_DECODE_TIMELINE=1): the last block's clock cycles per phase, summed over
  // launches, kDecodeTimelineSlots entries (the last counts launches); see
  // decode_timeline_phase_name.
  unsigned long long* timeline = nullptr;
  int hidden_size = 0, heads = 0, inner = 0, vocab = 0, capacity = 0;
  float layer_norm_eps = 1e-5f;
  Activation activation = Activation::GeluTanh;
};

constexpr int kDecodeTimelineSlots = 17;
// What timeline slot i measures, e.g. "qkv: stage ln_1".
const char* decode_timeline_phase_name(int slot);

// Whether the kernel runs this shape in `act` on the current device: F16/BF16, head size 64,
// E <= 4096, I a multiple of 8 up to 8192 (what fits in shared memory beside the attention's
// tiles), and a device that launches cooperative kernels (every block resident at once, as the
// grid barrier needs).
bool decode_step_eligible(DType act, int hidden_size, int heads, int inner);
// The F32 scratch the attention's key ranges need (DecodeStepArgs::partials).
std::int64_t decode_step_partial_floats(int heads);
// Enqueues the step; the caller has checked decode_step_eligible. Blocks: one per
// multiprocessor. The slot must be < capacity (Gpt2Model::decode_step checks on the host).
void launch_decode_step(DType act, const DecodeStepArgs& args, cudaStream_t stream);

}  // namespace eaq::cuda
