// Quantization of activations, the CPU reference of the CUDA kernels in quantize.cu:
//   per token (dynamic): each row gets its own scale from its absolute maximum (int8, fp8);
//   per tensor (static): one scale for everything, calibrated ahead of time (int8-static).
// Weights use the same per-row functions (one row per output channel).
#pragma once

#include <cstdint>

#include "quant/quantized_rows.hpp"

namespace eaq::quant {

// x: [rows, cols] row-major f32; q: [rows, cols]; scales: [rows].
void quantize_rows_int8(const float* x, std::int64_t rows, std::int64_t cols, std::int8_t* q,
                        float* scales);
void quantize_rows_e4m3(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* q,
                        float* scales);
// A fixed scale (> 0) for all `count` values; values beyond 127 * scale saturate.
void quantize_int8_static(const float* x, std::int64_t count, float scale, std::int8_t* q);

// The same on host tensors of any float dtype, rank >= 1 (rows = all but the last dimension).
QuantizedRows quantize_activations_int8(const HostTensor& x);
QuantizedRows quantize_activations_e4m3(const HostTensor& x);

}  // namespace eaq::quant
