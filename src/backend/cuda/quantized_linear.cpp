#include "backend/cuda/quantized_linear.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/kernels.hpp"
#include "quant/activation_quant.hpp"
#include "quant/weight_quant.hpp"

namespace eaq::cuda {
namespace {

std::int64_t round_up16(std::int64_t v) {
  return (v + 15) / 16 * 16;
}

cudaDataType_t float_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return CUDA_R_32F;
    case DType::F16:
      return CUDA_R_16F;
    case DType::BF16:
      return CUDA_R_16BF;
    default:
      fail("internal error: {} is not a float activation dtype", dtype_name(dtype));
  }
}

// A float host tensor converted to `dtype` (F32, F16 or BF16) as bytes.
std::vector<std::uint8_t> float_bytes(const HostTensor& host, DType dtype) {
  const HostTensor f = host.to_f32();
  std::vector<std::uint8_t> out(static_cast<std::size_t>(f.numel()) * dtype_size(dtype));
  for (std::int64_t i = 0; i < f.numel(); ++i) {
    const float v = f.data<float>()[i];
    if (dtype == DType::F32) {
      std::memcpy(out.data() + 4 * i, &v, 4);
    } else {
      const std::uint16_t bits = dtype == DType::F16 ? f32_to_f16_bits(v) : f32_to_bf16_bits(v);
      std::memcpy(out.data() + 2 * i, &bits, 2);
    }
  }
  return out;
}

// Rows [n, k] of quantized values copied into a zero-filled [n_pad, k_pad] block.
std::vector<std::uint8_t> padded(const HostTensor& values, std::int64_t n_pad, std::int64_t k_pad) {
  const std::int64_t n = values.dim(0), k = values.dim(1);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(n_pad * k_pad), 0);
  const auto* src = static_cast<const std::uint8_t*>(values.raw());
  for (std::int64_t r = 0; r < n; ++r)
    std::memcpy(out.data() + r * k_pad, src + r * k, static_cast<std::size_t>(k));
  return out;
}

// Fused activations of cuBLASLt epilogues (its GELU is the tanh form).
bool epilogue_fuses(Activation activation) {
  return activation == Activation::Relu || activation == Activation::GeluTanh;
}

cublasLtEpilogue_t bias_epilogue(Activation fused, bool has_bias) {
  if (fused == Activation::Relu)
    return has_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
  if (fused == Activation::GeluTanh)
    return has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  return has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
}

// The fields of an 8-bit layer that the GEMV and the QKV + attention kernel read: the weights
// and their scales, the bias as the GEMM path's epilogue stores it, the static input scale.
template <class Args>
void set_8bit_weights(const QuantizedLinear& w, Args& out) {
  out.w = w.weight.data;
  out.w_scales = static_cast<const float*>(w.weight_scales.data);
  out.bias = w.bias.data;
  out.bias_act = w.path == QuantizedPath::Int8WeightOnly || w.path == QuantizedPath::Fp8OuterVector;
  if (w.static_input_scale > 0.0f) {
    out.static_inverse = 1.0f / w.static_input_scale;
    out.static_scale = w.static_input_scale;
  }
}

bool quantized_gemv_enabled() {
  return !env_is("EAQ_QUANTIZED_GEMV", "0");
}

// What the kernel name adds for layers the quantized GEMV runs on a few rows.
std::string gemv_note(std::int64_t k) {
  return k % 16 == 0 && quantized_gemv_enabled()
             ? fmt::format("; eaq GEMV on the 8-bit weights for <= {} rows", kMaxQuantizedGemvRows)
             : "";
}

}  // namespace

QuantizedLinear::~QuantizedLinear() {
  if (allocator == nullptr) return;
  for (DeviceTensor* t : {&weight, &weight_scales, &bias}) allocator->release(t->data);
}

QuantizedLinears::QuantizedLinears(const QuantizedContext& context) : context_(context) {
  EAQ_ASSERT(is_quantized(context.precision) && context.allocator != nullptr);
}

QuantizedLinears::~QuantizedLinears() {
  for (Buffer* b : {&values_[0], &values_[1], &scales_[0], &scales_[1], &accumulators_,
                    &dequantized_weights_}) {
    context_.allocator->release(b->data);
  }
}

void* QuantizedLinears::ensure(Buffer& buffer, std::size_t bytes) {
  // Grown only outside graph capture: the first forward of a shape runs before its capture.
  if (bytes <= buffer.bytes && buffer.data != nullptr) return buffer.data;
  context_.allocator->release(buffer.data);
  buffer.data = context_.allocator->allocate(std::max<std::size_t>(bytes, 16));
  buffer.bytes = std::max<std::size_t>(bytes, 16);
  return buffer.data;
}

DeviceTensor QuantizedLinears::upload_bytes(const void* data, std::size_t bytes, DType dtype,
                                            Shape shape) {
  DeviceTensor t{nullptr, dtype, std::move(shape)};
  t.data = context_.allocator->allocate(std::max<std::size_t>(bytes, 1));
  if (bytes > 0) {
    EAQ_CUDA_CHECK(cudaMemcpyAsync(t.data, data, bytes, cudaMemcpyHostToDevice, context_.stream));
    EAQ_CUDA_CHECK(cudaStreamSynchronize(context_.stream));  // `data` may die with the caller
  }
  return t;
}

std::unique_ptr<LinearWeights> QuantizedLinears::prepare(const HostTensor& weight,
                                                         const HostTensor* bias,
                                                         const LinearOptions& options) {
  EAQ_ASSERT(weight.rank() == 2);
  const Precision precision = context_.precision;
  auto w = std::make_unique<QuantizedLinear>();
  w->allocator = context_.allocator;
  w->name = options.name;
  w->out_features = weight.dim(0);
  w->in_features = weight.dim(1);
  const std::int64_t n = w->out_features, k = w->in_features;
  w->k_pad = round_up16(k);
  w->n_pad = round_up16(n);
  if (bias != nullptr) EAQ_ASSERT(bias->numel() == n);

  if (precision == Precision::Int8WeightOnly) {
    const quant::QuantizedRows q = quant::quantize_weights_int8(weight, options.name);
    w->path = QuantizedPath::Int8WeightOnly;
    w->weight = upload_bytes(q.values.raw(), q.values.nbytes(), DType::I8, {n, k});
    w->weight_scales = upload_bytes(q.scales.data(), q.scales.size() * 4, DType::F32, {n});
    if (bias != nullptr) {
      const auto bytes = float_bytes(*bias, context_.activation);
      w->bias = upload_bytes(bytes.data(), bytes.size(), context_.activation, {n});
    }
    w->kernel = fmt::format(
        "int8 weights dequantized to {} by a kernel per call + cublasLt "
        "{}x{}->{} (f32 accumulate){}",
        dtype_name(context_.activation), dtype_name(context_.activation),
        dtype_name(context_.activation), dtype_name(context_.activation), gemv_note(k));
    return w;
  }

  const bool fp8 = precision == Precision::Fp8;
  const quant::QuantizedRows q = fp8 ? quant::quantize_weights_e4m3(weight, options.name)
                                     : quant::quantize_weights_int8(weight, options.name);
  w->format = fp8 ? QuantFormat::E4M3 : QuantFormat::Int8;
  const auto values = padded(q.values, w->n_pad, w->k_pad);
  w->weight = upload_bytes(values.data(), values.size(), q.values.dtype(), {w->n_pad, w->k_pad});
  std::vector<float> scales(static_cast<std::size_t>(w->n_pad), 0.0f);
  std::copy(q.scales.begin(), q.scales.end(), scales.begin());
  w->weight_scales = upload_bytes(scales.data(), scales.size() * 4, DType::F32, {w->n_pad});

  if (precision == Precision::Int8Static) {
    EAQ_CHECK(options.static_input_scale > 0.0f && std::isfinite(options.static_input_scale),
              "--precision int8-static: layer {} has no calibrated input scale (got {}); "
              "calibrate with --calibration-dataset or pass --calibration-file",
              options.name, options.static_input_scale);
    w->static_input_scale = options.static_input_scale;
  }
  if (fp8) {
    w->path = n == w->n_pad && fp8_outer_vector_works() ? QuantizedPath::Fp8OuterVector
                                                        : QuantizedPath::Fp8Dequantize;
  } else {
    w->path = int8_path();
  }
  const DType bias_dtype =
      w->path == QuantizedPath::Fp8OuterVector ? context_.activation : DType::F32;
  if (bias != nullptr) {
    const auto bytes = float_bytes(*bias, bias_dtype);
    w->bias = upload_bytes(bytes.data(), bytes.size(), bias_dtype, {n});
  }
  const std::string act = std::string(dtype_name(context_.activation));
  const char* input_scales = precision == Precision::Int8Static ? "static per-tensor" : "per-token";
  switch (w->path) {
    case QuantizedPath::Int8Mma:
      w->kernel = fmt::format(
          "eaq mma.sync i8xi8->i32 with dequant epilogue ({} input x per-channel weights) -> {}",
          input_scales, act);
      break;
    case QuantizedPath::Int8Imma:
      w->kernel = fmt::format(
          "cublasLt i8xi8->i32 + dequant kernel ({} input x per-channel weights) -> {}{}",
          input_scales, act, int8_note_.empty() ? "" : " [" + int8_note_ + "]");
      break;
    case QuantizedPath::Fp8OuterVector:
      w->kernel = fmt::format(
          "cublasLt e4m3xe4m3->{} with outer-vector scales (per-token x "
          "per-channel), bias epilogue",
          act);
      break;
    case QuantizedPath::Fp8Dequantize:
      w->kernel = fmt::format(
          "cublasLt e4m3xe4m3->f32 + dequant kernel (per-token x "
          "per-channel) -> {}{}",
          act, fp8_probe_note_.empty() ? "" : " [" + fp8_probe_note_ + "]");
      break;
    case QuantizedPath::Int8WeightOnly:
      EAQ_ASSERT(false);
  }
  w->kernel += gemv_note(k);
  return w;
}

QuantizeTarget QuantizedLinears::input_target(int slot, const QuantizedLinear& w,
                                              std::int64_t rows) {
  QuantizeTarget target;
  target.format = w.format;
  target.ld = w.k_pad;
  target.values = ensure(values_[slot], static_cast<std::size_t>(rows * w.k_pad));
  if (w.static_input_scale > 0.0f) {
    target.static_inverse = 1.0f / w.static_input_scale;
  } else {
    target.scales = static_cast<float*>(ensure(scales_[slot], static_cast<std::size_t>(rows) * 4));
  }
  return target;
}

const LtMatmul& QuantizedLinears::plan(const QuantizedLinear& w, std::int64_t rows,
                                       cublasLtEpilogue_t epilogue, int slot) {
  auto& plan = w.plans[{rows, static_cast<int>(epilogue)}];
  if (plan) return *plan;
  LtMatmulSpec spec;
  spec.m = rows;
  spec.n = w.n_pad;
  spec.k = w.k_pad;
  spec.epilogue = epilogue;
  switch (w.path) {
    case QuantizedPath::Int8Imma:
      spec.weight_type = spec.input_type = CUDA_R_8I;
      spec.output_type = CUDA_R_32I;
      spec.compute = CUBLAS_COMPUTE_32I;
      spec.scale_type = CUDA_R_32I;
      break;
    case QuantizedPath::Fp8Dequantize:
      spec.weight_type = spec.input_type = CUDA_R_8F_E4M3;
      spec.output_type = CUDA_R_32F;
      break;
    case QuantizedPath::Fp8OuterVector:
      spec.weight_type = spec.input_type = CUDA_R_8F_E4M3;
      spec.output_type = spec.bias_type = float_type(context_.activation);
      spec.a_scale = static_cast<const float*>(w.weight_scales.data);
      spec.b_scale = static_cast<const float*>(scales_[slot].data);
      spec.outer_vector_scales = true;
      break;
    case QuantizedPath::Int8Mma:
      EAQ_ASSERT(false);
    case QuantizedPath::Int8WeightOnly:
      spec.n = w.out_features;
      spec.k = w.in_features;
      spec.weight_type = spec.input_type = spec.output_type = spec.bias_type =
          float_type(context_.activation);
      break;
  }
  plan = std::make_unique<LtMatmul>(context_.lt, spec, context_.workspace_bytes, w.name);
  return *plan;
}

void QuantizedLinears::run_gemm(int slot, std::int64_t rows, const QuantizedLinear& w,
                                Activation activation, void* y, const QuantizeTarget* next,
                                const void* residual) {
  if (rows == 0) return;
  EAQ_ASSERT(residual == nullptr || w.path == QuantizedPath::Int8Mma);
  if (w.path == QuantizedPath::Int8Mma) {
    // The GEMM writes y itself; with `next`, y (scratch) is then quantized for the next Linear.
    EAQ_ASSERT(y != nullptr);
    Int8GemmArgs args;
    args.x = static_cast<const std::int8_t*>(values_[slot].data);
    args.w = static_cast<const std::int8_t*>(w.weight.data);
    args.m = rows;
    args.n = w.n_pad;
    args.k = w.k_pad;
    args.row_scales =
        w.static_input_scale > 0.0f ? nullptr : static_cast<const float*>(scales_[slot].data);
    args.static_row_scale = w.static_input_scale;
    args.col_scales = static_cast<const float*>(w.weight_scales.data);
    args.bias = static_cast<const float*>(w.bias.data);
    args.activation = activation;
    args.y = y;
    args.ldy = args.n_out = w.out_features;
    args.residual = residual;
    launch_int8_gemm(context_.activation, args, context_.stream);
    EAQ_CUDA_CHECK_LAUNCH();
    if (next != nullptr) {
      launch_quantize_rows(context_.activation, y, rows, w.out_features, *next, context_.stream);
      EAQ_CUDA_CHECK_LAUNCH();
    }
    return;
  }
  if (w.path == QuantizedPath::Fp8OuterVector) {
    EAQ_ASSERT(y != nullptr);
    const bool has_bias = w.bias.data != nullptr;
    Activation fused = epilogue_fuses(activation) ? activation : Activation::None;
    const std::pair<std::int64_t, int> key{rows, static_cast<int>(bias_epilogue(fused, has_bias))};
    if (w.refused_plans.count(key) != 0) fused = Activation::None;
    const LtMatmul* gemm = nullptr;
    try {
      gemm = &plan(w, rows, bias_epilogue(fused, has_bias), slot);
    } catch (const Error&) {
      if (fused == Activation::None) throw;
      // No fp8 algorithm with this activation epilogue: apply it in a separate pass.
      w.plans.erase(key);
      w.refused_plans.insert(key);
      fused = Activation::None;
      gemm = &plan(w, rows, bias_epilogue(fused, has_bias), slot);
    }
    const float alpha = 1.0f, beta = 0.0f;
    gemm->set_scale_pointers(static_cast<const float*>(w.weight_scales.data),
                             static_cast<const float*>(scales_[slot].data));
    gemm->run(w.weight.data, values_[slot].data, y, has_bias ? w.bias.data : nullptr, &alpha, &beta,
              context_.workspace, context_.stream);
    const Activation remaining = fused == activation ? Activation::None : activation;
    if (next != nullptr) {
      launch_activation_quantize(context_.activation, y, rows, w.out_features, remaining, *next,
                                 context_.stream);
      EAQ_CUDA_CHECK_LAUNCH();
    } else if (remaining != Activation::None) {
      launch_activation(context_.activation, y, rows * w.out_features, remaining, context_.stream);
      EAQ_CUDA_CHECK_LAUNCH();
    }
    return;
  }

  // GEMM into the f32/i32 accumulators, then the dequantization kernel.
  const bool int8 = w.path == QuantizedPath::Int8Imma;
  void* acc = ensure(accumulators_, static_cast<std::size_t>(rows * w.n_pad) * 4);
  const LtMatmul& gemm = plan(w, rows, CUBLASLT_EPILOGUE_DEFAULT, slot);
  if (int8) {
    const std::int32_t alpha = 1, beta = 0;
    gemm.run(w.weight.data, values_[slot].data, acc, nullptr, &alpha, &beta, context_.workspace,
             context_.stream);
  } else {
    const float alpha = 1.0f, beta = 0.0f;
    gemm.run(w.weight.data, values_[slot].data, acc, nullptr, &alpha, &beta, context_.workspace,
             context_.stream);
  }
  DequantizeArgs args;
  args.acc = acc;
  args.acc_dtype = int8 ? DType::I32 : DType::F32;
  args.ld_acc = w.n_pad;
  args.row_scales =
      w.static_input_scale > 0.0f ? nullptr : static_cast<const float*>(scales_[slot].data);
  args.static_row_scale = w.static_input_scale;
  args.col_scales = static_cast<const float*>(w.weight_scales.data);
  args.bias = static_cast<const float*>(w.bias.data);
  args.activation = activation;
  args.rows = rows;
  args.cols = w.out_features;
  args.y = next != nullptr ? nullptr : y;  // with `next`, y is scratch: skip the write
  args.next = next;
  launch_dequantize(context_.activation, args, context_.stream);
  EAQ_CUDA_CHECK_LAUNCH();
}

void QuantizedLinears::run_weight_only(const DeviceTensor& x, const QuantizedLinear& w,
                                       Activation activation, DeviceTensor& y) {
  const std::int64_t rows = x.numel() / w.in_features;
  if (rows == 0) return;
  void* dequantized =
      ensure(dequantized_weights_, static_cast<std::size_t>(w.out_features * w.in_features) *
                                       dtype_size(context_.activation));
  launch_dequantize_weights(context_.activation, static_cast<const std::int8_t*>(w.weight.data),
                            static_cast<const float*>(w.weight_scales.data), dequantized,
                            w.out_features, w.in_features, context_.stream);
  EAQ_CUDA_CHECK_LAUNCH();
  const bool has_bias = w.bias.data != nullptr;
  const Activation fused = epilogue_fuses(activation) ? activation : Activation::None;
  const LtMatmul& gemm = plan(w, rows, bias_epilogue(fused, has_bias), 0);
  const float alpha = 1.0f, beta = 0.0f;
  gemm.run(dequantized, x.data, y.data, has_bias ? w.bias.data : nullptr, &alpha, &beta,
           context_.workspace, context_.stream);
  if (fused != activation) {
    launch_activation(context_.activation, y.data, y.numel(), activation, context_.stream);
    EAQ_CUDA_CHECK_LAUNCH();
  }
}

bool QuantizedLinears::gemv_args(const DeviceTensor& x, const QuantizedLinear& w,
                                 Activation activation, DeviceTensor& y,
                                 QuantizedGemvArgs& out) const {
  const std::int64_t rows = x.numel() / w.in_features;
  if (!quantized_gemv_enabled() || x.dtype != context_.activation ||
      !quantized_gemv_eligible(x.dtype, rows, w.in_features, x.data, w.weight.data)) {
    return false;
  }
  EAQ_ASSERT(w.path == QuantizedPath::Int8WeightOnly || w.k_pad == w.in_features);
  out = QuantizedGemvArgs{};
  out.format = w.format;
  out.weight_only = w.path == QuantizedPath::Int8WeightOnly;
  set_8bit_weights(w, out);
  out.x = x.data;
  out.y = y.data;
  out.m = rows;
  out.n = w.out_features;
  out.k = w.in_features;
  out.activation = activation;
  return true;
}

void QuantizedLinears::run_gemv(const QuantizedGemvArgs& args) {
  if (args.m == 0) return;
  launch_quantized_gemv(context_.activation, args, context_.stream);
  EAQ_CUDA_CHECK_LAUNCH();
}

void QuantizedLinears::linear(const DeviceTensor& x, const QuantizedLinear& w,
                              Activation activation, DeviceTensor& y) {
  const std::int64_t rows = x.numel() / w.in_features;
  EAQ_ASSERT(x.dtype == context_.activation && y.dtype == context_.activation);
  EAQ_ASSERT(y.numel() == rows * w.out_features);
  if (QuantizedGemvArgs g; gemv_args(x, w, activation, y, g)) {
    run_gemv(g);
    return;
  }
  if (w.path == QuantizedPath::Int8WeightOnly) {
    run_weight_only(x, w, activation, y);
    return;
  }
  if (rows == 0) return;
  const QuantizeTarget target = input_target(0, w, rows);
  launch_quantize_rows(context_.activation, x.data, rows, w.in_features, target, context_.stream);
  EAQ_CUDA_CHECK_LAUNCH();
  run_gemm(0, rows, w, activation, y.data, nullptr);
}

bool QuantizedLinears::layer_norm_linear(const DeviceTensor& x, const DeviceTensor* residual,
                                         const DeviceTensor& gamma, const DeviceTensor& beta,
                                         float eps, DeviceTensor& out, const LinearWeights& weights,
                                         Activation activation, DeviceTensor& y) {
  const QuantizedLinear* w = as_quantized(weights);
  if (w == nullptr) return false;
  // The GEMV's block 0 writes `out` while other blocks still read x: no aliasing.
  const bool separate = out.data != x.data && (!residual || out.data != residual->data) &&
                        y.data != x.data && y.data != out.data;
  if (QuantizedGemvArgs g; separate && gemv_args(x, *w, activation, y, g)) {
    g.ln_gamma = static_cast<const float*>(gamma.data);
    g.ln_beta = static_cast<const float*>(beta.data);
    g.ln_eps = eps;
    g.ln_residual = residual ? residual->data : nullptr;
    g.ln_out = out.data;
    run_gemv(g);
    return true;
  }
  if (w->path == QuantizedPath::Int8WeightOnly) return false;
  const std::int64_t cols = x.shape.back();
  const std::int64_t rows = x.numel() / cols;
  EAQ_ASSERT(cols == w->in_features && x.dtype == context_.activation);
  if (rows == 0) return true;
  const QuantizeTarget target = input_target(0, *w, rows);
  const void* res = residual ? residual->data : nullptr;
  const auto* g = static_cast<const float*>(gamma.data);
  const auto* b = static_cast<const float*>(beta.data);
  if (!launch_layer_norm_quantize(context_.activation, x.data, res, g, b, eps, out.data, rows, cols,
                                  target, context_.stream)) {
    launch_layer_norm(context_.activation, x.data, res, g, b, eps, out.data, rows, cols,
                      context_.stream);
    EAQ_CUDA_CHECK_LAUNCH();
    launch_quantize_rows(context_.activation, out.data, rows, cols, target, context_.stream);
  }
  EAQ_CUDA_CHECK_LAUNCH();
  run_gemm(0, rows, *w, activation, y.data, nullptr);
  return true;
}

bool QuantizedLinears::feed_forward(const DeviceTensor& x, const LinearWeights& first,
                                    Activation activation, DeviceTensor& mid,
                                    const LinearWeights& second, DeviceTensor& y) {
  const QuantizedLinear* w1 = as_quantized(first);
  const QuantizedLinear* w2 = as_quantized(second);
  if (w1 == nullptr || w2 == nullptr || w1->path == QuantizedPath::Int8WeightOnly ||
      w2->path == QuantizedPath::Int8WeightOnly) {
    return false;
  }
  const std::int64_t rows = x.numel() / w1->in_features;
  EAQ_ASSERT(w2->in_features == w1->out_features && mid.numel() == rows * w1->out_features);
  if (rows == 0) return true;
  // A few rows: two GEMVs, the second quantizing `mid` as it reads it.
  QuantizedGemvArgs first_gemv, second_gemv;
  if (gemv_args(x, *w1, activation, mid, first_gemv) &&
      gemv_args(mid, *w2, Activation::None, y, second_gemv)) {
    run_gemv(first_gemv);
    run_gemv(second_gemv);
    return true;
  }
  const QuantizeTarget input = input_target(0, *w1, rows);
  launch_quantize_rows(context_.activation, x.data, rows, w1->in_features, input, context_.stream);
  EAQ_CUDA_CHECK_LAUNCH();
  const QuantizeTarget between = input_target(1, *w2, rows);
  run_gemm(0, rows, *w1, activation, mid.data, &between);
  run_gemm(1, rows, *w2, Activation::None, y.data, nullptr);
  return true;
}

bool QuantizedLinears::qkv_attention_weights(const LinearWeights& weights,
                                             QkvAttentionArgs& out) const {
  const QuantizedLinear* w = as_quantized(weights);
  if (w == nullptr || !quantized_gemv_enabled() ||
      (w->path != QuantizedPath::Int8WeightOnly && w->k_pad != w->in_features)) {
    return false;
  }
  out.weights = w->path == QuantizedPath::Int8WeightOnly ? WeightKind::Int8WeightOnly
                : w->format == QuantFormat::E4M3         ? WeightKind::E4M3
                                                         : WeightKind::Int8;
  set_8bit_weights(*w, out);
  return true;
}

bool QuantizedLinears::linear_residual(const DeviceTensor& x, const LinearWeights& weights,
                                       const DeviceTensor& residual, DeviceTensor& y) {
  const QuantizedLinear* w = as_quantized(weights);
  if (w == nullptr || y.data == x.data) return false;
  EAQ_ASSERT(residual.numel() == y.numel() && residual.dtype == y.dtype);
  if (QuantizedGemvArgs g; gemv_args(x, *w, Activation::None, y, g)) {
    g.residual = residual.data;
    run_gemv(g);
    return true;
  }
  if (w->path != QuantizedPath::Int8Mma) return false;
  // More rows (a prompt, a batch-32 step): eaq's int8 GEMM, the residual in its epilogue instead
  // of an add after, where the split-K kernel runs (the one with that epilogue).
  const std::int64_t rows = x.numel() / w->in_features;
  EAQ_ASSERT(x.dtype == context_.activation && y.numel() == rows * w->out_features);
  if (rows == 0 || int8_gemm_kernel_for(rows, w->n_pad) != Int8GemmKernel::SplitK64) return false;
  const QuantizeTarget target = input_target(0, *w, rows);
  launch_quantize_rows(context_.activation, x.data, rows, w->in_features, target, context_.stream);
  EAQ_CUDA_CHECK_LAUNCH();
  run_gemm(0, rows, *w, Activation::None, y.data, nullptr, residual.data);
  return true;
}

QuantizedPath QuantizedLinears::int8_path() {
  const char* env = std::getenv("EAQ_INT8_GEMM");
  const std::string choice = env != nullptr ? env : "";
  EAQ_CHECK(choice.empty() || choice == "eaq" || choice == "cublaslt",
            "EAQ_INT8_GEMM={}: choose eaq (eaq's own kernel, the default) or cublaslt", choice);
  if (choice == "cublaslt") return QuantizedPath::Int8Imma;
  return own_int8_gemm_works() ? QuantizedPath::Int8Mma : QuantizedPath::Int8Imma;
}

bool QuantizedLinears::own_int8_gemm_works() {
  if (own_int8_gemm_ >= 0) return own_int8_gemm_ == 1;
  // A probe GEMM against the host, with tails in every dimension: M and N not multiples of the
  // 128 tile, K not of the 64 k-tile.
  constexpr std::int64_t m = 140, n = 144, k = 80;
  std::vector<std::int8_t> x(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(n * k));
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<std::int8_t>(static_cast<int>((i * 37) % 255) - 127);
  }
  for (std::size_t i = 0; i < w.size(); ++i) {
    w[i] = static_cast<std::int8_t>(static_cast<int>((i * 91 + 5) % 255) - 127);
  }
  std::vector<float> row_scales(static_cast<std::size_t>(m)),
      col_scales(static_cast<std::size_t>(n));
  std::vector<float> bias(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < m; ++i) {
    row_scales[static_cast<std::size_t>(i)] = 1e-3f * static_cast<float>(1 + i % 13);
  }
  for (std::int64_t j = 0; j < n; ++j) {
    col_scales[static_cast<std::size_t>(j)] = 1e-3f * static_cast<float>(1 + j % 7);
    bias[static_cast<std::size_t>(j)] = 0.25f * static_cast<float>(j % 5) - 0.5f;
  }
  std::vector<float> expected(static_cast<std::size_t>(m * n));
  double largest = 0.0;
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      std::int64_t acc = 0;
      for (std::int64_t c = 0; c < k; ++c) {
        acc += x[static_cast<std::size_t>(i * k + c)] * w[static_cast<std::size_t>(j * k + c)];
      }
      const float v = static_cast<float>(acc) * (row_scales[static_cast<std::size_t>(i)] *
                                                 col_scales[static_cast<std::size_t>(j)]) +
                      bias[static_cast<std::size_t>(j)];
      expected[static_cast<std::size_t>(i * n + j)] = v;
      largest = std::max(largest, static_cast<double>(std::fabs(v)));
    }
  }
  QuantizedLinear probe;  // owns the uploaded weights
  probe.allocator = context_.allocator;
  probe.weight = upload_bytes(w.data(), w.size(), DType::I8, {n, k});
  probe.weight_scales = upload_bytes(col_scales.data(), col_scales.size() * 4, DType::F32, {n});
  probe.bias = upload_bytes(bias.data(), bias.size() * 4, DType::F32, {n});
  DeviceTensor dx = upload_bytes(x.data(), x.size(), DType::I8, {m, k});
  DeviceTensor ds = upload_bytes(row_scales.data(), row_scales.size() * 4, DType::F32, {m});
  DeviceTensor dy{context_.allocator->allocate(static_cast<std::size_t>(m * n) *
                                               dtype_size(context_.activation)),
                  context_.activation,
                  {m, n}};
  try {
    Int8GemmArgs args;
    args.x = static_cast<const std::int8_t*>(dx.data);
    args.w = static_cast<const std::int8_t*>(probe.weight.data);
    args.m = m;
    args.n = n;
    args.k = k;
    args.row_scales = static_cast<const float*>(ds.data);
    args.col_scales = static_cast<const float*>(probe.weight_scales.data);
    args.bias = static_cast<const float*>(probe.bias.data);
    args.y = dy.data;
    args.ldy = args.n_out = n;
    launch_int8_gemm(context_.activation, args, context_.stream);
    EAQ_CUDA_CHECK_LAUNCH();
    HostTensor out = HostTensor::empty(context_.activation, {m, n});
    EAQ_CUDA_CHECK(cudaMemcpyAsync(out.mutable_raw(), dy.data, out.nbytes(), cudaMemcpyDeviceToHost,
                                   context_.stream));
    EAQ_CUDA_CHECK(cudaStreamSynchronize(context_.stream));
    const HostTensor got = out.to_f32();
    double worst = 0.0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(got.data<float>()[i] - expected[i])));
    }
    own_int8_gemm_ = worst <= 2e-3 * largest ? 1 : 0;
    if (own_int8_gemm_ == 0) {
      int8_note_ = fmt::format(
          "eaq's int8 kernel failed its probe GEMM (max error {:.2g} of the "
          "largest output)",
          worst / largest);
    }
  } catch (const Error& e) {
    (void)cudaGetLastError();
    own_int8_gemm_ = 0;
    int8_note_ = fmt::format("eaq's int8 kernel failed to run: {}", e.what());
  }
  for (DeviceTensor* t : {&dx, &ds, &dy}) context_.allocator->release(t->data);
  return own_int8_gemm_ == 1;
}

bool QuantizedLinears::fp8_outer_vector_works() {
  if (fp8_outer_vector_ >= 0) return fp8_outer_vector_ == 1;
  // A small GEMM through the outer-vector path, checked against the host: cuBLASLt versions
  // without the mode may refuse it (then we fall back) or, worse, misread the scales.
  constexpr std::int64_t m = 32, n = 32, k = 64;
  HostTensor x = HostTensor::empty(DType::F32, {m, k});
  HostTensor wt = HostTensor::empty(DType::F32, {n, k});
  for (std::int64_t i = 0; i < m * k; ++i)
    x.mutable_data<float>()[i] =
        std::sin(0.37f * static_cast<float>(i)) * static_cast<float>(1 + i % 7);
  for (std::int64_t i = 0; i < n * k; ++i)
    wt.mutable_data<float>()[i] =
        std::cos(0.23f * static_cast<float>(i)) * static_cast<float>(1 + i % 5);
  const quant::QuantizedRows qx = quant::quantize_activations_e4m3(x);
  const quant::QuantizedRows qw = quant::quantize_weights_e4m3(wt, "fp8 probe");
  std::vector<float> bias(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j)
    bias[static_cast<std::size_t>(j)] = 0.5f * static_cast<float>(j % 3) - 0.5f;
  std::vector<float> expected(static_cast<std::size_t>(m * n));
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double sum = 0.0;
      for (std::int64_t c = 0; c < k; ++c) {
        sum += static_cast<double>(e4m3_bits_to_f32(qx.values.data<std::uint8_t>()[i * k + c])) *
               e4m3_bits_to_f32(qw.values.data<std::uint8_t>()[j * k + c]);
      }
      expected[static_cast<std::size_t>(i * n + j)] = static_cast<float>(
          sum * qx.scales[static_cast<std::size_t>(i)] * qw.scales[static_cast<std::size_t>(j)] +
          bias[static_cast<std::size_t>(j)]);
    }
  }
  QuantizedLinear probe;
  probe.allocator = context_.allocator;
  probe.name = "fp8 outer-vector probe";
  probe.in_features = probe.k_pad = k;
  probe.out_features = probe.n_pad = n;
  probe.path = QuantizedPath::Fp8OuterVector;
  probe.format = QuantFormat::E4M3;
  probe.weight = upload_bytes(qw.values.raw(), qw.values.nbytes(), DType::F8_E4M3, {n, k});
  probe.weight_scales = upload_bytes(qw.scales.data(), qw.scales.size() * 4, DType::F32, {n});
  const auto bias_bytes = float_bytes(HostTensor::from_f32({n}, bias), context_.activation);
  probe.bias = upload_bytes(bias_bytes.data(), bias_bytes.size(), context_.activation, {n});
  ensure(values_[0], static_cast<std::size_t>(m * k));
  ensure(scales_[0], static_cast<std::size_t>(m) * 4);
  EAQ_CUDA_CHECK(cudaMemcpyAsync(values_[0].data, qx.values.raw(), qx.values.nbytes(),
                                 cudaMemcpyHostToDevice, context_.stream));
  EAQ_CUDA_CHECK(cudaMemcpyAsync(scales_[0].data, qx.scales.data(), qx.scales.size() * 4,
                                 cudaMemcpyHostToDevice, context_.stream));
  DeviceTensor y{context_.allocator->allocate(static_cast<std::size_t>(m * n) *
                                              dtype_size(context_.activation)),
                 context_.activation,
                 {m, n}};
  double worst = 0.0, largest = 0.0;
  try {
    run_gemm(0, m, probe, Activation::None, y.data, nullptr);
    HostTensor out = HostTensor::empty(context_.activation, {m, n});
    EAQ_CUDA_CHECK(cudaMemcpyAsync(out.mutable_raw(), y.data, out.nbytes(), cudaMemcpyDeviceToHost,
                                   context_.stream));
    EAQ_CUDA_CHECK(cudaStreamSynchronize(context_.stream));
    const HostTensor got = out.to_f32();
    for (std::size_t i = 0; i < expected.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(got.data<float>()[i] - expected[i])));
      largest = std::max(largest, static_cast<double>(std::fabs(expected[i])));
    }
    fp8_outer_vector_ = worst <= 1e-2 * largest ? 1 : 0;
    if (fp8_outer_vector_ == 0) {
      fp8_probe_note_ = fmt::format(
          "outer-vector scales gave a max error of {:.2g} of the "
          "largest output in a probe GEMM",
          largest > 0 ? worst / largest : worst);
    }
  } catch (const Error& e) {
    (void)cudaGetLastError();
    fp8_outer_vector_ = 0;
    fp8_probe_note_ = fmt::format("cuBLASLt refused outer-vector scales: {}", e.what());
  }
  context_.allocator->release(y.data);
  return fp8_outer_vector_ == 1;
}

}  // namespace eaq::cuda
