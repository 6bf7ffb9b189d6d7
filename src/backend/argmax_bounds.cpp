#include "backend/argmax_bounds.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace eaq {
namespace {

// The relative error allowed for an f32 dot product of up to 4096 terms, however it is summed
// (each term takes part in at most ~45 roundings of 2^-24: 3e-6; this leaves a wide margin).
constexpr double kSumError = 1e-4;

// The smallest float not below v (v >= 0).
float round_up(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

}  // namespace

double argmax_bound_kappa(DType logits) {
  switch (logits) {
    case DType::F16:
      return 1e-3;  // 2^-11 (rounding to f16) + kSumError = 5.9e-4
    case DType::BF16:
      return 5e-3;  // 2^-8 + kSumError = 4.0e-3
    default:
      throw Error("argmax bounds: logits must be F16 or BF16, got " +
                  std::string(dtype_name(logits)));
  }
}

ArgmaxBounds make_argmax_bounds(const HostTensor& weight, DType logits) {
  EAQ_CHECK(weight.rank() == 2, "argmax bounds: the head weight must be [rows, k], got {}",
            shape_str(weight.shape()));
  EAQ_CHECK(
      weight.dtype() == DType::F16 || weight.dtype() == DType::BF16 || weight.dtype() == DType::F32,
      "argmax bounds: the head weight must be F16, BF16 or F32, got {}",
      dtype_name(weight.dtype()));
  const double kappa = argmax_bound_kappa(logits);
  const HostTensor w = weight.to_f32();
  ArgmaxBounds b;
  b.rows = weight.dim(0);
  b.k = weight.dim(1);
  b.q.resize(static_cast<std::size_t>(b.rows * b.k));
  b.scale.resize(static_cast<std::size_t>(b.rows));
  b.radius.resize(static_cast<std::size_t>(b.rows));
  b.quant_norm.resize(static_cast<std::size_t>(b.rows));
  b.slack = 1e-6f;  // > 2^-25, half the spacing of f16's subnormals
  for (std::int64_t i = 0; i < b.rows; ++i) {
    const float* row = w.data<float>() + i * b.k;
    std::int8_t* q = b.q.data() + i * b.k;
    double amax = 0.0;
    for (std::int64_t j = 0; j < b.k; ++j) amax = std::max(amax, std::fabs(double{row[j]}));
    EAQ_CHECK(std::isfinite(amax), "argmax bounds: row {} of the head weight is not finite", i);
    const float scale = static_cast<float>(amax / 127.0);
    double error2 = 0.0, norm2 = 0.0, quant2 = 0.0;
    for (std::int64_t j = 0; j < b.k; ++j) {
      const double v = row[j];
      const double r = scale > 0.0f ? std::nearbyint(v / scale) : 0.0;
      const double clamped = std::clamp(r, -127.0, 127.0);
      q[j] = static_cast<std::int8_t>(clamped);
      const double approx = static_cast<double>(scale) * clamped;  // exact in double
      error2 += (v - approx) * (v - approx);
      norm2 += v * v;
      quant2 += approx * approx;
    }
    b.scale[static_cast<std::size_t>(i)] = scale;
    const double radius =
        std::sqrt(error2) + kappa * std::sqrt(norm2) + 2.0 * kSumError * std::sqrt(quant2);
    b.radius[static_cast<std::size_t>(i)] = round_up(radius * (1.0 + 1e-6));
    b.quant_norm[static_cast<std::size_t>(i)] = round_up(std::sqrt(quant2) * (1.0 + 1e-6));
  }
  return b;
}

}  // namespace eaq
