#include "backend/cpu/cpu_quantized_linear.hpp"

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_int8_gemm.hpp"
#include "backend/cpu/cpu_kernels.hpp"
#include "core/error.hpp"
#include "quant/activation_quant.hpp"
#include "quant/dequantize.hpp"
#include "quant/weight_quant.hpp"

namespace eaq::cpu {
namespace {

class CpuInt8Linear final : public LinearWeights {
 public:
  HostTensor weight;                // I8 [out, in]
  std::vector<float> scales;        // [out]
  HostTensor bias;                  // F32 [out] or undefined
  float static_input_scale = 0.0f;  // > 0: int8-static
};

}  // namespace

bool supports_quantized(Precision precision) {
  return precision == Precision::Int8 || precision == Precision::Int8Static ||
         precision == Precision::Int8WeightOnly;
}

std::unique_ptr<LinearWeights> prepare_quantized_linear(Precision precision,
                                                        const HostTensor& weight,
                                                        const HostTensor* bias,
                                                        const LinearOptions& options) {
  EAQ_ASSERT(supports_quantized(precision) && precision != Precision::Int8WeightOnly);
  auto linear = std::make_unique<CpuInt8Linear>();
  linear->name = options.name;
  linear->out_features = weight.dim(0);
  linear->in_features = weight.dim(1);
  quant::QuantizedRows q = quant::quantize_weights_int8(weight, options.name);
  linear->weight = std::move(q.values);
  linear->scales = std::move(q.scales);
  if (bias != nullptr) {
    EAQ_ASSERT(bias->numel() == linear->out_features);
    linear->bias = bias->to_f32();
  }
  if (precision == Precision::Int8Static) {
    EAQ_CHECK(options.static_input_scale > 0.0f && std::isfinite(options.static_input_scale),
              "--precision int8-static: layer {} has no calibrated input scale (got {}); "
              "calibrate with --calibration-dataset or pass --calibration-file",
              options.name, options.static_input_scale);
    linear->static_input_scale = options.static_input_scale;
    linear->kernel = "cpu i8xi8->i32 (static per-tensor input scale x per-channel weights)";
  } else {
    linear->kernel = "cpu i8xi8->i32 (per-token dynamic input x per-channel weights)";
  }
  return linear;
}

HostTensor weight_only_int8(const HostTensor& weight, const std::string& name) {
  return quant::dequantize_rows(quant::quantize_weights_int8(weight, name));
}

bool is_quantized_linear(const LinearWeights& weights) {
  return dynamic_cast<const CpuInt8Linear*>(&weights) != nullptr;
}

void run_quantized_linear(const float* x, std::int64_t rows, const LinearWeights& weights,
                          Activation activation, float* y) {
  const auto& w = dynamic_cast<const CpuInt8Linear&>(weights);
  const std::int64_t k = w.in_features, n = w.out_features;
  std::vector<std::int8_t> qx(static_cast<std::size_t>(rows * k));
  std::vector<float> row_scales(static_cast<std::size_t>(rows), w.static_input_scale);
  if (w.static_input_scale > 0.0f) {
    quant::quantize_int8_static(x, rows * k, w.static_input_scale, qx.data());
  } else {
    quant::quantize_rows_int8(x, rows, k, qx.data(), row_scales.data());
  }
  std::vector<std::int32_t> acc(static_cast<std::size_t>(rows * n));
  gemm_i8_i32(qx.data(), w.weight.data<std::int8_t>(), acc.data(), rows, n, k);
  const float* bias = w.bias.has_data() ? w.bias.data<float>() : nullptr;
  // The dequantization the CUDA epilogue does too: acc * (s_x * s_w) + b (there one fused
  // multiply-add, so the two can differ by a rounding).
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < n; ++c) {
      const float scale =
          row_scales[static_cast<std::size_t>(r)] * w.scales[static_cast<std::size_t>(c)];
      y[r * n + c] = static_cast<float>(acc[static_cast<std::size_t>(r * n + c)]) * scale +
                     (bias ? bias[c] : 0.0f);
    }
  }
  apply_activation(y, rows * n, activation);
}

}  // namespace eaq::cpu
