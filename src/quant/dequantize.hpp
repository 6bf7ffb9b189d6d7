// Back from quantized rows to f32: x[r, c] = values[r, c] * scales[r].
#pragma once

#include "quant/quantized_rows.hpp"

namespace eaq::quant {

// values: I8 or F8_E4M3 [rows, cols]; returns F32 [rows, cols].
HostTensor dequantize_rows(const QuantizedRows& quantized);
// A per-tensor (static) int8 tensor of any shape.
HostTensor dequantize_int8_static(const HostTensor& values, float scale);

}  // namespace eaq::quant
