// A matrix quantized row by row: per-output-channel weights ([out, in], one scale per output
// feature) and per-token activations ([tokens, features], one scale per token) share this form.
#pragma once

#include <vector>

#include "core/tensor.hpp"

namespace eaq::quant {

struct QuantizedRows {
  HostTensor values;          // I8 or F8_E4M3 [rows, cols]
  std::vector<float> scales;  // [rows]: x[r, c] ~ values[r, c] * scales[r]
};

}  // namespace eaq::quant
