// Precision names and what each means (../shared/DESIGN.md, "Precisions").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.hpp"

namespace eaq {

enum class Precision {
  Fp32,
  Tf32,
  Fp16,
  Fp16Autocast,
  Bf16,
  Int8,
  Int8Static,
  Int8WeightOnly,
  Fp8
};

std::string_view precision_name(Precision precision);  // "fp32", "fp16-autocast", "int8-wo", ...
// Accepts the names above (and the seed's alias "autocast"); throws naming the flag otherwise.
Precision parse_precision(std::string_view name, std::string_view flag = "--precision");
const std::vector<Precision>& all_precisions();

// Whether the encoder blocks' Linear layers hold quantized (int8/fp8) weights.
bool is_quantized(Precision precision);

struct PrecisionTraits {
  DType activation;  // the residual stream and most intermediates
  DType weight;      // the storage of quantized-or-not Linear weights
  const char* gemm;  // a human description of the GEMM math
};
// The CUDA semantics; the CPU backend runs f32 activations for every precision it supports.
PrecisionTraits cuda_precision_traits(Precision precision);

}  // namespace eaq
