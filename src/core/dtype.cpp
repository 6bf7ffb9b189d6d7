#include "core/dtype.hpp"

#include <cmath>

#include "core/error.hpp"

namespace eaq {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return 4;
    case DType::F16:
      return 2;
    case DType::BF16:
      return 2;
    case DType::F8_E4M3:
      return 1;
    case DType::I8:
      return 1;
    case DType::U8:
      return 1;
    case DType::I32:
      return 4;
    case DType::I64:
      return 8;
    case DType::Bool:
      return 1;
  }
  EAQ_ASSERT(false);
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::F8_E4M3:
      return "F8_E4M3";
    case DType::I8:
      return "I8";
    case DType::U8:
      return "U8";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::Bool:
      return "BOOL";
  }
  EAQ_ASSERT(false);
}

bool parse_dtype(std::string_view name, DType* out) {
  static constexpr DType kAll[] = {DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::I8,
                                   DType::U8,  DType::I32, DType::I64,  DType::Bool};
  for (DType dtype : kAll) {
    if (dtype_name(dtype) == name) {
      *out = dtype;
      return true;
    }
  }
  return false;
}

std::uint16_t f32_to_f16_bits(float value) {
  const std::uint32_t x = f32_bits(value);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {
    // Subnormal or zero in f16: scale into the integer grid of 2^-24 and round to nearest even.
    const float scaled = bits_f32(abs) * 16777216.0f;  // 2^24
    const auto rounded = static_cast<std::uint32_t>(std::nearbyint(scaled));
    return static_cast<std::uint16_t>(sign | rounded);
  }
  const std::uint32_t exponent = ((abs >> 23) - 112u) << 10;
  const std::uint32_t mantissa = abs & 0x7fffffu;
  std::uint32_t half = exponent | (mantissa >> 13);
  const std::uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent
  return static_cast<std::uint16_t>(sign | half);
}

float f16_bits_to_f32(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * (1.0f / 16777216.0f);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return bits_f32(sign | 0x7f800000u | (mantissa << 13));
  return bits_f32(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

std::uint16_t f32_to_bf16_bits(float value) {
  const std::uint32_t x = f32_bits(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

float bf16_bits_to_f32(std::uint16_t bits) {
  return bits_f32(static_cast<std::uint32_t>(bits) << 16);
}

std::uint8_t f32_to_e4m3_bits(float value) {
  if (std::isnan(value)) return 0x7f;
  const std::uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  float magnitude = std::fabs(value);
  if (magnitude >= 448.0f) return sign | 0x7e;  // saturate to the largest finite value
  // The smallest normal is 2^-6; below it the grid is uniform with step 2^-9.
  int exponent = 0;
  if (magnitude < 0.015625f) {
    const auto steps = static_cast<int>(std::nearbyint(magnitude * 512.0f));
    return static_cast<std::uint8_t>(sign | steps);  // steps == 8 is exactly the smallest normal
  }
  const float mantissa = std::frexp(magnitude, &exponent);  // magnitude = mantissa * 2^exponent
  // mantissa in [0.5, 1): significand 1.mmm = mantissa * 2, biased exponent = exponent - 1 + 7.
  int biased = exponent - 1 + 7;
  auto frac = static_cast<int>(std::nearbyint((mantissa * 2.0f - 1.0f) * 8.0f));
  if (frac == 8) {
    frac = 0;
    ++biased;
  }
  if (biased > 15 || (biased == 15 && frac == 7)) return sign | 0x7e;
  return static_cast<std::uint8_t>(sign | (biased << 3) | frac);
}

float e4m3_bits_to_f32(std::uint8_t bits) {
  const bool negative = bits & 0x80;
  const int exponent = (bits >> 3) & 0xf;
  const int mantissa = bits & 0x7;
  float magnitude;
  if (exponent == 0xf && mantissa == 0x7) return std::nanf("");
  if (exponent == 0) {
    magnitude = static_cast<float>(mantissa) / 512.0f;
  } else {
    magnitude = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
  }
  return negative ? -magnitude : magnitude;
}

}  // namespace eaq
