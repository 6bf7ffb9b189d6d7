// Per-output-channel symmetric quantization of Linear weights [out, in]: int8 (int8, int8-static,
// int8-wo) and E4M3 (fp8). One scale per row of W, i.e. per output feature.
#pragma once

#include <string>

#include "quant/quantized_rows.hpp"

namespace eaq::quant {

// `weight` is any float dtype, rank 2; `name` is used in error messages.
QuantizedRows quantize_weights_int8(const HostTensor& weight, const std::string& name);
QuantizedRows quantize_weights_e4m3(const HostTensor& weight, const std::string& name);

}  // namespace eaq::quant
