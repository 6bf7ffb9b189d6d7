#include "quant/activation_quant.hpp"

#include "core/error.hpp"
#include "quant/scheme.hpp"

namespace eaq::quant {
namespace {

template <class Q, class Quantize>
void quantize_rows(const float* x, std::int64_t rows, std::int64_t cols, float qmax, Q* q,
                   float* scales, Quantize quantize) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    const float absmax = absmax_of(row, cols);
    const float inverse = inverse_scale_for(absmax, qmax);
    scales[r] = scale_for(absmax, qmax);
    for (std::int64_t c = 0; c < cols; ++c) q[r * cols + c] = quantize(row[c], inverse);
  }
}

template <class Quantize>
QuantizedRows quantize_tensor(const HostTensor& x, DType dtype, Quantize quantize_rows_fn) {
  EAQ_CHECK(x.rank() >= 1, "cannot quantize a scalar tensor per row");
  const HostTensor f = x.to_f32();
  const std::int64_t cols = x.shape().back();
  const std::int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  QuantizedRows out;
  out.values = HostTensor::empty(dtype, {rows, cols});
  out.scales.resize(static_cast<std::size_t>(rows));
  quantize_rows_fn(f.data<float>(), rows, cols, out.values.mutable_raw(), out.scales.data());
  return out;
}

}  // namespace

void quantize_rows_int8(const float* x, std::int64_t rows, std::int64_t cols, std::int8_t* q,
                        float* scales) {
  quantize_rows(x, rows, cols, kInt8Max, q, scales, quantize_int8);
}

void quantize_rows_e4m3(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* q,
                        float* scales) {
  quantize_rows(x, rows, cols, kE4M3Max, q, scales, quantize_e4m3);
}

void quantize_int8_static(const float* x, std::int64_t count, float scale, std::int8_t* q) {
  EAQ_CHECK(scale > 0.0f && std::isfinite(scale), "static activation scale {} is not > 0", scale);
  const float inverse = 1.0f / scale;
  for (std::int64_t i = 0; i < count; ++i) q[i] = quantize_int8(x[i], inverse);
}

QuantizedRows quantize_activations_int8(const HostTensor& x) {
  return quantize_tensor(
      x, DType::I8,
      [](const float* f, std::int64_t rows, std::int64_t cols, void* q, float* scales) {
        quantize_rows_int8(f, rows, cols, static_cast<std::int8_t*>(q), scales);
      });
}

QuantizedRows quantize_activations_e4m3(const HostTensor& x) {
  return quantize_tensor(
      x, DType::F8_E4M3,
      [](const float* f, std::int64_t rows, std::int64_t cols, void* q, float* scales) {
        quantize_rows_e4m3(f, rows, cols, static_cast<std::uint8_t*>(q), scales);
      });
}

}  // namespace eaq::quant
