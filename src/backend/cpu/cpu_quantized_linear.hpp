// Quantized Linear layers of the CPU backend (the same schemes as the CUDA backend, in C++):
//   int8         weights int8 per output channel, activations int8 per token quantized at run
//                time, exact i8 x i8 -> i32 accumulation, then y = acc * s_x[m] * s_w[n] + b;
//   int8-static  the same with one calibrated activation scale for the whole input;
//   int8-wo      int8 weights per output channel dequantized to f32 when loaded, f32 GEMM.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.hpp"

namespace eaq::cpu {

// Whether the CPU backend implements quantized Linear layers for the precision.
bool supports_quantized(Precision precision);

std::unique_ptr<LinearWeights> prepare_quantized_linear(Precision precision,
                                                        const HostTensor& weight,
                                                        const HostTensor* bias,
                                                        const LinearOptions& options);
// int8-wo: the weight after an int8 per-channel round trip, for the f32 GEMM.
HostTensor weight_only_int8(const HostTensor& weight, const std::string& name);
// Whether `weights` came from prepare_quantized_linear (else the caller runs its f32 path).
bool is_quantized_linear(const LinearWeights& weights);
void run_quantized_linear(const float* x, std::int64_t rows, const LinearWeights& weights,
                          Activation activation, float* y);

}  // namespace eaq::cpu
