#include "backend/cuda/lt_matmul.hpp"

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/env_switch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace eaq::cuda {

LtMatmul::LtMatmul(cublasLtHandle_t handle, const LtMatmulSpec& spec, std::size_t workspace_bytes,
                   const std::string& name, LtTuning* shared)
    : handle_(handle),
      spec_(spec),
      name_(name),
      workspace_bytes_(workspace_bytes),
      shared_(shared) {
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
  constexpr int kCandidates = 16;
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

namespace {

std::size_t element_bytes(cudaDataType_t type) {
  switch (type) {
    case CUDA_R_64F:
      return 8;
    case CUDA_R_32F:
    case CUDA_R_32I:
      return 4;
    case CUDA_R_16F:
    case CUDA_R_16BF:
      return 2;
    default:
      return 1;  // int8, fp8
  }
}

}  // namespace

std::string LtMatmul::tuning_key() const {
  return fmt::format("{}:{}:{}:{}:{}:{}:{}:{}x{}x{}:{}", static_cast<int>(spec_.weight_type),
                     static_cast<int>(spec_.input_type), static_cast<int>(spec_.output_type),
                     static_cast<int>(spec_.compute), static_cast<int>(spec_.epilogue),
                     static_cast<int>(spec_.bias_type), spec_.outer_vector_scales ? 1 : 0, spec_.m,
                     spec_.n, spec_.k, workspace_bytes_);
}

// Times each candidate the way a forward runs it: a captured graph of back-to-back calls, each on
// another stretch of a buffer larger than L2 standing in for W (a forward reads every layer's
// weights once, so they come from memory, not L2). Timing single launches instead measures the
// host's launch rate (~13 us a call), not the kernels (4-8 us at a prompt's 128 rows), and picks
// by noise. Layers of one shape share the result through `shared_`.
void LtMatmul::tune(const void* input, void* output, const void* alpha, const void* beta,
                    void* workspace, cudaStream_t stream) const {
  tuned_ = true;
  const std::string key = tuning_key();
  if (shared_ != nullptr) {
    if (const auto found = shared_->find(key); found != shared_->end()) {
      algo_ = found->second;
      return;
    }
  }
  // EAQ_LT_TUNE=0 keeps the heuristic's first choice (to measure what timing buys).
  if (!env_is("EAQ_LT_TUNE", "0") && candidates_.size() >= 2) {
    int device = 0, l2_bytes = 0;
    EAQ_CUDA_CHECK(cudaGetDevice(&device));
    EAQ_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
    const std::size_t w_bytes =
        (static_cast<std::size_t>(spec_.n * spec_.k) * element_bytes(spec_.weight_type) + 255) /
        256 * 256;
    // Enough copies to exceed L2 twice over, within kMaxCalls (small weights stay in L2 in a
    // forward too).
    constexpr std::size_t kMaxCalls = 48;
    const std::size_t copies =
        std::clamp<std::size_t>(2 * static_cast<std::size_t>(l2_bytes) / w_bytes + 1, 2, kMaxCalls);
    char* cold = nullptr;
    EAQ_CUDA_CHECK(cudaMalloc(&cold, copies * w_bytes));
    EAQ_CUDA_CHECK(cudaMemsetAsync(cold, 0, copies * w_bytes, stream));
    cudaEvent_t start = nullptr, stop = nullptr;
    EAQ_CUDA_CHECK(cudaEventCreate(&start));
    EAQ_CUDA_CHECK(cudaEventCreate(&stop));
    const int calls = static_cast<int>(std::max<std::size_t>(copies, 16));  // <= kMaxCalls
    constexpr int kGraphRuns = 3;
    float best_us = 0;
    std::size_t chosen = 0;
    std::string timings;  // for EAQ_LT_LOG
    for (std::size_t c = 0; c < candidates_.size(); ++c) {
      cudaGraph_t graph = nullptr;
      EAQ_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      bool ok = true;
      for (int i = 0; i < calls && ok; ++i) {
        const void* w = cold + static_cast<std::size_t>(i) % copies * w_bytes;
        ok = cublasLtMatmul(handle_, desc_, alpha, w, a_, input, b_, beta, output, d_, output, d_,
                            &candidates_[c], workspace, workspace_bytes_,
                            stream) == CUBLAS_STATUS_SUCCESS;
      }
      EAQ_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
      cudaGraphExec_t exec = nullptr;
      ok = ok && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
      float us = 0;
      if (ok) {
        EAQ_CUDA_CHECK(cudaGraphLaunch(exec, stream));  // warm-up
        EAQ_CUDA_CHECK(cudaEventRecord(start, stream));
        for (int r = 0; r < kGraphRuns; ++r) EAQ_CUDA_CHECK(cudaGraphLaunch(exec, stream));
        EAQ_CUDA_CHECK(cudaEventRecord(stop, stream));
        EAQ_CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        EAQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        us = 1e3f * ms / static_cast<float>(kGraphRuns * calls);
        timings += fmt::format(" {:.2f}", us);
        if (best_us == 0 || us < best_us) {
          best_us = us;
          algo_ = candidates_[c];
          chosen = c;
        }
      } else {
        cudaGetLastError();  // a candidate that cannot run in a graph is skipped
        timings += " -";
      }
      if (exec) cudaGraphExecDestroy(exec);
      if (graph) cudaGraphDestroy(graph);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    EAQ_CUDA_CHECK(cudaFree(cold));
    // EAQ_LT_LOG=1: which candidate won, and every candidate's us per call (to explain a choice).
    if (env_is("EAQ_LT_LOG", "1")) {
      std::fprintf(stderr, "cuBLASLt %s [%lld x %lld x %lld]: candidate %zu of %zu;%s us\n",
                   name_.c_str(), static_cast<long long>(spec_.m), static_cast<long long>(spec_.n),
                   static_cast<long long>(spec_.k), chosen, candidates_.size(), timings.c_str());
    }
  }
  if (shared_ != nullptr) (*shared_)[key] = algo_;
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

void LtMatmul::tune_on(const void* input, void* scratch_output, const void* bias, void* workspace,
                       cudaStream_t stream) const {
  if (spec_.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    EAQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                    sizeof bias));
  }
  const float alpha = 1.0f, beta = 0.0f;
  tune(input, scratch_output, &alpha, &beta, workspace, stream);
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
      tune(input, output, alpha, beta, workspace, stream);
    }
  }
  launch(algo_, weight, input, output, alpha, beta, workspace, stream);
}

}  // namespace eaq::cuda
