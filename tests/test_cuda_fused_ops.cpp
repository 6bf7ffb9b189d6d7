// The CUDA backend's fused decode ops against the CPU reference's unfused ones: LayerNorm inside
// the GEMV (layer_norm_linear), the residual in the GEMV or cuBLASLt epilogue (linear_residual,
// output aliasing the residual as GPT-2 uses it), and the split argmax over a vocabulary row.
// Inputs are rounded to the GPU dtype first so only the kernels' own error is measured.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "backend/cpu/cpu_backend.hpp"
#include "cuda_test_util.hpp"
#include "golden.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

double tolerance_for(DType act) {
  // f16/bf16: the GPU rounds the normalized rows and the outputs to the dtype; the CPU does not.
  return act == DType::F32 ? 1e-4 : act == DType::F16 ? 1e-2 : 5e-2;
}

struct LinearShape {
  std::int64_t m, n, k;
};

// m <= 8 runs eaq's GEMV (one row with k <= 1536 f16 / 768 f32: x in registers; otherwise x in
// shared memory); m = 40 runs cuBLASLt (the residual as its C operand).
const LinearShape kShapes[] = {{1, 2304, 768}, {1, 768, 3072}, {1, 96, 1536},  {3, 768, 3072},
                               {5, 200, 64},   {8, 96, 128},   {1, 5000, 768}, {40, 256, 128}};

struct Outputs {
  HostTensor y, normed;
};

// What one backend computes for the three fused calls on the same host inputs.
struct FusedResults {
  Outputs ln_linear, ln_residual_linear;
  HostTensor linear_residual;
};

FusedResults run_fused(Backend& backend, const LinearShape& s, const HostTensor& w,
                       const HostTensor& bias, const HostTensor& x, const HostTensor& ln_residual,
                       const HostTensor& gamma, const HostTensor& beta,
                       const HostTensor& residual) {
  const DType act = backend.activation_dtype();
  LinearOptions options;
  options.name = "test.fused";
  const std::unique_ptr<LinearWeights> layer = backend.prepare_linear(w, &bias, options);
  // A second layer [k, n]: linear_residual reads the n-wide output of the first shape back to k.
  DeviceTensor dx = backend.upload(x, act), dres = backend.upload(ln_residual, act);
  DeviceTensor dgamma = backend.upload(gamma, DType::F32), dbeta = backend.upload(beta, DType::F32);
  DeviceTensor normed = backend.allocate(act, {s.m, s.k});
  DeviceTensor y = backend.allocate(act, {s.m, s.n});
  FusedResults r;
  backend.layer_norm_linear(dx, nullptr, dgamma, dbeta, 1e-5f, normed, *layer, Activation::GeluTanh,
                            y);
  r.ln_linear = {backend.download(y), backend.download(normed)};
  backend.layer_norm_linear(dx, &dres, dgamma, dbeta, 1e-5f, normed, *layer, Activation::None, y);
  r.ln_residual_linear = {backend.download(y), backend.download(normed)};
  DeviceTensor acc = backend.upload(residual, act);  // [m, n]: y = x W^T + b + acc, into acc
  DeviceTensor scratch = backend.allocate(act, {s.m, s.n});
  backend.linear_residual(dx, *layer, acc, scratch, acc);
  r.linear_residual = backend.download(acc);
  for (DeviceTensor* t : {&dx, &dres, &dgamma, &dbeta, &normed, &y, &acc, &scratch}) {
    backend.release(*t);
  }
  return r;
}

TEST(CudaFusedOps, LayerNormGemvAndResidualEpilogueMatchTheUnfusedCpuOps) {
  for (Precision precision : {Precision::Fp32, Precision::Fp16, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto cpu = make_cpu_backend(Precision::Fp32);
    const DType act = gpu->activation_dtype();
    for (const LinearShape& s : kShapes) {
      const float w_scale = 1.0f / std::sqrt(static_cast<float>(s.k));
      const HostTensor w = test::rounded_to(test::random_f32({s.n, s.k}, 21, w_scale), act);
      const HostTensor bias = test::rounded_to(test::random_f32({s.n}, 22, 0.5f), act);
      const HostTensor x = test::rounded_to(test::random_f32({s.m, s.k}, 23, 3.0f), act);
      const HostTensor ln_residual = test::rounded_to(test::random_f32({s.m, s.k}, 24, 1.0f), act);
      const HostTensor gamma = test::random_f32({s.k}, 25, 1.0f);
      const HostTensor beta = test::random_f32({s.k}, 26, 0.2f);
      const HostTensor residual = test::rounded_to(test::random_f32({s.m, s.n}, 27, 2.0f), act);
      const FusedResults want = run_fused(*cpu, s, w, bias, x, ln_residual, gamma, beta, residual);
      const FusedResults got = run_fused(*gpu, s, w, bias, x, ln_residual, gamma, beta, residual);
      const double errors[] = {
          test::max_relative_error(got.ln_linear.y, want.ln_linear.y),
          test::max_relative_error(got.ln_linear.normed, want.ln_linear.normed),
          test::max_relative_error(got.ln_residual_linear.y, want.ln_residual_linear.y),
          test::max_relative_error(got.ln_residual_linear.normed, want.ln_residual_linear.normed),
          test::max_relative_error(got.linear_residual, want.linear_residual)};
      const char* what[] = {"layer_norm_linear y", "layer_norm_linear normed",
                            "layer_norm(x + r)_linear y", "layer_norm(x + r)_linear normed",
                            "linear_residual (y aliases residual)"};
      for (int i = 0; i < 5; ++i) {
        EXPECT_LE(errors[i], tolerance_for(act)) << what[i] << ", " << precision_name(precision)
                                                 << " m " << s.m << " n " << s.n << " k " << s.k;
      }
      std::printf(
          "[ fused     ] %-5s m %2lld n %5lld k %4lld  ln+gemv %.1e/%.1e  "
          "ln(x+r)+gemv %.1e/%.1e  +residual %.1e\n",
          std::string(precision_name(precision)).c_str(), static_cast<long long>(s.m),
          static_cast<long long>(s.n), static_cast<long long>(s.k), errors[0], errors[1], errors[2],
          errors[3], errors[4]);
    }
  }
}

// A vocabulary row split over blocks: the first of tied maxima wins across chunks, a maximum in
// the last column, and a second call on other data (the arrival counters went back to zero).
TEST(CudaFusedOps, SplitArgmaxOverAVocabularyMatchesTheCpu) {
  for (Precision precision : {Precision::Fp16, Precision::Fp32}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto cpu = make_cpu_backend(Precision::Fp32);
    const DType act = gpu->activation_dtype();
    const std::int64_t rows = 4, cols = 50257;
    for (unsigned seed : {31u, 32u}) {
      HostTensor logits = test::rounded_to(test::random_f32({rows, cols}, seed, 4.0f), act);
      float* v = logits.mutable_data<float>();
      v[0 * cols + 40000] = v[0 * cols + 100] = 9.0f;  // tie in different chunks: 100 wins
      v[1 * cols + cols - 1] = 9.0f;                   // the last column
      v[2 * cols + 4096 * (seed - 30)] = 9.0f;         // a chunk boundary
      DeviceTensor d_cpu = cpu->upload(logits, DType::F32);
      DeviceTensor d_gpu = gpu->upload(logits, act);
      DeviceTensor out_cpu = cpu->allocate(DType::I32, {rows});
      DeviceTensor out_gpu =
          gpu->upload(HostTensor::from_i32({rows}, {-7, -7, -7, -7}), DType::I32);
      cpu->argmax_rows(d_cpu, out_cpu);
      gpu->argmax_rows(d_gpu, out_gpu);
      const HostTensor want = cpu->download(out_cpu), got = gpu->download(out_gpu);
      for (std::int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(got.data<std::int32_t>()[r], want.data<std::int32_t>()[r])
            << "row " << r << ", seed " << seed << ", " << precision_name(precision);
      }
      EXPECT_EQ(want.data<std::int32_t>()[0], 100);
      for (DeviceTensor* t : {&d_cpu, &out_cpu}) cpu->release(*t);
      for (DeviceTensor* t : {&d_gpu, &out_gpu}) gpu->release(*t);
    }
  }
}

}  // namespace
}  // namespace eaq
