// Element types and host-side conversions between them (the CPU reference uses these too).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace eaq {

enum class DType { F32, F16, BF16, F8_E4M3, I8, U8, I32, I64, Bool };

std::size_t dtype_size(DType dtype);
// The safetensors spelling: "F32", "F16", "BF16", "F8_E4M3", "I8", "U8", "I32", "I64", "BOOL".
std::string_view dtype_name(DType dtype);
// Parses a safetensors dtype name; returns false when it is not one eaq reads.
bool parse_dtype(std::string_view name, DType* out);

// IEEE binary16 <-> binary32, round to nearest even.
std::uint16_t f32_to_f16_bits(float value);
float f16_bits_to_f32(std::uint16_t bits);
// bfloat16 <-> binary32, round to nearest even (NaN stays NaN).
std::uint16_t f32_to_bf16_bits(float value);
float bf16_bits_to_f32(std::uint16_t bits);
// OCP FP8 E4M3 (bias 7, max 448, no infinities, S.1111.111 is NaN): saturating, nearest even.
std::uint8_t f32_to_e4m3_bits(float value);
float e4m3_bits_to_f32(std::uint8_t bits);

inline std::uint32_t f32_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}
inline float bits_f32(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

}  // namespace eaq
