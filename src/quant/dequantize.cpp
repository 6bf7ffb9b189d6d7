#include "quant/dequantize.hpp"

#include "core/error.hpp"

namespace eaq::quant {

HostTensor dequantize_rows(const QuantizedRows& quantized) {
  const HostTensor& q = quantized.values;
  EAQ_CHECK(q.rank() == 2 && (q.dtype() == DType::I8 || q.dtype() == DType::F8_E4M3),
            "dequantize_rows: expected I8 or F8_E4M3 [rows, cols], got {} {}",
            dtype_name(q.dtype()), shape_str(q.shape()));
  const std::int64_t rows = q.dim(0), cols = q.dim(1);
  EAQ_CHECK(static_cast<std::int64_t>(quantized.scales.size()) == rows,
            "dequantize_rows: {} scales for {} rows", quantized.scales.size(), rows);
  HostTensor out = q.to_f32();  // exact: every int8 and E4M3 value is an f32
  float* x = out.mutable_data<float>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c)
      x[r * cols + c] *= quantized.scales[static_cast<std::size_t>(r)];
  }
  return out;
}

HostTensor dequantize_int8_static(const HostTensor& values, float scale) {
  EAQ_CHECK(values.dtype() == DType::I8, "dequantize_int8_static: expected I8, got {}",
            dtype_name(values.dtype()));
  HostTensor out = values.to_f32();
  for (std::int64_t i = 0; i < out.numel(); ++i) out.mutable_data<float>()[i] *= scale;
  return out;
}

}  // namespace eaq::quant
