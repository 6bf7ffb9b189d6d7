// One cuBLASLt matmul configuration: y[M, N] = epilogue(x[M, K] W^T + bias) with row-major x, y
// and W [N, K]. In cuBLAS's column-major terms that is D(N x M) = op(A = W, T) * B (= x): the
// "TN" layout that int8 and fp8 kernels require too.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace eaq::cuda {

struct LtMatmulSpec {
  cudaDataType_t weight_type = CUDA_R_32F;  // A
  cudaDataType_t input_type = CUDA_R_32F;   // B
  cudaDataType_t output_type = CUDA_R_32F;  // C and D
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cudaDataType_t scale_type = CUDA_R_32F;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  cudaDataType_t bias_type = CUDA_R_32F;
  std::int64_t m = 0;  // rows of x (tokens)
  std::int64_t n = 0;  // output features
  std::int64_t k = 0;  // input features
  // fp8: per-tensor scale pointers (device f32), applied by cuBLASLt to A and B.
  const float* a_scale = nullptr;
  const float* b_scale = nullptr;
  // fp8: a_scale and b_scale are vectors (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F): one scale
  // per output feature (n) and one per row of x (m).
  bool outer_vector_scales = false;
};

// The algorithm chosen for each configuration (types, epilogue, M x N x K), shared by the layers
// of one backend so that each shape is timed once and every layer runs the same kernel.
using LtTuning = std::map<std::string, cublasLtMatmulAlgo_t>;

class LtMatmul {
 public:
  // Builds descriptors and asks the heuristic for its best algorithms within `workspace_bytes`;
  // `shared` (optional) holds the choices of plans made earlier.
  LtMatmul(cublasLtHandle_t handle, const LtMatmulSpec& spec, std::size_t workspace_bytes,
           const std::string& name, LtTuning* shared = nullptr);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // alpha/beta are of the scale type (f32 except for int32 compute, which uses i32).
  void run(const void* weight, const void* input, void* output, const void* bias, const void* alpha,
           const void* beta, void* workspace, cudaStream_t stream) const;
  // Whether the first run would still time the candidate algorithms (which writes the output
  // many times: wrong when beta is not 0).
  bool needs_tuning() const { return !tuned_; }
  // Times the candidates now, on `scratch_output` with alpha 1 and beta 0 (f32 scales).
  void tune_on(const void* input, void* scratch_output, const void* bias, void* workspace,
               cudaStream_t stream) const;
  // Points the A/B scales elsewhere for the following runs (buffers that moved or differ by call).
  void set_scale_pointers(const float* a_scale, const float* b_scale) const;

 private:
  cublasLtHandle_t handle_;
  LtMatmulSpec spec_;
  std::string name_;
  std::size_t workspace_bytes_;
  LtTuning* shared_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  std::vector<cublasLtMatmulAlgo_t> candidates_;  // the heuristic's choices, best first
  // The first run outside graph capture times the candidates and keeps the fastest (or takes the
  // shared choice for this configuration).
  mutable cublasLtMatmulAlgo_t algo_{};
  mutable bool tuned_ = false;
  void launch(const cublasLtMatmulAlgo_t& algo, const void* weight, const void* input, void* output,
              const void* alpha, const void* beta, void* workspace, cudaStream_t stream) const;
  void tune(const void* input, void* output, const void* alpha, const void* beta, void* workspace,
            cudaStream_t stream) const;
  std::string tuning_key() const;
};

}  // namespace eaq::cuda
