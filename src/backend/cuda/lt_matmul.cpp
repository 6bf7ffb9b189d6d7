#include "backend/cuda/lt_matmul.hpp"

#include "backend/cuda/cuda_check.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace eaq::cuda {

LtMatmul::LtMatmul(cublasLtHandle_t handle, const LtMatmulSpec& spec, std::size_t workspace_bytes,
                   const std::string& name)
    : handle_(handle), spec_(spec), name_(name), workspace_bytes_(workspace_bytes) {
  EAQ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, spec.compute, spec.scale_type));
  const cublasOperation_t transpose = CUBLAS_OP_T, no_transpose = CUBLAS_OP_N;
  EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                                  sizeof transpose));
  EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &no_transpose,
                                                  sizeof no_transpose));
  EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                  &spec.epilogue, sizeof spec.epilogue));
  if (spec.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                    &spec.bias_type, sizeof spec.bias_type));
  }
  if (spec.outer_vector_scales) {
    const auto mode = static_cast<std::int32_t>(CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F);
    EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode,
                                                    sizeof mode));
    EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode,
                                                    sizeof mode));
  }
  if (spec.a_scale) {
    EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                    &spec.a_scale, sizeof spec.a_scale));
  }
  if (spec.b_scale) {
    EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                    &spec.b_scale, sizeof spec.b_scale));
  }
  const auto rows = [](std::int64_t r) { return static_cast<std::uint64_t>(r); };
  EAQ_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&a_, spec.weight_type, rows(spec.k), rows(spec.n), spec.k));
  EAQ_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&b_, spec.input_type, rows(spec.k), rows(spec.m), spec.k));
  EAQ_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&d_, spec.output_type, rows(spec.n), rows(spec.m), spec.n));

  cublasLtMatmulPreference_t preference = nullptr;
  EAQ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  EAQ_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes_, sizeof workspace_bytes_));
  constexpr int kCandidates = 8;
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      handle_, desc_, a_, b_, d_, d_, preference, kCandidates, results, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  EAQ_CHECK(status == CUBLAS_STATUS_SUCCESS && found > 0,
            "cuBLASLt has no algorithm for {} (M={}, N={}, K={}): {}", name, spec.m, spec.n, spec.k,
            cublasGetStatusString(status));
  for (int i = 0; i < found; ++i) {
    if (results[i].state == CUBLAS_STATUS_SUCCESS) candidates_.push_back(results[i].algo);
  }
  EAQ_CHECK(!candidates_.empty(), "cuBLASLt has no usable algorithm for {}", name);
  algo_ = candidates_.front();
}

void LtMatmul::launch(const cublasLtMatmulAlgo_t& algo, const void* weight, const void* input,
                      void* output, const void* alpha, const void* beta, void* workspace,
                      cudaStream_t stream) const {
  EAQ_CUBLAS_CHECK(cublasLtMatmul(handle_, desc_, alpha, weight, a_, input, b_, beta, output, d_,
                                  output, d_, &algo, workspace, workspace_bytes_, stream));
}

void LtMatmul::tune(const void* weight, const void* input, void* output, const void* alpha,
                    const void* beta, void* workspace, cudaStream_t stream) const {
  tuned_ = true;
  if (candidates_.size() < 2) return;
  cudaEvent_t start = nullptr, stop = nullptr;
  EAQ_CUDA_CHECK(cudaEventCreate(&start));
  EAQ_CUDA_CHECK(cudaEventCreate(&stop));
  float best_ms = 0;
  std::string timings;  // for EAQ_LT_LOG
  std::size_t chosen = 0;
  for (std::size_t c = 0; c < candidates_.size(); ++c) {
    // beta is 0, so timing on the real operands only overwrites the output.
    launch(candidates_[c], weight, input, output, alpha, beta, workspace, stream);  // warm-up
    EAQ_CUDA_CHECK(cudaEventRecord(start, stream));
    constexpr int kReps = 5;
    for (int r = 0; r < kReps; ++r) {
      launch(candidates_[c], weight, input, output, alpha, beta, workspace, stream);
    }
    EAQ_CUDA_CHECK(cudaEventRecord(stop, stream));
    EAQ_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    EAQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    timings += fmt::format(" {:.2f}", 1e3 * ms / kReps);
    if (c == 0 || ms < best_ms) {
      best_ms = ms;
      algo_ = candidates_[c];
      chosen = c;
    }
  }
  // EAQ_LT_LOG=1: which candidate won, and every candidate's us per call (to explain a choice).
  if (const char* log = std::getenv("EAQ_LT_LOG"); log != nullptr && std::strcmp(log, "1") == 0) {
    std::fprintf(stderr, "cuBLASLt %s [%lld x %lld x %lld]: candidate %zu of %zu;%s us\n",
                 name_.c_str(), static_cast<long long>(spec_.m), static_cast<long long>(spec_.n),
                 static_cast<long long>(spec_.k), chosen, candidates_.size(), timings.c_str());
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

void LtMatmul::set_scale_pointers(const float* a_scale, const float* b_scale) const {
  EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                  &a_scale, sizeof a_scale));
  EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                  &b_scale, sizeof b_scale));
}

LtMatmul::~LtMatmul() {
  if (d_) cublasLtMatrixLayoutDestroy(d_);
  if (b_) cublasLtMatrixLayoutDestroy(b_);
  if (a_) cublasLtMatrixLayoutDestroy(a_);
  if (desc_) cublasLtMatmulDescDestroy(desc_);
}

void LtMatmul::tune_on(const void* weight, const void* input, void* scratch_output,
                       const void* bias, void* workspace, cudaStream_t stream) const {
  if (spec_.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                    sizeof bias));
  }
  const float alpha = 1.0f, beta = 0.0f;
  tune(weight, input, scratch_output, &alpha, &beta, workspace, stream);
}

void LtMatmul::run(const void* weight, const void* input, void* output, const void* bias,
                   const void* alpha, const void* beta, void* workspace,
                   cudaStream_t stream) const {
  if (spec_.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    // The bias pointer may differ between calls sharing this configuration.
    EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                    sizeof bias));
  }
  if (!tuned_) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    EAQ_CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
    if (capturing == cudaStreamCaptureStatusNone) {
      tune(weight, input, output, alpha, beta, workspace, stream);
    }
  }
  launch(algo_, weight, input, output, alpha, beta, workspace, stream);
}

}  // namespace eaq::cuda
