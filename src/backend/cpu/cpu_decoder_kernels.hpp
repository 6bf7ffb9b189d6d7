// The CPU reference of the decoding ops (Backend's "decoding" section); the oracle of
// src/backend/cuda/decoder_kernels.cu.
#pragma once

#include <cstdint>

#include "backend/backend.hpp"

namespace eaq::cpu {

void start_prompt(const PromptState& state);
void write_cache(const CacheWrite& args);
void mark_cache_slot(const std::int32_t* slot, std::int32_t* key_mask, std::int64_t batch,
                     std::int64_t capacity);
void increment(std::int32_t* values, std::int64_t count);
void argmax_rows_f32(const float* x, std::int32_t* out, std::int64_t rows, std::int64_t cols);
void token_nll_f32(const float* logits, const std::int32_t* targets, float* nll, std::int64_t rows,
                   std::int64_t vocab);

}  // namespace eaq::cpu
