// The element-level rules of eaq's quantization schemes (../shared/DESIGN.md, "Precisions"),
// shared by the host-side quantizers, the CPU backend and the tests. The CUDA kernels implement
// the same arithmetic (quantize.cu) so that their results match these bit for bit:
//
//   symmetric int8:  scale = absmax / 127, q = clamp(rint(x * (127 / absmax)), -127, 127)
//   E4M3:            scale = absmax / 448, q = e4m3(x * (448 / absmax)), saturating, nearest even
//
// rint rounds half to even. A group (row, channel) of zeros gets scale 0 and quantizes to 0.
// Multiplying by the inverse scale (one division per group, not per element) is what the GPU
// kernels do; it can differ from x / scale by one ulp before rounding, so the round-trip bound
// |x - q * scale| <= scale / 2 holds up to a relative 1e-6.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/dtype.hpp"

namespace eaq::quant {

inline constexpr float kInt8Max = 127.0f;  // symmetric: -128 is never used
inline constexpr float kE4M3Max = 448.0f;

// What a group of values with the given absolute maximum is scaled by (0 for all zeros).
inline float scale_for(float absmax, float qmax) {
  return absmax / qmax;
}
// The factor values are multiplied by before rounding (0 for all zeros).
inline float inverse_scale_for(float absmax, float qmax) {
  return absmax > 0.0f ? qmax / absmax : 0.0f;
}

inline std::int8_t quantize_int8(float x, float inverse_scale) {
  const float v = std::nearbyint(x * inverse_scale);
  // fmax/fmin also map NaN to the range ends instead of an undefined conversion.
  return static_cast<std::int8_t>(std::fmin(std::fmax(v, -kInt8Max), kInt8Max));
}

inline std::uint8_t quantize_e4m3(float x, float inverse_scale) {
  return f32_to_e4m3_bits(x * inverse_scale);
}

inline float absmax_of(const float* values, std::int64_t count) {
  float m = 0.0f;
  for (std::int64_t i = 0; i < count; ++i) m = std::max(m, std::fabs(values[i]));
  return m;
}

}  // namespace eaq::quant
