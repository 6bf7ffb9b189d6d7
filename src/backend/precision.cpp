#include "backend/precision.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace eaq {

std::string_view precision_name(Precision precision) {
  switch (precision) {
    case Precision::Fp32:
      return "fp32";
    case Precision::Tf32:
      return "tf32";
    case Precision::Fp16:
      return "fp16";
    case Precision::Fp16Autocast:
      return "fp16-autocast";
    case Precision::Bf16:
      return "bf16";
    case Precision::Int8:
      return "int8";
    case Precision::Int8Static:
      return "int8-static";
    case Precision::Int8WeightOnly:
      return "int8-wo";
    case Precision::Fp8:
      return "fp8";
  }
  EAQ_ASSERT(false);
}

const std::vector<Precision>& all_precisions() {
  static const std::vector<Precision> all = {
      Precision::Fp32,         Precision::Tf32,           Precision::Fp16,
      Precision::Fp16Autocast, Precision::Bf16,           Precision::Int8,
      Precision::Int8Static,   Precision::Int8WeightOnly, Precision::Fp8};
  return all;
}

Precision parse_precision(std::string_view name, std::string_view flag) {
  if (name == "autocast") return Precision::Fp16Autocast;  // the seed's spelling
  for (Precision p : all_precisions()) {
    if (precision_name(p) == name) return p;
  }
  std::vector<std::string_view> names;
  for (Precision p : all_precisions()) names.push_back(precision_name(p));
  fail("{} {}: unknown precision; choose one of {}", flag, name, fmt::join(names, ", "));
}

bool is_quantized(Precision precision) {
  return precision == Precision::Int8 || precision == Precision::Int8Static ||
         precision == Precision::Int8WeightOnly || precision == Precision::Fp8;
}

PrecisionTraits cuda_precision_traits(Precision precision) {
  switch (precision) {
    case Precision::Fp32:
      return {DType::F32, DType::F32, "f32 (TF32 off)"};
    case Precision::Tf32:
      return {DType::F32, DType::F32, "TF32 tensor cores, f32 accumulate"};
    case Precision::Fp16:
      return {DType::F16, DType::F16, "f16 in, f32 accumulate"};
    case Precision::Fp16Autocast:
      return {DType::F32, DType::F16, "f16 GEMMs on an f32 residual stream"};
    case Precision::Bf16:
      return {DType::BF16, DType::BF16, "bf16 in, f32 accumulate"};
    case Precision::Int8:
      return {DType::F16, DType::I8, "i8 x i8 -> i32, per-token dynamic"};
    case Precision::Int8Static:
      return {DType::F16, DType::I8, "i8 x i8 -> i32, static scales"};
    case Precision::Int8WeightOnly:
      return {DType::F16, DType::I8, "i8 weights dequantized to f16"};
    case Precision::Fp8:
      return {DType::F16, DType::F8_E4M3, "e4m3 x e4m3 -> f32"};
  }
  EAQ_ASSERT(false);
}

}  // namespace eaq
