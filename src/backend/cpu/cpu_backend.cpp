#include "backend/cpu/cpu_backend.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include "backend/cpu/cpu_decoder_kernels.hpp"
#include "backend/cpu/cpu_kernels.hpp"
#include "backend/cpu/cpu_quantized_linear.hpp"
#include "core/error.hpp"

namespace eaq {
namespace {

class CpuLinear final : public LinearWeights {
 public:
  HostTensor weight_t;  // F32 [in, out]: W transposed, so the GEMM streams contiguous rows
  HostTensor bias;      // F32 [out] or undefined
};

class CpuGraph final : public CapturedGraph {
 public:
  explicit CpuGraph(std::function<void()> body) : body_(std::move(body)) {}
  void launch() override { body_(); }

 private:
  std::function<void()> body_;
};

float* f32(const DeviceTensor& t) {
  return static_cast<float*>(t.data);
}
std::int32_t* i32(const DeviceTensor& t) {
  return static_cast<std::int32_t*>(t.data);
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(Precision precision) : precision_(precision) {}
  ~CpuBackend() override = default;

  std::string name() const override { return "cpu"; }
  Precision precision() const override { return precision_; }
  DType activation_dtype() const override { return DType::F32; }
  std::string attention_kernel() const override { return "cpu reference attention (f32)"; }

  DeviceTensor allocate(DType dtype, Shape shape) override {
    DeviceTensor t{nullptr, dtype, std::move(shape)};
    const std::size_t bytes = std::max<std::size_t>(t.nbytes(), 1);
    t.data = ::operator new (bytes, std::align_val_t{64});
    std::memset(t.data, 0, bytes);
    stats_.allocated_bytes += t.nbytes();
    stats_.reserved_bytes += t.nbytes();
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.allocated_bytes);
    return t;
  }

  void release(DeviceTensor& t) override {
    if (t.data == nullptr) return;
    ::operator delete (t.data, std::align_val_t{64});
    stats_.allocated_bytes -= t.nbytes();
    stats_.reserved_bytes -= t.nbytes();
    t.data = nullptr;
  }

  DeviceTensor upload(const HostTensor& host, DType dtype) override {
    DeviceTensor t = allocate(dtype, host.shape());
    if (dtype == host.dtype()) {
      if (host.nbytes() > 0) std::memcpy(t.data, host.raw(), host.nbytes());
    } else if (dtype == DType::F32) {
      const HostTensor converted = host.to_f32();
      if (converted.nbytes() > 0) std::memcpy(t.data, converted.raw(), converted.nbytes());
    } else if (dtype == DType::I32) {
      const std::vector<std::int64_t> values = host.to_i64();
      auto* dst = static_cast<std::int32_t*>(t.data);
      for (std::size_t i = 0; i < values.size(); ++i) dst[i] = static_cast<std::int32_t>(values[i]);
    } else {
      release(t);
      fail("cpu backend: cannot upload {} as {}", dtype_name(host.dtype()), dtype_name(dtype));
    }
    return t;
  }

  HostTensor download(const DeviceTensor& device) override {
    HostTensor host = HostTensor::empty(device.dtype, device.shape);
    if (device.nbytes() > 0) std::memcpy(host.mutable_raw(), device.data, device.nbytes());
    return device.dtype == DType::F32 || device.dtype == DType::I32 || device.dtype == DType::I64
               ? host
               : host.to_f32();
  }

  void copy(const DeviceTensor& src, DeviceTensor& dst) override {
    EAQ_ASSERT(src.nbytes() == dst.nbytes());
    if (src.nbytes() > 0) std::memmove(dst.data, src.data, src.nbytes());
  }

  void synchronize() override {}
  MemoryStats memory_stats() const override { return stats_; }

  std::unique_ptr<LinearWeights> prepare_linear(const HostTensor& weight, const HostTensor* bias,
                                                const LinearOptions& options) override {
    EAQ_ASSERT(weight.rank() == 2);
    const bool quantize = options.quantize && is_quantized(precision_);
    if (quantize && precision_ != Precision::Int8WeightOnly) {
      return cpu::prepare_quantized_linear(precision_, weight, bias, options);
    }
    auto linear = std::make_unique<CpuLinear>();
    linear->name = options.name;
    linear->out_features = weight.dim(0);
    linear->in_features = weight.dim(1);
    linear->kernel =
        quantize ? "cpu f32 GEMM on int8 weights dequantized at load (int8-wo)" : "cpu-f32";
    const HostTensor w = quantize ? cpu::weight_only_int8(weight, options.name) : weight.to_f32();
    linear->weight_t = HostTensor::empty(DType::F32, {linear->in_features, linear->out_features});
    const float* src = w.data<float>();
    float* dst = linear->weight_t.mutable_data<float>();
    for (std::int64_t o = 0; o < linear->out_features; ++o) {
      for (std::int64_t i = 0; i < linear->in_features; ++i) {
        dst[i * linear->out_features + o] = src[o * linear->in_features + i];
      }
    }
    if (bias != nullptr) {
      EAQ_ASSERT(bias->numel() == linear->out_features);
      linear->bias = bias->to_f32();
    }
    return linear;
  }

  void embed(const DeviceTensor& ids, const DeviceTensor& word_table,
             const DeviceTensor* position_ids, const DeviceTensor* position_table,
             const DeviceTensor* type_ids, const DeviceTensor* type_table,
             DeviceTensor& out) override {
    const std::int64_t tokens = ids.numel();
    const std::int64_t hidden = word_table.dim(1);
    const auto* id = static_cast<const std::int32_t*>(ids.data);
    const auto* pos = position_ids ? static_cast<const std::int32_t*>(position_ids->data) : nullptr;
    const auto* type = type_ids ? static_cast<const std::int32_t*>(type_ids->data) : nullptr;
    for (std::int64_t t = 0; t < tokens; ++t) {
      float* row = f32(out) + t * hidden;
      const float* w = f32(word_table) + static_cast<std::int64_t>(id[t]) * hidden;
      for (std::int64_t c = 0; c < hidden; ++c) row[c] = w[c];
      if (pos != nullptr) {
        const float* p = f32(*position_table) + static_cast<std::int64_t>(pos[t]) * hidden;
        for (std::int64_t c = 0; c < hidden; ++c) row[c] += p[c];
      }
      if (type != nullptr) {
        const float* p = f32(*type_table) + static_cast<std::int64_t>(type[t]) * hidden;
        for (std::int64_t c = 0; c < hidden; ++c) row[c] += p[c];
      }
    }
  }

  void layer_norm(const DeviceTensor& x, const DeviceTensor* residual, const DeviceTensor& gamma,
                  const DeviceTensor& beta, float eps, DeviceTensor& out) override {
    const std::int64_t cols = x.shape.back();
    cpu::layer_norm_f32(f32(x), residual ? f32(*residual) : nullptr, f32(gamma), f32(beta), eps,
                        f32(out), x.numel() / cols, cols);
  }

  void linear(const DeviceTensor& x, const LinearWeights& weights, Activation activation,
              DeviceTensor& y) override {
    const std::int64_t m = x.numel() / weights.in_features;
    EAQ_ASSERT(y.numel() == m * weights.out_features);
    if (cpu::is_quantized_linear(weights)) {
      cpu::run_quantized_linear(f32(x), m, weights, activation, f32(y));
      return;
    }
    const auto& w = static_cast<const CpuLinear&>(weights);
    cpu::gemm_f32(f32(x), w.weight_t.data<float>(),
                  w.bias.has_data() ? w.bias.data<float>() : nullptr, f32(y), m, w.out_features,
                  w.in_features);
    cpu::apply_activation(f32(y), y.numel(), activation);
  }

  void attention(const AttentionArgs& args) override { cpu::attention_f32(args); }

  void add(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out) override {
    const std::int64_t n = out.numel();
    for (std::int64_t i = 0; i < n; ++i) f32(out)[i] = f32(a)[i] + f32(b)[i];
  }

  void gather_rows(const DeviceTensor& x, const DeviceTensor& index, DeviceTensor& out) override {
    const std::int64_t cols = x.numel() / x.dim(0);
    const auto* idx = static_cast<const std::int32_t*>(index.data);
    const std::size_t row_bytes = static_cast<std::size_t>(cols) * dtype_size(x.dtype);
    for (std::int64_t i = 0; i < index.numel(); ++i) {
      EAQ_ASSERT(idx[i] >= 0 && idx[i] < x.dim(0));
      std::memcpy(static_cast<char*>(out.data) + i * row_bytes,
                  static_cast<const char*>(x.data) + idx[i] * row_bytes, row_bytes);
    }
  }

  void copy_rows_strided(const void* src, std::int64_t src_row_stride, void* dst,
                         std::int64_t dst_row_stride, std::int64_t rows, std::int64_t cols,
                         DType dtype) override {
    const std::size_t element = dtype_size(dtype);
    for (std::int64_t r = 0; r < rows; ++r) {
      std::memcpy(static_cast<char*>(dst) + r * dst_row_stride * element,
                  static_cast<const char*>(src) + r * src_row_stride * element, cols * element);
    }
  }

  void start_prompt(const PromptState& state) override { cpu::start_prompt(state); }
  void write_cache(const CacheWrite& args) override { cpu::write_cache(args); }
  void mark_cache_slot(const DeviceTensor& slot, DeviceTensor& key_mask) override {
    cpu::mark_cache_slot(i32(slot), i32(key_mask), key_mask.dim(0), key_mask.dim(1));
  }
  void increment(DeviceTensor& values) override { cpu::increment(i32(values), values.numel()); }
  void argmax_rows(const DeviceTensor& x, DeviceTensor& out) override {
    cpu::argmax_rows_f32(f32(x), i32(out), x.numel() / x.shape.back(), x.shape.back());
  }
  void token_nll(const DeviceTensor& logits, const DeviceTensor& targets,
                 DeviceTensor& nll) override {
    cpu::token_nll_f32(f32(logits), i32(targets), f32(nll), logits.numel() / logits.shape.back(),
                       logits.shape.back());
  }

  std::unique_ptr<CapturedGraph> capture(const std::function<void()>& body) override {
    return std::make_unique<CpuGraph>(body);
  }

 private:
  Precision precision_;
  MemoryStats stats_;
};

}  // namespace

bool cpu_supports(Precision precision) {
  return precision == Precision::Fp32 || cpu::supports_quantized(precision);
}

std::unique_ptr<Backend> make_cpu_backend(Precision precision) {
  EAQ_CHECK(cpu_supports(precision),
            "--precision {} is not available with --device cpu (the CPU backend runs fp32, int8, "
            "int8-static and int8-wo)",
            precision_name(precision));
  return std::make_unique<CpuBackend>(precision);
}

}  // namespace eaq
