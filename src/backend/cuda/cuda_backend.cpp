// The CUDA backend: cuBLASLt GEMMs with fused bias/activation epilogues, eaq's own kernels for
// embeddings, LayerNorm and attention, a caching allocator, one non-blocking stream, and CUDA
// graph capture of whole forwards.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/argmax_bounds.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/decode_step.hpp"
#include "backend/cuda/decoder_kernels.hpp"
#include "backend/cuda/device_allocator.hpp"
#include "backend/cuda/device_query.hpp"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/lt_matmul.hpp"
#include "backend/cuda/op_profiler.hpp"
#include "backend/cuda/quantized_linear.hpp"
#include "backend/cuda/step_gate.hpp"
#include "backend/factory.hpp"

namespace eaq {
namespace {

using cuda::LtMatmul;
using cuda::LtMatmulSpec;

constexpr std::size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt scratch, shared by all GEMMs
// Rows up to which EAQ_SPLIT_K_GEMM=1 runs f16/bf16 Linear layers with eaq's split-K GEMM instead
// of cuBLASLt (above the GEMV's 8): a prompt or two, a batch-32 decode step. Not the default:
// eaq_gemm_bench --only prefill times cuBLASLt's small-tile kernels faster on every GPT-2 shape
// but one (docs/results.md), so the kernel stays a measured variant until it wins.
constexpr std::int64_t kMaxSplitKRows = 256;

bool split_k_gemm_enabled() {
  static const bool enabled = cuda::env_is("EAQ_SPLIT_K_GEMM", "1");
  return enabled;
}

// EAQ_FUSED_DECODE=1 runs batch-1 decode steps as one kernel (decode_step.cu). Not the default:
// on an H100 and an H200 the step takes ~0.44 ms against ~0.33 ms op by op (docs/results.md), so
// the kernel stays a measured variant until it wins. Read at every step, so tests compare both.
bool fused_decode_enabled() {
  return cuda::env_is("EAQ_FUSED_DECODE", "1");
}

// EAQ_BOUNDED_ARGMAX=0 computes every logit of a batch-1 greedy step and takes their argmax
// (the full LM head) instead of bounded_argmax.cu's two kernels (to measure what they buy). Read
// at every call, so tests compare both.
bool bounded_argmax_enabled() {
  return !cuda::env_is("EAQ_BOUNDED_ARGMAX", "0");
}

// EAQ_STEP_START_KERNEL=0 runs a decode step's first op as three ordinary launches
// (mark_cache_slot, write_cache, embed) and its counter increment without dependent launch, as
// before start_decode_step_kernel (to measure what it buys; where the bounded head advances the
// counters itself, only with EAQ_SELECT_INCREMENT=0 too). Read at every call, so tests compare
// both.
bool step_start_kernel_enabled() {
  return !cuda::env_is("EAQ_STEP_START_KERNEL", "0");
}

// EAQ_FUSED_QKV_ATTENTION=0 runs a batch-1 decode step's LayerNorm + QKV GEMV and attention as two
// kernels instead of qkv_attention.cu's one (to measure what it buys). Read at every call, so
// tests compare both.
bool fused_qkv_attention_enabled() {
  return !cuda::env_is("EAQ_FUSED_QKV_ATTENTION", "0");
}

// EAQ_MLP_PENDING=1 runs a batch-1 decode step's feed-forward block as one kernel that leaves
// its residual sum pending (mlp_pending.cu) instead of its two GEMV kernels. Off by default: on an
// H200 it made the step slower (4,094 against 4,653 fp16 tokens/s; docs/results.md, the
// sixteenth session), because its 9.4 MB of weights have only the attention projection's run to
// load in, where the two kernels each had the kernel before them.
bool mlp_pending_enabled() {
  return cuda::env_is("EAQ_MLP_PENDING", "1");
}

// EAQ_ATTENTION_PENDING=1 runs a batch-1 decode step's attention projection inside the QKV +
// attention kernel, its sum left pending for c_fc's kernel (qkv_attention.cu), instead of as its
// own GEMV kernel. Off by default: on an H200 it made the step slower (4,815 against 4,988 fp16
// tokens/s; docs/results.md, the eighteenth session). Not with EAQ_MLP_PENDING=1. Read at every
// step, so tests compare both.
bool attention_pending_enabled() {
  return cuda::env_is("EAQ_ATTENTION_PENDING", "1");
}

long long* i64(const DeviceTensor& t) {
  EAQ_CHECK(t.dtype == DType::I64, "expected an I64 tensor, got {}", dtype_name(t.dtype));
  return static_cast<long long*>(t.data);
}

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return CUDA_R_32F;
    case DType::F16:
      return CUDA_R_16F;
    case DType::BF16:
      return CUDA_R_16BF;
    case DType::I8:
      return CUDA_R_8I;
    case DType::I32:
      return CUDA_R_32I;
    case DType::F8_E4M3:
      return CUDA_R_8F_E4M3;
    default:
      fail("internal error: no CUDA data type for {}", dtype_name(dtype));
  }
}

// Host-side conversion of a float tensor to F32, F16 or BF16 bytes.
HostTensor convert_on_host(const HostTensor& host, DType dtype) {
  if (host.dtype() == dtype) return host;
  const HostTensor f = host.to_f32();
  if (dtype == DType::F32) return f;
  HostTensor out = HostTensor::empty(dtype, host.shape());
  auto* dst = out.mutable_data<std::uint16_t>();
  for (std::int64_t i = 0; i < f.numel(); ++i) {
    dst[i] = dtype == DType::F16 ? f32_to_f16_bits(f.data<float>()[i])
                                 : f32_to_bf16_bits(f.data<float>()[i]);
  }
  return out;
}

std::int32_t* i32(const DeviceTensor& t) {
  return static_cast<std::int32_t*>(t.data);
}

bool is_float_dtype(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

class CudaLinear final : public LinearWeights {
 public:
  // Device buffers go back to the allocator with the layer (models die before their backend).
  explicit CudaLinear(cuda::DeviceAllocator& allocator) : allocator_(allocator) {}
  ~CudaLinear() override {
    for (DeviceTensor* t : {&weight, &bias, &padded_y}) allocator_.release(t->data);
    if (argmax_head) {
      for (DeviceTensor* t : {&argmax_head->q, &argmax_head->scale_radius, &argmax_head->quant_norm,
                              &argmax_head->upper, &argmax_head->state}) {
        allocator_.release(t->data);
      }
    }
  }

  DeviceTensor weight;  // [padded_out, in]
  DeviceTensor bias;    // [padded_out] or empty
  // Outputs are padded to a multiple of 8 features: cuBLASLt's fast kernels need 16-byte
  // aligned rows, and a 2-label classifier otherwise falls back to a kernel ~50x slower.
  std::int64_t padded_out = 0;
  // eaq's GEMV for <= 8 rows and (opt-in) split-K GEMM up to kMaxSplitKRows; not for tf32 or
  // autocast
  bool gemv_allowed = false;
  mutable DeviceTensor padded_y;   // [rows, padded_out], grown outside graph capture
  DType input_dtype = DType::F32;  // what the GEMM reads (autocast converts f32 inputs first)
  DType output_dtype = DType::F32;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  // One cuBLASLt configuration per (rows, activation), made on first use.
  mutable std::map<std::pair<std::int64_t, int>, std::unique_ptr<LtMatmul>> plans;
  // What layer_norm_linear_argmax reads besides the weight (argmax_bounds.hpp), made on its first
  // call outside graph capture: the int8 copy, (scale, radius) per row, the upper ends and the
  // kernels' state.
  struct ArgmaxHead {
    DeviceTensor q, scale_radius, quant_norm, upper, state;
    float slack = 0.0f;
  };
  mutable std::unique_ptr<ArgmaxHead> argmax_head;

 private:
  cuda::DeviceAllocator& allocator_;
};

class CudaGraph final : public CapturedGraph {
 public:
  CudaGraph(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  void launch() override { EAQ_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

// Brackets one op with the profiler's events when EAQ_PROFILE_OPS=1 (a no-op otherwise).
class ProfileScope {
 public:
  template <class NameFn>
  ProfileScope(cuda::OpProfiler& profiler, cudaStream_t stream, NameFn&& name)
      : profiler_(profiler), stream_(stream), on_(profiler.enabled()) {
    if (on_) profiler_.begin(name(), stream_);
  }
  ~ProfileScope() {
    if (on_) profiler_.end(stream_);
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  cuda::OpProfiler& profiler_;
  cudaStream_t stream_;
  bool on_;
};

// "layers.3.ffn_in" -> "ffn_in": one profile row per kind of layer.
std::string layer_kind(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

// With the profiler on, "graphs" replay the body so that every op is timed.
class ReplayGraph final : public CapturedGraph {
 public:
  explicit ReplayGraph(std::function<void()> body) : body_(std::move(body)) {}
  void launch() override { body_(); }

 private:
  std::function<void()> body_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(Precision precision, int device, const cudaDeviceProp& props)
      : precision_(precision), device_(device), props_(props), allocator_(device) {
    EAQ_CUDA_CHECK(cudaSetDevice(device_));
    EAQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    EAQ_CUBLAS_CHECK(cublasLtCreate(&lt_));
    workspace_ = allocator_.allocate(kWorkspaceBytes);
    traits_ = cuda_precision_traits(precision);
    if (is_quantized(precision)) {
      quantized_ = std::make_unique<cuda::QuantizedLinears>(cuda::QuantizedContext{
          precision, traits_.activation, lt_, stream_, &allocator_, workspace_, kWorkspaceBytes});
    }
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    profiler_.collect();
    profiler_.print();
    quantized_.reset();
    if (split_.partials) allocator_.release(split_.partials);
    if (split_.counters) allocator_.release(split_.counters);
    for (auto& [host, device] : decode_tables_) allocator_.release(device);
    if (grid_barrier_) allocator_.release(grid_barrier_);
    if (decode_partials_) allocator_.release(decode_partials_);
    print_timeline(timeline_, cuda::kDecodeTimelineSlots, cuda::decode_timeline_phase_name,
                   "EAQ_DECODE_TIMELINE", "fused decode step, the last block's clock", "step",
                   "steps");
    if (timeline_) allocator_.release(timeline_);
    print_timeline(qkv_timeline_, cuda::kQkvTimelineSlots, cuda::qkv_timeline_phase_name,
                   "EAQ_QKV_TIMELINE", "QKV + attention kernel, head 0's block 0", "launch",
                   "launches");
    if (qkv_timeline_) allocator_.release(qkv_timeline_);
    allocator_.release(workspace_);
    cublasLtDestroy(lt_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override {
    return fmt::format("cuda:{} {} (sm_{}{})", device_, props_.name, props_.major, props_.minor);
  }
  Precision precision() const override { return precision_; }
  DType activation_dtype() const override { return traits_.activation; }
  bool is_cuda() const override { return true; }
  std::string pci_bus_id() const override {
    char id[64] = {};
    if (cudaDeviceGetPCIBusId(id, sizeof id, device_) != cudaSuccess) return {};
    return id;
  }
  std::string attention_kernel() const override {
    return traits_.activation == DType::F32
               ? "eaq grouped attention (f32, CUDA cores, online softmax)"
               : "eaq WMMA attention (tensor cores; CUDA-core kernels for odd heads and decode)";
  }

  DeviceTensor allocate(DType dtype, Shape shape) override {
    DeviceTensor t{nullptr, dtype, std::move(shape)};
    t.data = allocator_.allocate(std::max<std::size_t>(t.nbytes(), 1));
    return t;
  }

  void release(DeviceTensor& t) override {
    if (t.data == nullptr) return;
    allocator_.release(t.data);
    t.data = nullptr;
  }

  DeviceTensor upload(const HostTensor& host, DType dtype) override {
    HostTensor staged;
    if (is_float_dtype(dtype)) {
      staged = convert_on_host(host, dtype);
    } else if (dtype == host.dtype()) {
      staged = host;
    } else if (dtype == DType::I32) {
      staged = HostTensor::empty(DType::I32, host.shape());
      const std::vector<std::int64_t> values = host.to_i64();
      for (std::size_t i = 0; i < values.size(); ++i) {
        staged.mutable_data<std::int32_t>()[i] = static_cast<std::int32_t>(values[i]);
      }
    } else {
      fail("cuda backend: cannot upload {} as {}", dtype_name(host.dtype()), dtype_name(dtype));
    }
    DeviceTensor t = allocate(dtype, host.shape());
    if (t.nbytes() > 0) {
      EAQ_CUDA_CHECK(
          cudaMemcpyAsync(t.data, staged.raw(), t.nbytes(), cudaMemcpyHostToDevice, stream_));
      EAQ_CUDA_CHECK(cudaStreamSynchronize(stream_));  // `staged` dies with this scope
    }
    return t;
  }

  HostTensor download(const DeviceTensor& device) override {
    HostTensor host = HostTensor::empty(device.dtype, device.shape);
    if (device.nbytes() > 0) {
      EAQ_CUDA_CHECK(cudaMemcpyAsync(host.mutable_raw(), device.data, device.nbytes(),
                                     cudaMemcpyDeviceToHost, stream_));
    }
    EAQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return device.dtype == DType::F16 || device.dtype == DType::BF16 ? host.to_f32() : host;
  }

  void copy(const DeviceTensor& src, DeviceTensor& dst) override {
    EAQ_ASSERT(src.nbytes() == dst.nbytes());
    if (src.nbytes() == 0) return;
    EAQ_CUDA_CHECK(
        cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDeviceToDevice, stream_));
  }

  void synchronize() override {
    EAQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (profiler_.enabled()) profiler_.collect();
  }
  MemoryStats memory_stats() const override { return allocator_.stats(); }

  std::unique_ptr<LinearWeights> prepare_linear(const HostTensor& weight, const HostTensor* bias,
                                                const LinearOptions& options) override {
    EAQ_ASSERT(weight.rank() == 2);
    if (options.quantize && quantized_) return quantized_->prepare(weight, bias, options);
    auto linear = std::make_unique<CudaLinear>(allocator_);
    linear->name = options.name;
    linear->out_features = weight.dim(0);
    linear->in_features = weight.dim(1);
    // Unquantized layers (and every layer of a float precision) run in the activation dtype,
    // except autocast, whose GEMMs read f16 and write the f32 residual stream.
    const bool autocast = precision_ == Precision::Fp16Autocast;
    const DType weight_dtype = autocast ? DType::F16 : traits_.activation;
    linear->input_dtype = weight_dtype;
    linear->output_dtype = traits_.activation;
    linear->compute =
        precision_ == Precision::Tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    linear->padded_out = (linear->out_features + 7) / 8 * 8;
    if (linear->padded_out == linear->out_features) {
      linear->weight = upload(weight, weight_dtype);
      if (bias != nullptr) linear->bias = upload(*bias, linear->output_dtype);
    } else {
      const HostTensor w = weight.to_f32();
      HostTensor padded = HostTensor::empty(DType::F32, {linear->padded_out, linear->in_features});
      std::memcpy(padded.mutable_raw(), w.raw(), w.nbytes());
      linear->weight = upload(padded, weight_dtype);
      if (bias != nullptr) {
        const HostTensor b = bias->to_f32();
        HostTensor padded_bias = HostTensor::empty(DType::F32, {linear->padded_out});
        std::memcpy(padded_bias.mutable_raw(), b.raw(), b.nbytes());
        linear->bias = upload(padded_bias, linear->output_dtype);
      }
    }
    linear->gemv_allowed = precision_ != Precision::Tf32 && !autocast;
    linear->kernel = fmt::format("cublasLt {}x{}->{}{}{}", dtype_name(weight_dtype),
                                 dtype_name(weight_dtype), dtype_name(linear->output_dtype),
                                 precision_ == Precision::Tf32 ? " (TF32)" : " (f32 accumulate)",
                                 !linear->gemv_allowed ? ""
                                 : traits_.activation == DType::F32 || !split_k_gemm_enabled()
                                     ? ", eaq GEMV for <= 8 rows"
                                     : fmt::format(", eaq GEMV for <= 8 rows, eaq split-K GEMM for "
                                                   "<= {} rows",
                                                   kMaxSplitKRows));
    return linear;
  }

  void embed(const DeviceTensor& ids, const DeviceTensor& word_table,
             const DeviceTensor* position_ids, const DeviceTensor* position_table,
             const DeviceTensor* type_ids, const DeviceTensor* type_table,
             DeviceTensor& out) override {
    ProfileScope scope(profiler_, stream_, [] { return std::string("embed"); });
    cuda::launch_embed(
        out.dtype, static_cast<const std::int32_t*>(ids.data), word_table.data,
        position_ids ? static_cast<const std::int32_t*>(position_ids->data) : nullptr,
        position_table ? position_table->data : nullptr,
        type_ids ? static_cast<const std::int32_t*>(type_ids->data) : nullptr,
        type_table ? type_table->data : nullptr, out.data, ids.numel(), word_table.dim(1), stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  void layer_norm(const DeviceTensor& x, const DeviceTensor* residual, const DeviceTensor& gamma,
                  const DeviceTensor& beta, float eps, DeviceTensor& out) override {
    const std::int64_t cols = x.shape.back();
    ProfileScope scope(profiler_, stream_,
                       [&] { return fmt::format("layer_norm [{}, {}]", x.numel() / cols, cols); });
    cuda::launch_layer_norm(
        x.dtype, x.data, residual ? residual->data : nullptr, static_cast<const float*>(gamma.data),
        static_cast<const float*>(beta.data), eps, out.data, x.numel() / cols, cols, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  void linear(const DeviceTensor& x, const LinearWeights& weights, Activation activation,
              DeviceTensor& y) override {
    if (const auto* quantized = cuda::QuantizedLinears::as_quantized(weights)) {
      quantized_->linear(x, *quantized, activation, y);
      return;
    }
    const auto& w = static_cast<const CudaLinear&>(weights);
    const std::int64_t m = x.numel() / w.in_features;
    EAQ_ASSERT(y.numel() == m * w.out_features);
    const void* input = x.data;
    if (x.dtype != w.input_dtype) {
      // Autocast: f32 activations are rounded to f16 for the GEMM.
      ensure_scratch(static_cast<std::size_t>(x.numel()) * dtype_size(w.input_dtype));
      ProfileScope scope(profiler_, stream_, [] { return std::string("convert f32->f16"); });
      cuda::launch_convert(x.dtype, x.data, w.input_dtype, scratch_, x.numel(), stream_);
      EAQ_CUDA_CHECK_LAUNCH();
      input = scratch_;
    }
    const bool has_bias = w.bias.data != nullptr;
    // A few rows (decode steps, heads): eaq's GEMV reads W once with every SM busy. Not for tf32,
    // whose semantics are TF32 tensor-core math, nor autocast's mixed dtypes.
    if (w.gemv_allowed && x.dtype == w.input_dtype &&
        cuda::gemv_eligible(x.dtype, m, w.in_features, input, w.weight.data)) {
      ProfileScope scope(profiler_, stream_, [&] {
        return fmt::format("gemv {} [{} x {} x {}] {}", layer_kind(w.name), m, w.out_features,
                           w.in_features, activation_name(activation));
      });
      cuda::GemvArgs g;
      g.x = input;
      g.w = w.weight.data;
      g.bias = has_bias ? w.bias.data : nullptr;
      g.y = y.data;
      g.m = m;
      g.n = w.out_features;
      g.k = w.in_features;
      g.activation = activation;
      cuda::launch_gemv(x.dtype, g, stream_);
      EAQ_CUDA_CHECK_LAUNCH();
      return;
    }
    if (const CudaLinear* sk = split_k_layer(x, weights); sk != nullptr && y.data != x.data) {
      run_split_k(x, *sk, activation, nullptr, y);
      return;
    }
    // Fused epilogues: bias, bias + ReLU, bias + GELU (cuBLASLt's GELU is the tanh form).
    // Exact-erf GELU and tanh run as a separate elementwise kernel.
    Activation fused = activation == Activation::Relu || activation == Activation::GeluTanh
                           ? activation
                           : Activation::None;
    const LtMatmul& plan = plan_for(w, m, fused);
    const float alpha = 1.0f, beta = 0.0f;
    void* out = y.data;
    const bool padded = w.padded_out != w.out_features;
    if (padded) {
      if (!w.padded_y.data || w.padded_y.dim(0) < m) {
        release(w.padded_y);
        w.padded_y = allocate(w.output_dtype, {m, w.padded_out});
      }
      out = w.padded_y.data;
    }
    {
      ProfileScope scope(profiler_, stream_, [&] {
        return fmt::format("gemm {} [{} x {} x {}] {}", layer_kind(w.name), m, w.out_features,
                           w.in_features, activation_name(fused));
      });
      plan.run(w.weight.data, input, out, has_bias ? w.bias.data : nullptr, &alpha, &beta,
               workspace_, stream_);
      if (padded) {
        const std::size_t element = dtype_size(w.output_dtype);
        EAQ_CUDA_CHECK(cudaMemcpy2DAsync(y.data, w.out_features * element, out,
                                         w.padded_out * element, w.out_features * element, m,
                                         cudaMemcpyDeviceToDevice, stream_));
      }
    }
    if (fused != activation) {
      ProfileScope scope(profiler_, stream_,
                         [&] { return fmt::format("activation {}", activation_name(activation)); });
      cuda::launch_activation(y.dtype, y.data, y.numel(), activation, stream_);
      EAQ_CUDA_CHECK_LAUNCH();
    }
  }

  // The cuBLASLt configuration of layer `w` for m rows with epilogue `fused`, made on first use.
  const LtMatmul& plan_for(const CudaLinear& w, std::int64_t m, Activation fused) {
    const bool has_bias = w.bias.data != nullptr;
    auto& plan = w.plans[{m, static_cast<int>(fused)}];
    if (!plan) {
      LtMatmulSpec spec;
      spec.weight_type = spec.input_type = cuda_type(w.input_dtype);
      spec.output_type = cuda_type(w.output_dtype);
      spec.compute = w.compute;
      spec.bias_type = cuda_type(w.output_dtype);
      spec.m = m;
      spec.n = w.padded_out;
      spec.k = w.in_features;
      if (fused == Activation::Relu)
        spec.epilogue = has_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
      else if (fused == Activation::GeluTanh)
        spec.epilogue = has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
      else
        spec.epilogue = has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
      plan = std::make_unique<LtMatmul>(lt_, spec, kWorkspaceBytes, w.name, &lt_tuning_);
    }
    return *plan;
  }

  // The float layer behind `weights` when eaq's GEMV can run it on x (m rows), else null.
  const CudaLinear* gemv_layer(const DeviceTensor& x, const LinearWeights& weights) const {
    const CudaLinear* w = float_layer(&weights, x.dtype);
    if (w == nullptr || !cuda::gemv_eligible(x.dtype, x.numel() / w->in_features, w->in_features,
                                             x.data, w->weight.data)) {
      return nullptr;
    }
    return w;
  }

  // The head's int8 copy and bounds for layer_norm_linear_argmax, made on the first call (its
  // weight comes back to the host once); null during graph capture before that.
  const CudaLinear::ArgmaxHead* argmax_head(const CudaLinear& w, DType logits) {
    if (w.argmax_head) return w.argmax_head.get();
    if (capturing()) return nullptr;
    const ArgmaxBounds bounds = make_argmax_bounds(download(w.weight), logits);
    auto head = std::make_unique<CudaLinear::ArgmaxHead>();
    HostTensor q = HostTensor::empty(DType::I8, {bounds.rows, bounds.k});
    std::memcpy(q.mutable_raw(), bounds.q.data(), bounds.q.size());
    HostTensor scale_radius = HostTensor::empty(DType::F32, {bounds.rows, 2});
    for (std::int64_t i = 0; i < bounds.rows; ++i) {
      scale_radius.mutable_data<float>()[2 * i] = bounds.scale[static_cast<std::size_t>(i)];
      scale_radius.mutable_data<float>()[2 * i + 1] = bounds.radius[static_cast<std::size_t>(i)];
    }
    head->q = upload(q, DType::I8);
    head->quant_norm = upload(HostTensor::from_f32({bounds.rows}, bounds.quant_norm), DType::F32);
    head->scale_radius = upload(scale_radius, DType::F32);
    head->upper = allocate(DType::F32, {bounds.rows});
    head->state =
        allocate(DType::U8, {static_cast<std::int64_t>(cuda::bounded_argmax_state_bytes())});
    EAQ_CUDA_CHECK(cudaMemsetAsync(head->state.data, 0, head->state.nbytes(), stream_));
    head->slack = bounds.slack;
    w.argmax_head = std::move(head);
    return w.argmax_head.get();
  }

  // The float layer behind `weights` when eaq's split-K GEMM runs it on x, else null.
  const CudaLinear* split_k_layer(const DeviceTensor& x, const LinearWeights& weights) const {
    const CudaLinear* w = split_k_gemm_enabled() ? float_layer(&weights, x.dtype) : nullptr;
    if (w == nullptr || x.numel() / w->in_features > kMaxSplitKRows ||
        !cuda::split_k_gemm_eligible(x.dtype, w->in_features, x.data, w->weight.data)) {
      return nullptr;
    }
    return w;
  }

  // y = act(x W^T + b) (+ residual) with eaq's split-K GEMM; residual may alias y.
  void run_split_k(const DeviceTensor& x, const CudaLinear& w, Activation activation,
                   const DeviceTensor* residual, DeviceTensor& y) {
    cuda::SplitKGemmArgs g;
    g.x = x.data;
    g.w = w.weight.data;
    g.bias = w.bias.data;
    g.residual = residual ? residual->data : nullptr;
    g.y = y.data;
    g.m = x.numel() / w.in_features;
    g.n = w.out_features;
    g.k = w.in_features;
    g.activation = activation;
    ProfileScope scope(profiler_, stream_, [&] {
      return fmt::format("split-k gemm{} {} [{} x {} x {}] {} (splits {})",
                         residual ? "+residual" : "", layer_kind(w.name), g.m, g.n, g.k,
                         activation_name(activation), cuda::split_k_gemm_splits(g));
    });
    cuda::launch_split_k_gemm(x.dtype, g, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  cuda::GemvArgs gemv_args(const DeviceTensor& x, const CudaLinear& w, DeviceTensor& y) const {
    cuda::GemvArgs g;
    g.x = x.data;
    g.w = w.weight.data;
    g.bias = w.bias.data;
    g.y = y.data;
    g.m = x.numel() / w.in_features;
    g.n = w.out_features;
    g.k = w.in_features;
    g.early_dependents = cuda::early_dependent_launch();
    return g;
  }

  // gemv_args with a LayerNorm of x (gamma, beta, eps) before the product, stored into `out`.
  cuda::GemvArgs layer_norm_gemv_args(const DeviceTensor& x, const CudaLinear& w,
                                      const DeviceTensor& gamma, const DeviceTensor& beta,
                                      float eps, DeviceTensor& out, Activation activation,
                                      DeviceTensor& y) const {
    cuda::GemvArgs g = gemv_args(x, w, y);
    g.activation = activation;
    g.ln_gamma = static_cast<const float*>(gamma.data);
    g.ln_beta = static_cast<const float*>(beta.data);
    g.ln_eps = eps;
    g.ln_out = out.data;
    return g;
  }

  bool capturing() const {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    EAQ_CUDA_CHECK(cudaStreamIsCapturing(stream_, &status));
    return status != cudaStreamCaptureStatusNone;
  }

  void layer_norm_linear(const DeviceTensor& x, const DeviceTensor* residual,
                         const DeviceTensor& gamma, const DeviceTensor& beta, float eps,
                         DeviceTensor& out, const LinearWeights& weights, Activation activation,
                         DeviceTensor& y) override {
    if (quantized_ &&
        quantized_->layer_norm_linear(x, residual, gamma, beta, eps, out, weights, activation, y)) {
      return;
    }
    const CudaLinear* w = gemv_layer(x, weights);
    // Block 0 of the fused kernel writes `out` while the others still read x: no aliasing.
    const bool separate = out.data != x.data && (!residual || out.data != residual->data) &&
                          y.data != x.data && y.data != out.data;
    if (w != nullptr && separate && x.dtype == traits_.activation) {
      ProfileScope scope(profiler_, stream_, [&] {
        return fmt::format("layer_norm+gemv {} [{} x {} x {}] {}", layer_kind(w->name),
                           x.numel() / w->in_features, w->out_features, w->in_features,
                           activation_name(activation));
      });
      cuda::GemvArgs g = layer_norm_gemv_args(x, *w, gamma, beta, eps, out, activation, y);
      g.ln_residual = residual ? residual->data : nullptr;
      cuda::launch_gemv(x.dtype, g, stream_);
      EAQ_CUDA_CHECK_LAUNCH();
      return;
    }
    Backend::layer_norm_linear(x, residual, gamma, beta, eps, out, weights, activation, y);
  }

  bool layer_norm_linear_argmax(const DeviceTensor& x, const DeviceTensor& gamma,
                                const DeviceTensor& beta, float eps, DeviceTensor& out,
                                const LinearWeights& weights, DeviceTensor& next_ids,
                                const DeviceTensor* pending, DeviceTensor* counters) override {
    if (!bounded_argmax_enabled() || x.numel() != weights.in_features) return false;  // one row
    const CudaLinear* w = gemv_layer(x, weights);
    // The weight's padding rows (to a multiple of 8: GPT-2's 50,257) are never read.
    if (w == nullptr || w->bias.data != nullptr || x.dtype != traits_.activation ||
        out.data == x.data || next_ids.dtype != DType::I32) {
      return false;
    }
    cuda::BoundedArgmaxArgs a;
    a.x = x.data;
    a.ln_gamma = static_cast<const float*>(gamma.data);
    a.ln_beta = static_cast<const float*>(beta.data);
    a.ln_eps = eps;
    a.ln_out = out.data;
    a.w = w->weight.data;
    a.n = w->out_features;
    a.k = w->in_features;
    a.out = i32(next_ids);
    if (pending != nullptr) a.pending = i64(*pending);
    a.early_dependents = cuda::early_dependent_launch();
    if (!cuda::bounded_argmax_eligible(x.dtype, a)) return false;
    const CudaLinear::ArgmaxHead* head = argmax_head(*w, x.dtype);
    if (head == nullptr) return false;
    a.q = static_cast<const signed char*>(head->q.data);
    a.scale_radius = static_cast<const float2*>(head->scale_radius.data);
    a.quant_norm = static_cast<const float*>(head->quant_norm.data);
    a.slack = head->slack;
    a.upper = static_cast<float*>(head->upper.data);
    a.state = head->state.data;
    ProfileScope scope(profiler_, stream_, [&] {
      return fmt::format("layer_norm+bounded argmax {} [1 x {} x {}]", layer_kind(w->name),
                         w->out_features, w->in_features);
    });
    // The counters' increment in the select kernel's last block, unless EAQ_SELECT_INCREMENT=0
    // (then its own kernel, as before; read at every call).
    const bool fold_increment = counters != nullptr && !cuda::env_is("EAQ_SELECT_INCREMENT", "0");
    if (fold_increment) {
      EAQ_CHECK(counters->dtype == DType::I32, "bounded argmax: counters must be I32, got {}",
                dtype_name(counters->dtype));
      a.increment = i32(*counters);
      a.increment_count = counters->numel();
    }
    cuda::launch_bounded_argmax(x.dtype, a, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
    if (counters != nullptr && !fold_increment) increment(*counters);
    return true;
  }

  void linear_residual(const DeviceTensor& x, const LinearWeights& weights,
                       const DeviceTensor& residual, DeviceTensor& scratch,
                       DeviceTensor& y) override {
    if (quantized_ && quantized_->linear_residual(x, weights, residual, y)) return;
    if (const CudaLinear* w = gemv_layer(x, weights); w != nullptr && y.data != x.data) {
      ProfileScope scope(profiler_, stream_, [&] {
        return fmt::format("gemv+residual {} [{} x {} x {}]", layer_kind(w->name),
                           x.numel() / w->in_features, w->out_features, w->in_features);
      });
      cuda::GemvArgs g = gemv_args(x, *w, y);
      g.residual = residual.data;
      // The attention projection of a step whose feed-forward blocks leave their sums pending:
      // the one-kernel block after it loads both its matrices while this kernel waits.
      g.early_dependents = g.early_dependents || residual.data == pending_finished_row_;
      cuda::launch_gemv(x.dtype, g, stream_);
      EAQ_CUDA_CHECK_LAUNCH();
      return;
    }
    if (const CudaLinear* sk = split_k_layer(x, weights); sk != nullptr && y.data != x.data) {
      run_split_k(x, *sk, Activation::None, &residual, y);
      return;
    }
    // cuBLASLt adds the residual as its C operand (beta = 1) when y already holds it.
    const auto* w = cuda::QuantizedLinears::as_quantized(weights)
                        ? nullptr
                        : static_cast<const CudaLinear*>(&weights);
    if (w != nullptr && y.data == residual.data && y.data != x.data &&
        w->padded_out == w->out_features && x.dtype == w->input_dtype &&
        y.dtype == w->output_dtype) {
      const std::int64_t m = x.numel() / w->in_features;
      const LtMatmul& plan = plan_for(*w, m, Activation::None);
      const void* bias = w->bias.data;
      // Timing candidate algorithms writes their output: do it on the scratch, with beta 0.
      if (plan.needs_tuning() && !capturing())
        plan.tune_on(x.data, scratch.data, bias, workspace_, stream_);
      ProfileScope scope(profiler_, stream_, [&] {
        return fmt::format("gemm+residual {} [{} x {} x {}]", layer_kind(w->name), m,
                           w->out_features, w->in_features);
      });
      const float alpha = 1.0f, beta = 1.0f;
      plan.run(w->weight.data, x.data, y.data, bias, &alpha, &beta, workspace_, stream_);
      return;
    }
    Backend::linear_residual(x, weights, residual, scratch, y);
  }

  void layer_norm_linear_attention(const DeviceTensor& x, const DeviceTensor& gamma,
                                   const DeviceTensor& beta, float eps, DeviceTensor& normed,
                                   const LinearWeights& weights, DeviceTensor& qkv,
                                   const AttentionArgs& args,
                                   const PendingResidual* pending) override {
    if (pending != nullptr) {
      EAQ_CHECK(pending->finished != nullptr && pending->finished->data != x.data &&
                    pending->finished->numel() == x.numel() && pending->finished->dtype == x.dtype,
                "layer_norm_linear_attention: a pending residual needs a separate row of {} "
                "values to finish into",
                x.numel());
    }
    cuda::QkvAttentionArgs fused;
    if (pending != nullptr) {
      pending_finished_row_ = pending->finished->data;
      fused.pending = pending->in ? i64(*pending->in) : nullptr;
      fused.x_out = pending->finished->data;
      fused.pending_zero = pending->zero ? i64(*pending->zero) : nullptr;
    }
    if (fused_qkv_attention_enabled() &&
        qkv_attention_args(x, gamma, beta, eps, weights, qkv, args, fused)) {
      fused.early_dependents =
          fused.weights == cuda::WeightKind::Float && cuda::early_dependent_launch();
      ProfileScope scope(profiler_, stream_, [&] {
        return fmt::format("layer_norm+qkv gemv+attention q1 kv{}{}", args.kv_len,
                           pending && pending->in ? " (finishes a pending residual)" : "");
      });
      fused.timeline = qkv_timeline();
      cuda::launch_qkv_attention(traits_.activation, fused, stream_);
      EAQ_CUDA_CHECK_LAUNCH();
      return;
    }
    if (pending == nullptr) {
      Backend::layer_norm_linear_attention(x, gamma, beta, eps, normed, weights, qkv, args);
      return;
    }
    // The kernels one by one: finish x, zero the next sum, then the two ops on the finished row.
    if (pending->in != nullptr) {
      finish_pending(x, *pending->in, *pending->finished);
    } else {
      copy(x, *pending->finished);
    }
    if (pending->zero != nullptr) {
      EAQ_CUDA_CHECK(cudaMemsetAsync(pending->zero->data, 0,
                                     pending->zero->numel() * sizeof(long long), stream_));
    }
    Backend::layer_norm_linear_attention(*pending->finished, gamma, beta, eps, normed, weights, qkv,
                                         args);
  }

  bool can_leave_attention_pending(const DeviceTensor& x, const LinearWeights& qkv,
                                   const LinearWeights& projection) const override {
    const DType act = traits_.activation;
    const std::int64_t e = x.numel();
    return attention_pending_enabled() && !mlp_pending_enabled() &&
           (act == DType::F16 || act == DType::BF16) && x.dtype == act &&
           float_layer(&qkv, act) != nullptr && float_layer(&projection, act) != nullptr &&
           qkv.in_features == e && projection.in_features == e && projection.out_features == e;
  }

  void layer_norm_attention_pending(const DeviceTensor& x, const DeviceTensor& gamma,
                                    const DeviceTensor& beta, float eps, DeviceTensor& normed,
                                    const LinearWeights& weights, DeviceTensor& qkv,
                                    const AttentionArgs& args, const LinearWeights& projection,
                                    DeviceTensor& pending) override {
    EAQ_CHECK(can_leave_attention_pending(x, weights, projection) &&
                  pending.shape == pending_residual_shape(x.numel()) && normed.numel() == x.numel(),
              "layer_norm_attention_pending: an attention block of {} values this backend cannot "
              "leave pending",
              x.numel());
    const CudaLinear* w_p = float_layer(&projection, traits_.activation);
    cuda::QkvAttentionArgs fused;
    fused.proj_w = w_p->weight.data;
    fused.proj_bias = w_p->bias.data;
    fused.proj_pending = i64(pending);
    if (fused_qkv_attention_enabled() && w_p->padded_out == w_p->out_features &&
        qkv_attention_args(x, gamma, beta, eps, weights, qkv, args, fused)) {
      fused.early_dependents = cuda::early_dependent_launch();
      ProfileScope scope(profiler_, stream_, [&] {
        return fmt::format("layer_norm+qkv gemv+attention+projection (pending) q1 kv{}",
                           args.kv_len);
      });
      fused.timeline = qkv_timeline();
      cuda::launch_qkv_attention(traits_.activation, fused, stream_);
      EAQ_CUDA_CHECK_LAUNCH();
      return;
    }
    // The ops one by one: the block, its projection into `normed` (scratch by now), into the sum.
    layer_norm_linear_attention(x, gamma, beta, eps, normed, weights, qkv, args, nullptr);
    const DeviceTensor context{args.out, x.dtype, x.shape};
    linear(context, projection, Activation::None, normed);
    ProfileScope scope(profiler_, stream_, [] { return std::string("add to pending residual"); });
    cuda::launch_add_to_pending(x.dtype, normed.data, i64(pending), x.numel(), stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  void layer_norm_linear_pending(const DeviceTensor& x, const DeviceTensor& pending,
                                 DeviceTensor& finished, const DeviceTensor& gamma,
                                 const DeviceTensor& beta, float eps, DeviceTensor& out,
                                 const LinearWeights& weights, Activation activation,
                                 DeviceTensor& y) override {
    EAQ_CHECK(pending.shape == pending_residual_shape(x.numel()) && finished.numel() == x.numel() &&
                  finished.dtype == x.dtype && finished.data != x.data &&
                  finished.data != out.data && finished.data != y.data,
              "layer_norm_linear_pending: a row of {} values, a sum of {} and a separate row of "
              "{} to finish into",
              x.numel(), shape_str(pending.shape), finished.numel());
    const CudaLinear* w = gemv_layer(x, weights);
    const bool separate = out.data != x.data && y.data != x.data && y.data != out.data;
    if (w != nullptr && separate && x.dtype == traits_.activation) {
      cuda::GemvArgs g = layer_norm_gemv_args(x, *w, gamma, beta, eps, out, activation, y);
      g.ln_pending = i64(pending);
      g.ln_finished = finished.data;
      if (cuda::gemv_takes_pending(x.dtype, g)) {
        ProfileScope scope(profiler_, stream_, [&] {
          return fmt::format("layer_norm+gemv {} [1 x {} x {}] {} (finishes a pending residual)",
                             layer_kind(w->name), w->out_features, w->in_features,
                             activation_name(activation));
        });
        cuda::launch_gemv(x.dtype, g, stream_);
        EAQ_CUDA_CHECK_LAUNCH();
        return;
      }
    }
    Backend::layer_norm_linear_pending(x, pending, finished, gamma, beta, eps, out, weights,
                                       activation, y);
  }

  void linear_residual_zeroing(const DeviceTensor& x, const LinearWeights& weights,
                               const DeviceTensor& residual, DeviceTensor& scratch, DeviceTensor& y,
                               DeviceTensor& zero) override {
    if (const CudaLinear* w = gemv_layer(x, weights); w != nullptr && y.data != x.data) {
      cuda::GemvArgs g = gemv_args(x, *w, y);
      g.residual = residual.data;
      g.zero = i64(zero);
      g.zero_count = zero.numel();
      if (cuda::gemv_takes_pending(x.dtype, g)) {
        ProfileScope scope(profiler_, stream_, [&] {
          return fmt::format("gemv+residual {} [1 x {} x {}] (zeroes a pending residual)",
                             layer_kind(w->name), w->out_features, w->in_features);
        });
        cuda::launch_gemv(x.dtype, g, stream_);
        EAQ_CUDA_CHECK_LAUNCH();
        return;
      }
    }
    linear_residual(x, weights, residual, scratch, y);
    EAQ_CUDA_CHECK(cudaMemsetAsync(zero.data, 0, zero.nbytes(), stream_));
  }

  // One kernel for the feed-forward block of a batch-1 decode step in f16/bf16 (mlp_pending.cu).
  bool mlp_pending_args(const DeviceTensor& x, const LinearWeights& first,
                        const LinearWeights& second, cuda::MlpPendingArgs& a) const {
    const DType act = traits_.activation;
    const CudaLinear* w1 = float_layer(&first, act);
    const CudaLinear* w2 = float_layer(&second, act);
    if (!mlp_pending_enabled() || w1 == nullptr || w2 == nullptr || x.dtype != act ||
        x.numel() != first.in_features || first.out_features != second.in_features ||
        second.out_features != first.in_features || w1->padded_out != w1->out_features ||
        w2->padded_out != w2->out_features) {
      return false;
    }
    a.x = x.data;
    a.w_in = w1->weight.data;
    a.b_in = w1->bias.data;
    a.w_out = w2->weight.data;
    a.b_out = w2->bias.data;
    a.hidden = first.in_features;
    a.inner = first.out_features;
    return true;
  }

  bool can_leave_mlp_pending(const DeviceTensor& x, const LinearWeights& first,
                             const LinearWeights& second) const override {
    cuda::MlpPendingArgs a;
    return mlp_pending_args(x, first, second, a) &&
           cuda::mlp_pending_eligible(traits_.activation, a);
  }

  void layer_norm_mlp_pending(const DeviceTensor& x, const DeviceTensor& gamma,
                              const DeviceTensor& beta, float eps, const LinearWeights& first,
                              Activation activation, const LinearWeights& second,
                              DeviceTensor& pending) override {
    cuda::MlpPendingArgs a;
    EAQ_CHECK(
        mlp_pending_args(x, first, second, a) && pending.shape == pending_residual_shape(x.numel()),
        "layer_norm_mlp_pending: a block of {} x {} this backend cannot leave pending",
        first.in_features, first.out_features);
    a.ln_gamma = static_cast<const float*>(gamma.data);
    a.ln_beta = static_cast<const float*>(beta.data);
    a.ln_eps = eps;
    a.activation = activation;
    a.pending = i64(pending);
    a.early_dependents = cuda::early_dependent_launch();
    ProfileScope scope(profiler_, stream_, [&] {
      return fmt::format("layer_norm+mlp (pending) [1 x {} x {}] {}", a.hidden, a.inner,
                         activation_name(activation));
    });
    cuda::launch_mlp_pending(traits_.activation, a, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  void finish_pending(const DeviceTensor& x, const DeviceTensor& pending,
                      DeviceTensor& out) override {
    EAQ_CHECK(pending.shape == pending_residual_shape(x.numel()) && out.numel() == x.numel() &&
                  out.dtype == x.dtype,
              "finish_pending: a row of {} values, a sum of {} and an output of {}", x.numel(),
              shape_str(pending.shape), out.numel());
    ProfileScope scope(profiler_, stream_, [] { return std::string("finish pending residual"); });
    cuda::launch_finish_pending(x.dtype, x.data, i64(pending), out.data, x.numel(), stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  // The one-kernel form's arguments when it can run this call (a batch-1 decode step: a float
  // QKV layer, q, k and v in qkv, the cache appended at a device slot, heads of 64).
  bool qkv_attention_args(const DeviceTensor& x, const DeviceTensor& gamma,
                          const DeviceTensor& beta, float eps, const LinearWeights& weights,
                          const DeviceTensor& qkv, const AttentionArgs& args,
                          cuda::QkvAttentionArgs& out) const {
    const DType act = traits_.activation;
    const CudaLinear* w = float_layer(&weights, act);
    // Float weights, or the 8-bit weights of a quantized precision (as its GEMV would read them).
    const bool quantized =
        w == nullptr && quantized_ && quantized_->qkv_attention_weights(weights, out);
    const std::int64_t e = x.numel();
    const std::size_t element = dtype_size(act);
    const char* q = static_cast<const char*>(qkv.data);
    const char* cache = static_cast<const char*>(args.k);
    if ((w == nullptr && !quantized) || x.dtype != act || qkv.dtype != act ||
        weights.in_features != e || weights.out_features != 3 * e || args.batch != 1 ||
        args.q_len != 1 || args.causal || args.append_slot == nullptr || args.key_mask == nullptr ||
        args.store_k != nullptr || args.heads * args.head_dim != e || args.q != q ||
        args.append_k != q + e * element || args.append_v != q + 2 * e * element ||
        args.v != cache + e * element || args.kv_row_stride != 2 * e) {
      return false;
    }
    out.x = x.data;
    out.ln_gamma = static_cast<const float*>(gamma.data);
    out.ln_beta = static_cast<const float*>(beta.data);
    out.ln_eps = eps;
    if (!quantized) {
      out.w = w->weight.data;
      out.bias = w->bias.data;
    }
    out.cache = const_cast<void*>(args.k);  // the op appends to it (AttentionArgs: k writable)
    out.key_mask = args.key_mask;
    out.slot = args.append_slot;
    out.out = args.out;
    out.hidden = e;
    out.heads = args.heads;
    out.capacity = args.kv_len;
    out.scale = args.scale;
    return cuda::qkv_attention_eligible(act, out);
  }

  void feed_forward(const DeviceTensor& x, const LinearWeights& first, Activation activation,
                    DeviceTensor& mid, const LinearWeights& second, DeviceTensor& y) override {
    if (quantized_ && quantized_->feed_forward(x, first, activation, mid, second, y)) return;
    Backend::feed_forward(x, first, activation, mid, second, y);
  }

  void attention(const AttentionArgs& args) override {
    ProfileScope scope(profiler_, stream_, [&] {
      return fmt::format("attention q{} kv{} {}", args.q_len, args.kv_len,
                         cuda::attention_kernel_name(traits_.activation, args));
    });
    ensure_split_scratch(cuda::attention_split_need(traits_.activation, args));
    cuda::launch_attention(traits_.activation, args, split_, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  void add(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out) override {
    ProfileScope scope(profiler_, stream_, [] { return std::string("add"); });
    cuda::launch_add(out.dtype, a.data, b.data, out.data, out.numel(), stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  void gather_rows(const DeviceTensor& x, const DeviceTensor& index, DeviceTensor& out) override {
    const std::int64_t row_bytes =
        static_cast<std::int64_t>(x.nbytes() / static_cast<std::size_t>(x.dim(0)));
    cuda::launch_gather_rows(x.data, static_cast<const std::int32_t*>(index.data), out.data,
                             index.numel(), row_bytes, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  void copy_rows_strided(const void* src, std::int64_t src_row_stride, void* dst,
                         std::int64_t dst_row_stride, std::int64_t rows, std::int64_t cols,
                         DType dtype) override {
    if (rows == 0 || cols == 0) return;
    const std::size_t element = dtype_size(dtype);
    EAQ_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_row_stride * element, src, src_row_stride * element,
                                     cols * element, rows, cudaMemcpyDeviceToDevice, stream_));
  }

  void start_prompt(const PromptState& state) override {
    ProfileScope scope(profiler_, stream_, [] { return std::string("start_prompt"); });
    cuda::launch_start_prompt(state, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }
  void write_cache(const CacheWrite& args) override {
    ProfileScope scope(profiler_, stream_, [] { return std::string("write_cache"); });
    cuda::launch_write_cache(args, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }
  void mark_cache_slot(const DeviceTensor& slot, DeviceTensor& key_mask) override {
    ProfileScope scope(profiler_, stream_, [] { return std::string("mark_cache_slot"); });
    cuda::launch_mark_cache_slot(i32(slot), i32(key_mask), key_mask.dim(0), key_mask.dim(1),
                                 stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }
  void increment(DeviceTensor& values) override {
    ProfileScope scope(profiler_, stream_, [] { return std::string("increment"); });
    cuda::launch_increment(i32(values), values.numel(), step_start_kernel_enabled(), stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }
  void start_decode_step(const DecodeStart& start) override {
    int* gate = start.gate ? static_cast<int*>(start.gate->device_word()) : nullptr;
    if (!step_start_kernel_enabled() || start.positions == nullptr ||
        start.position_table == nullptr) {
      if (gate) cuda::launch_step_gate(gate, stream_);
      DecodeStart ungated = start;
      ungated.gate = nullptr;
      Backend::start_decode_step(ungated);  // the kernel adds a position row; embed takes none
      return;
    }
    ProfileScope scope(profiler_, stream_, [] { return std::string("start_decode_step"); });
    cuda::DecodeStartArgs a;
    a.ids = i32(*start.ids);
    a.slot = i32(*start.slot);
    a.key_mask = i32(*start.key_mask);
    a.tokens = i32(*start.tokens);
    a.batch = start.ids->numel();
    a.capacity = start.tokens->dim(1);
    a.word_table = start.word_table->data;
    a.positions = i32(*start.positions);
    a.position_table = start.position_table->data;
    a.hidden = start.hidden->data;
    a.width = start.word_table->dim(1);
    a.gate = gate;
    cuda::launch_start_decode_step(start.hidden->dtype, a, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }
  void argmax_rows(const DeviceTensor& x, DeviceTensor& out) override {
    ProfileScope scope(profiler_, stream_, [] { return std::string("argmax_rows"); });
    const std::int64_t rows = x.numel() / x.shape.back(), cols = x.shape.back();
    ensure_split_scratch(cuda::argmax_split_need(rows, cols));
    cuda::launch_argmax_rows(x.dtype, x.data, i32(out), rows, cols, split_, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }
  void token_nll(const DeviceTensor& logits, const DeviceTensor& targets,
                 DeviceTensor& nll) override {
    ProfileScope scope(profiler_, stream_, [] { return std::string("token_nll"); });
    cuda::launch_token_nll(logits.dtype, logits.data, i32(targets), static_cast<float*>(nll.data),
                           logits.numel() / logits.shape.back(), logits.shape.back(), stream_);
    EAQ_CUDA_CHECK_LAUNCH();
  }

  bool decoder_step(const DecoderStep& step) override {
    const DType act = traits_.activation;
    if (!fused_decode_enabled() || step.batch != 1 || step.blocks.empty() ||
        step.hidden->dtype != act) {
      return false;
    }
    const CudaLinear* first = float_layer(step.blocks.front().qkv, act);
    if (first == nullptr) return false;
    const std::int64_t e = first->in_features;
    const std::int64_t inner = step.blocks.front().mlp_in->out_features;
    if (!cuda::decode_step_eligible(act, static_cast<int>(e), static_cast<int>(step.heads),
                                    static_cast<int>(inner))) {
      return false;
    }
    std::vector<cuda::DecodeStepLayer> table;
    for (const DecoderBlock& block : step.blocks) {
      const CudaLinear* qkv = float_layer(block.qkv, act);
      const CudaLinear* out = float_layer(block.attn_out, act);
      const CudaLinear* in = float_layer(block.mlp_in, act);
      const CudaLinear* down = float_layer(block.mlp_out, act);
      if (!qkv || !out || !in || !down || qkv->in_features != e || qkv->out_features != 3 * e ||
          out->in_features != e || out->out_features != e || in->in_features != e ||
          in->out_features != inner || down->in_features != inner || down->out_features != e) {
        return false;
      }
      cuda::DecodeStepLayer l{};
      l.ln_1_weight = static_cast<const float*>(block.ln_1_weight->data);
      l.ln_1_bias = static_cast<const float*>(block.ln_1_bias->data);
      l.ln_2_weight = static_cast<const float*>(block.ln_2_weight->data);
      l.ln_2_bias = static_cast<const float*>(block.ln_2_bias->data);
      l.qkv_weight = qkv->weight.data;
      l.qkv_bias = qkv->bias.data;
      l.attn_out_weight = out->weight.data;
      l.attn_out_bias = out->bias.data;
      l.mlp_in_weight = in->weight.data;
      l.mlp_in_bias = in->bias.data;
      l.mlp_out_weight = down->weight.data;
      l.mlp_out_bias = down->bias.data;
      l.kv_cache = block.kv_cache;
      l.attention_scale = block.attention_scale;
      table.push_back(l);
    }
    const CudaLinear* head = float_layer(step.lm_head, act);
    if (head == nullptr || head->in_features != e) return false;
    const cuda::DecodeStepLayer* layers = decode_step_table(table);
    const std::int64_t partial_floats =
        cuda::decode_step_partial_floats(static_cast<int>(step.heads));
    if (layers == nullptr || !ensure_grid_barrier() || !ensure_decode_partials(partial_floats))
      return false;

    cuda::DecodeStepArgs a;
    a.layers = layers;
    a.layer_count = static_cast<int>(table.size());
    a.word_table = step.word_table->data;
    a.position_table = step.position_table->data;
    a.ln_f_weight = static_cast<const float*>(step.ln_f_weight->data);
    a.ln_f_bias = static_cast<const float*>(step.ln_f_bias->data);
    a.lm_head_weight = head->weight.data;
    a.lm_head_bias = head->bias.data;
    a.ids = i32(*step.ids);
    a.slot = i32(*step.slot);
    a.positions = i32(*step.positions);
    a.key_mask = i32(*step.key_mask);
    a.tokens = i32(*step.tokens);
    a.hidden = step.hidden->data;
    a.query = step.qkv->data;
    a.partials = decode_partials_;
    a.ffn = step.ffn->data;
    a.logits = step.logits->data;
    a.barrier = grid_barrier_;
    a.timeline = decode_timeline();
    a.hidden_size = static_cast<int>(e);
    a.heads = static_cast<int>(step.heads);
    a.inner = static_cast<int>(inner);
    a.vocab = static_cast<int>(head->out_features);
    a.capacity = static_cast<int>(step.capacity);
    a.layer_norm_eps = step.layer_norm_eps;
    a.activation = step.activation;
    ProfileScope scope(profiler_, stream_, [&] {
      return fmt::format("decode step (one kernel, {} layers, E {})", table.size(), e);
    });
    if (step.gate) cuda::launch_step_gate(static_cast<int*>(step.gate->device_word()), stream_);
    cuda::launch_decode_step(act, a, stream_);
    EAQ_CUDA_CHECK_LAUNCH();
    return true;
  }

  std::unique_ptr<CapturedGraph> capture(const std::function<void()>& body) override {
    if (profiler_.enabled()) return std::make_unique<ReplayGraph>(body);
    EAQ_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      body();
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream_, &broken);
      if (broken) cudaGraphDestroy(broken);
      throw;
    }
    cudaGraph_t graph = nullptr;
    EAQ_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    EAQ_CUDA_CHECK(status);
    return std::make_unique<CudaGraph>(exec, stream_);
  }
  std::unique_ptr<StepGate> make_step_gate() override {
    // The profiler replays a step op by op with its own events around each: nothing to gate.
    // EAQ_STEP_GATE=0: none, so a synced loop launches each step after its sync (to measure what
    // the gate buys).
    if (profiler_.enabled() || cuda::env_is("EAQ_STEP_GATE", "0")) return nullptr;
    return std::make_unique<cuda::CudaStepGate>(device_, stream_);
  }

 private:
  // A growable buffer for converted GEMM inputs (grown only outside graph capture: the first
  // forward of a shape runs before its capture).
  void ensure_scratch(std::size_t bytes) {
    if (bytes <= scratch_bytes_) return;
    if (scratch_) allocator_.release(scratch_);
    scratch_ = allocator_.allocate(bytes);
    scratch_bytes_ = bytes;
  }

  // The unquantized layer behind `weights` when eaq's own kernels (GEMV, split-K GEMM, the fused
  // decode step) can run it on `act` inputs, else null (quantized, tf32, autocast).
  static const CudaLinear* float_layer(const LinearWeights* weights, DType act) {
    if (weights == nullptr || cuda::QuantizedLinears::as_quantized(*weights)) return nullptr;
    const auto* w = static_cast<const CudaLinear*>(weights);
    return w->gemv_allowed && w->input_dtype == act && w->output_dtype == act ? w : nullptr;
  }

  // The fused decode step's layer table in device memory: uploaded once per distinct table (a
  // model and a session's caches), outside graph capture; null when it would have to be uploaded
  // during a capture.
  const cuda::DecodeStepLayer* decode_step_table(const std::vector<cuda::DecodeStepLayer>& table) {
    const auto fields = [](const cuda::DecodeStepLayer& l) {
      return std::tie(l.ln_1_weight, l.ln_1_bias, l.ln_2_weight, l.ln_2_bias, l.qkv_weight,
                      l.qkv_bias, l.attn_out_weight, l.attn_out_bias, l.mlp_in_weight,
                      l.mlp_in_bias, l.mlp_out_weight, l.mlp_out_bias, l.kv_cache,
                      l.attention_scale);
    };
    for (const auto& [host, device] : decode_tables_) {
      if (std::equal(host.begin(), host.end(), table.begin(), table.end(),
                     [&](const auto& x, const auto& y) { return fields(x) == fields(y); }))
        return device;
    }
    const std::size_t bytes = table.size() * sizeof(cuda::DecodeStepLayer);
    if (capturing()) return nullptr;
    auto* device = static_cast<cuda::DecodeStepLayer*>(allocator_.allocate(bytes));
    EAQ_CUDA_CHECK(cudaMemcpyAsync(device, table.data(), bytes, cudaMemcpyHostToDevice, stream_));
    EAQ_CUDA_CHECK(cudaStreamSynchronize(stream_));  // `table` is the caller's
    decode_tables_.emplace_back(table, device);
    return device;
  }

  // The fused decode step's attention partials (grown outside capture only).
  bool ensure_decode_partials(std::int64_t floats) {
    if (floats <= decode_partial_floats_) return true;
    if (capturing()) return false;
    EAQ_CUDA_CHECK(cudaStreamSynchronize(stream_));  // a step in flight may use the old buffer
    if (decode_partials_) allocator_.release(decode_partials_);
    decode_partials_ =
        static_cast<float*>(allocator_.allocate(static_cast<std::size_t>(floats) * sizeof(float)));
    decode_partial_floats_ = floats;
    return true;
  }

  // EAQ_DECODE_TIMELINE=1: where the fused decode step spends its time, printed at destruction.
  unsigned long long* decode_timeline() {
    static const bool wanted = cuda::env_is("EAQ_DECODE_TIMELINE", "1");
    if (!wanted || (timeline_ == nullptr && capturing())) return timeline_;
    if (timeline_ == nullptr) timeline_ = zeroed_timeline(cuda::kDecodeTimelineSlots);
    return timeline_;
  }

  // EAQ_QKV_TIMELINE=1: where the batch-1 QKV + attention kernel spends its time (head 0's block
  // 0), printed at destruction. Read at every launch, so a test can compare the bits.
  unsigned long long* qkv_timeline() {
    if (!cuda::env_is("EAQ_QKV_TIMELINE", "1")) return nullptr;
    if (qkv_timeline_ == nullptr && !capturing()) {
      qkv_timeline_ = zeroed_timeline(cuda::kQkvTimelineSlots);
    }
    return qkv_timeline_;
  }

  // A device table of `slots` cycle sums, zeroed (a timeline's last slot counts launches).
  unsigned long long* zeroed_timeline(int slots) {
    const std::size_t bytes = static_cast<std::size_t>(slots) * sizeof(unsigned long long);
    auto* table = static_cast<unsigned long long*>(allocator_.allocate(bytes));
    EAQ_CUDA_CHECK(cudaMemsetAsync(table, 0, bytes, stream_));
    return table;
  }

  // A timeline's mean cycles per launch, phase by phase and in total, on stderr. `variable` turns
  // it on, `what` says whose clock it is, `unit` and `units` name one launch and several.
  void print_timeline(const unsigned long long* table, int slots, const char* (*phase_name)(int),
                      const char* variable, const char* what, const char* unit, const char* units) {
    if (table == nullptr) return;
    std::vector<unsigned long long> sums(static_cast<std::size_t>(slots));
    if (cudaMemcpy(sums.data(), table, sums.size() * sizeof(unsigned long long),
                   cudaMemcpyDeviceToHost) != cudaSuccess) {
      return;
    }
    const unsigned long long launches = sums.back();
    if (launches == 0) return;
    int khz = 0;
    cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device_);
    const auto us = [&](double cycles) { return khz > 0 ? cycles / khz * 1000.0 : 0.0; };
    std::fprintf(stderr, "\n%s: %s, mean per %s over %llu %s (us at the %d MHz maximum clock)\n",
                 variable, what, unit, launches, units, khz / 1000);
    double total = 0.0;
    for (int i = 0; i + 1 < slots; ++i) {
      const double cycles =
          static_cast<double>(sums[static_cast<std::size_t>(i)]) / static_cast<double>(launches);
      total += cycles;
      std::fprintf(stderr, "  %-32s %10.0f cycles %8.2f us\n", phase_name(i), cycles, us(cycles));
    }
    std::fprintf(stderr, "  %-32s %10.0f cycles %8.2f us\n", "total", total, us(total));
  }

  // The grid barrier's state, zeroed once (outside capture); every launch leaves it consistent.
  bool ensure_grid_barrier() {
    if (grid_barrier_ != nullptr) return true;
    if (capturing()) return false;
    grid_barrier_ =
        static_cast<cuda::GridBarrierState*>(allocator_.allocate(sizeof(cuda::GridBarrierState)));
    EAQ_CUDA_CHECK(cudaMemsetAsync(grid_barrier_, 0, sizeof(cuda::GridBarrierState), stream_));
    return true;
  }

  // Partial results and arrival counters for kernels that split a row over blocks (decode
  // attention, argmax). Grown outside capture only; a kernel that finds it too small splits less.
  void ensure_split_scratch(const cuda::SplitNeed& need) {
    if (need.partial_floats <= split_.partial_floats && need.counters <= split_.counter_count)
      return;
    if (capturing()) return;
    EAQ_CUDA_CHECK(cudaStreamSynchronize(stream_));  // kernels in flight may use the old buffers
    if (split_.partials) allocator_.release(split_.partials);
    if (split_.counters) allocator_.release(split_.counters);
    split_.partial_floats = std::max(need.partial_floats, split_.partial_floats);
    split_.counter_count = std::max(need.counters, split_.counter_count);
    split_.partials = static_cast<float*>(
        allocator_.allocate(static_cast<std::size_t>(split_.partial_floats) * sizeof(float)));
    split_.counters = static_cast<unsigned*>(
        allocator_.allocate(static_cast<std::size_t>(split_.counter_count) * sizeof(unsigned)));
    // The kernels leave every counter at zero when they finish.
    EAQ_CUDA_CHECK(cudaMemsetAsync(
        split_.counters, 0, static_cast<std::size_t>(split_.counter_count) * sizeof(unsigned),
        stream_));
  }

  Precision precision_;
  int device_;
  cudaDeviceProp props_;
  PrecisionTraits traits_{};
  cuda::DeviceAllocator allocator_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  cuda::LtTuning lt_tuning_;  // the cuBLASLt algorithm chosen for each GEMM configuration
  void* workspace_ = nullptr;
  cuda::OpProfiler profiler_;
  void* scratch_ = nullptr;
  std::size_t scratch_bytes_ = 0;
  cuda::SplitScratch split_;
  std::unique_ptr<cuda::QuantizedLinears> quantized_;  // int8, int8-static, int8-wo, fp8
  std::vector<std::pair<std::vector<cuda::DecodeStepLayer>, cuda::DecodeStepLayer*>> decode_tables_;
  cuda::GridBarrierState* grid_barrier_ = nullptr;
  float* decode_partials_ = nullptr;
  std::int64_t decode_partial_floats_ = 0;
  unsigned long long* timeline_ = nullptr;
  unsigned long long* qkv_timeline_ = nullptr;
  // The row the last layer_norm_linear_attention with a pending residual finished into: the
  // attention projection that takes it as its residual launches the next kernel early.
  const void* pending_finished_row_ = nullptr;
};

}  // namespace

bool cuda_supports(Precision precision, int gpu_id, std::string* why_not) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || gpu_id < 0 || gpu_id >= count) {
    (void)cudaGetLastError();
    *why_not = "no such CUDA device";
    return false;
  }
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, gpu_id) != cudaSuccess) {
    *why_not = "cannot read the device properties";
    return false;
  }
  const int cc = props.major * 10 + props.minor;
  if (precision == Precision::Bf16 && cc < 80) {
    *why_not = "bf16 needs compute capability 8.0";
    return false;
  }
  if (precision == Precision::Fp8 && cc < 89) {
    *why_not = "fp8 needs compute capability 8.9";
    return false;
  }
  return true;
}

std::unique_ptr<Backend> make_cuda_backend(Precision precision, int gpu_id) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  EAQ_CHECK(status == cudaSuccess && count > 0,
            "--device cuda: no usable CUDA device ({}); is a GPU present and its driver loaded? "
            "Use --device cpu otherwise",
            status == cudaSuccess ? "the driver reports 0 devices" : cudaGetErrorString(status));
  EAQ_CHECK(gpu_id >= 0 && gpu_id < count,
            "--gpu-id {}: out of range; this machine has {} CUDA "
            "device{} (0..{})",
            gpu_id, count, count == 1 ? "" : "s", count - 1);
  cudaDeviceProp props{};
  EAQ_CUDA_CHECK(cudaGetDeviceProperties(&props, gpu_id));
  const int cc = props.major * 10 + props.minor;
  EAQ_CHECK(precision != Precision::Bf16 || cc >= 80,
            "--precision bf16 needs compute capability 8.0 or newer; GPU {} ({}) is {}.{}", gpu_id,
            props.name, props.major, props.minor);
  EAQ_CHECK(precision != Precision::Fp8 || cc >= 89,
            "--precision fp8 needs compute capability 8.9 or newer (Ada, Hopper); GPU {} ({}) is "
            "{}.{}",
            gpu_id, props.name, props.major, props.minor);
  return std::make_unique<CudaBackend>(precision, gpu_id, props);
}

}  // namespace eaq
