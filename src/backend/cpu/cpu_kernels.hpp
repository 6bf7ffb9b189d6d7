// Plain C++ kernels of the CPU reference backend. Each is the oracle its CUDA counterpart is
// tested against, so clarity wins over speed except in the GEMM, which dominates run time.
#pragma once

#include <cstdint>

#include "backend/backend.hpp"

namespace eaq::cpu {

// y[m, n] = sum_k x[m, k] * w_t[k, n] + bias[n] (bias may be null). w_t is W transposed: [K, N].
void gemm_f32(const float* x, const float* w_t, const float* bias, float* y, std::int64_t m,
              std::int64_t n, std::int64_t k);

// y = act(y) in place.
void apply_activation(float* y, std::int64_t count, Activation activation);

void layer_norm_f32(const float* x, const float* residual, const float* gamma, const float* beta,
                    float eps, float* out, std::int64_t rows, std::int64_t cols);

void attention_f32(const AttentionArgs& args);

}  // namespace eaq::cpu
