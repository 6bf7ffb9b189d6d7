// Quantized Linear layers of the CUDA backend (int8, int8-static, int8-wo, fp8; see
// docs/quantization.md). CudaBackend hands prepare_linear/linear calls for quantized layers, and
// the fused pairs of Backend (layer_norm_linear, feed_forward), to a QuantizedLinears.
//
// GEMM paths (QuantizedLinear::kernel names the one that runs):
//   int8, int8-static  eaq's mma.sync int8 GEMM with the dequantization acc * s_x[m] * s_w[n]
//                      + bias -> activation -> f16 in its epilogue (int8_gemm.cu), after a probe
//                      GEMM checked it against the host; or (EAQ_INT8_GEMM=cublaslt, or a failed
//                      probe) cuBLASLt i8 x i8 -> i32 (TN), then the dequantization kernel
//                      (quantize.cu)
//   fp8                cuBLASLt e4m3 x e4m3 -> f16 with per-token x per-channel "outer vector"
//                      scales and the bias (and ReLU / tanh-GELU) in its epilogue; where cuBLASLt
//                      refuses outer-vector scales (checked once by a small probe GEMM against a
//                      host reference) or N % 16 != 0: e4m3 x e4m3 -> f32, then the
//                      dequantization kernel
//   int8-wo            int8 weights dequantized to f16 by a kernel on every call, then the f16
//                      cuBLASLt GEMM of the fp16 path with its fused bias epilogue
//   all, <= 8 rows     (decode steps) eaq's quantized GEMV (quantized_gemv.cu): one kernel reads
//                      the 8-bit weights once and quantizes x itself (after the LayerNorm, and
//                      adding the residual, of the fused pairs); EAQ_QUANTIZED_GEMV=0 keeps the
//                      GEMM path, to measure what it buys
// Activations are quantized per token (int8, fp8) or with the calibrated scale (int8-static) by
// a kernel, or inside the op producing them: LayerNorm (layer_norm_linear) and the first GEMM's
// dequantization or activation pass (feed_forward).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <set>
#include <string>

#include "backend/backend.hpp"
#include "backend/cuda/device_allocator.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/lt_matmul.hpp"
#include "backend/cuda/quant_kernels.hpp"

namespace eaq::cuda {

enum class QuantizedPath { Int8Mma, Int8Imma, Fp8OuterVector, Fp8Dequantize, Int8WeightOnly };

class QuantizedLinear final : public LinearWeights {
 public:
  ~QuantizedLinear() override;
  QuantizedPath path = QuantizedPath::Int8Imma;
  QuantFormat format = QuantFormat::Int8;
  // The int8/fp8 GEMMs run on K and N padded to multiples of 16 with zeros (cuBLASLt's IMMA and
  // fp8 kernels need 16-byte aligned leading dimensions); results are unchanged.
  std::int64_t k_pad = 0, n_pad = 0;
  DeviceTensor weight;         // I8 / F8_E4M3 [n_pad, k_pad]; int8-wo: I8 [n, k]
  DeviceTensor weight_scales;  // F32 [n_pad], zeros in the padding
  DeviceTensor bias;           // [n]: F32 for the dequantization kernel, the activation dtype for
                               // cuBLASLt epilogues; empty without bias
  float static_input_scale = 0.0f;  // int8-static
  mutable std::map<std::pair<std::int64_t, int>, std::unique_ptr<LtMatmul>> plans;
  mutable std::set<std::pair<std::int64_t, int>> refused_plans;  // fused epilogues cuBLASLt lacks
  DeviceAllocator* allocator = nullptr;                          // releases the buffers above
};

struct QuantizedContext {
  Precision precision = Precision::Int8;
  DType activation = DType::F16;
  cublasLtHandle_t lt = nullptr;
  cudaStream_t stream = nullptr;
  DeviceAllocator* allocator = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

class QuantizedLinears {
 public:
  explicit QuantizedLinears(const QuantizedContext& context);
  ~QuantizedLinears();
  QuantizedLinears(const QuantizedLinears&) = delete;
  QuantizedLinears& operator=(const QuantizedLinears&) = delete;

  std::unique_ptr<LinearWeights> prepare(const HostTensor& weight, const HostTensor* bias,
                                         const LinearOptions& options);
  static const QuantizedLinear* as_quantized(const LinearWeights& weights) {
    return dynamic_cast<const QuantizedLinear*>(&weights);
  }

  void linear(const DeviceTensor& x, const QuantizedLinear& w, Activation activation,
              DeviceTensor& y);
  // The fused pairs of Backend; false when this pair is not fused here (int8-wo, or a layer that
  // is not quantized): the caller then runs Backend's default.
  bool layer_norm_linear(const DeviceTensor& x, const DeviceTensor* residual,
                         const DeviceTensor& gamma, const DeviceTensor& beta, float eps,
                         DeviceTensor& out, const LinearWeights& weights, Activation activation,
                         DeviceTensor& y);
  bool feed_forward(const DeviceTensor& x, const LinearWeights& first, Activation activation,
                    DeviceTensor& mid, const LinearWeights& second, DeviceTensor& y);
  // The 8-bit weights of a QKV layer for launch_qkv_attention (w, w_scales, bias, the weight
  // kind and the static scale) when the quantized GEMV would run it; false otherwise.
  bool qkv_attention_weights(const LinearWeights& weights, QkvAttentionArgs& out) const;
  // y = x W^T + b + residual with the residual in the kernel's epilogue (the GEMV, or eaq's int8
  // GEMM); false when it cannot run here: the caller then runs Backend's default (linear, then
  // add).
  bool linear_residual(const DeviceTensor& x, const LinearWeights& weights,
                       const DeviceTensor& residual, DeviceTensor& y);

 private:
  struct Buffer {
    void* data = nullptr;
    std::size_t bytes = 0;
  };
  void* ensure(Buffer& buffer, std::size_t bytes);
  DeviceTensor upload_bytes(const void* data, std::size_t bytes, DType dtype, Shape shape);
  // The quantized-activation buffers of slot 0/1 sized for `rows` inputs of `w`.
  QuantizeTarget input_target(int slot, const QuantizedLinear& w, std::int64_t rows);
  // y = act(x W^T + b) for x already quantized in `slot`; with `next`, the rows of the result are
  // also quantized into it, and y is then scratch (it may be left unwritten). `residual` (eaq's
  // int8 GEMM only) is added in the epilogue.
  void run_gemm(int slot, std::int64_t rows, const QuantizedLinear& w, Activation activation,
                void* y, const QuantizeTarget* next, const void* residual = nullptr);
  void run_weight_only(const DeviceTensor& x, const QuantizedLinear& w, Activation activation,
                       DeviceTensor& y);
  // The GEMV's arguments for y = act(x W^T + b) when it can run this call (a few rows, K a
  // multiple of 16, EAQ_QUANTIZED_GEMV not 0); false otherwise.
  bool gemv_args(const DeviceTensor& x, const QuantizedLinear& w, Activation activation,
                 DeviceTensor& y, QuantizedGemvArgs& out) const;
  void run_gemv(const QuantizedGemvArgs& args);
  const LtMatmul& plan(const QuantizedLinear& w, std::int64_t rows, cublasLtEpilogue_t epilogue,
                       int slot);
  // Whether cuBLASLt computes e4m3 GEMMs with outer-vector scales correctly here (run once).
  bool fp8_outer_vector_works();
  // Whether eaq's int8 GEMM kernel computes a probe GEMM correctly here (run once).
  bool own_int8_gemm_works();
  QuantizedPath int8_path();

  QuantizedContext context_;
  Buffer values_[2], scales_[2], accumulators_, dequantized_weights_;
  int fp8_outer_vector_ = -1;  // -1 not probed yet, 0 no, 1 yes
  std::string fp8_probe_note_;
  int own_int8_gemm_ = -1;  // -1 not probed yet, 0 no, 1 yes
  std::string int8_note_;
};

}  // namespace eaq::cuda
