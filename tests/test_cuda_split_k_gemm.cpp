// eaq's split-K GEMM (split_k_gemm.cu) against the CPU reference's Linear ops, launched directly
// split as planned and with max_splits 1 (one block per tile), for GPT-2's prefill shapes and
// awkward ones: n odd or not a multiple of 8 (the epilogue that reads bias and residual from
// global memory), k not a multiple of the 64-wide k-tile, m not a multiple of the 64-row tile.
// A split result must also be bitwise the same on a second launch: the partial tiles are added in
// split order whatever the timing.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_backend.hpp"
#include "cuda_test_util.hpp"
#include "golden.hpp"
#include "test_util.hpp"

#ifdef EAQ_HAVE_CUDA
#include <cuda_runtime.h>

#include "backend/cuda/kernels.hpp"
#endif

namespace eaq {
namespace {

#ifdef EAQ_HAVE_CUDA

struct GemmCase {
  std::int64_t m, n, k;
  Activation activation;
};

const GemmCase kCases[] = {
    {128, 2304, 768, Activation::None},      // GPT-2 124M c_attn at a 128-token prompt
    {128, 768, 3072, Activation::None},      // mlp c_proj: few tiles, long K, many splits
    {128, 3072, 768, Activation::GeluTanh},  // c_fc
    {37, 99, 136, Activation::Relu},         // odd n, k past the last full k-tile
    {200, 130, 72, Activation::None},        // m past the last full row tile, n % 8 != 0
    {32, 2304, 768, Activation::None},       // a batch-32 decode step's c_attn
    {9, 64, 64, Activation::GeluTanh},       // one k-tile: nothing to split
};

void launch(DType act, const cuda::SplitKGemmArgs& args) {
  cuda::launch_split_k_gemm(act, args, nullptr);  // legacy stream: synchronized below
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

bool bitwise_equal(const HostTensor& a, const HostTensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(CudaSplitKGemm, MatchesTheCpuLinearSplitOrNot) {
  for (Precision precision : {Precision::Fp16, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto cpu = make_cpu_backend(Precision::Fp32);
    const DType act = gpu->activation_dtype();
    // f16/bf16 outputs against f32 on the CPU: one rounding of the output, plus the inputs'.
    const double tolerance = act == DType::F16 ? 5e-3 : 3e-2;
    for (const GemmCase& c : kCases) {
      const float w_scale = 1.0f / std::sqrt(static_cast<float>(c.k));
      const HostTensor w = test::rounded_to(test::random_f32({c.n, c.k}, 41, w_scale), act);
      const HostTensor bias = test::rounded_to(test::random_f32({c.n}, 42, 0.5f), act);
      const HostTensor x = test::rounded_to(test::random_f32({c.m, c.k}, 43, 2.0f), act);
      const HostTensor residual = test::rounded_to(test::random_f32({c.m, c.n}, 44, 2.0f), act);

      // The reference: the CPU backend's linear (with the activation) and linear_residual.
      LinearOptions options;
      options.name = "test.split_k";
      const auto cpu_layer = cpu->prepare_linear(w, &bias, options);
      DeviceTensor cx = cpu->upload(x, DType::F32), cy = cpu->allocate(DType::F32, {c.m, c.n});
      cpu->linear(cx, *cpu_layer, c.activation, cy);
      const HostTensor want_activation = cpu->download(cy);
      DeviceTensor cacc = cpu->upload(residual, DType::F32);
      cpu->linear_residual(cx, *cpu_layer, cacc, cy, cacc);
      const HostTensor want_residual = cpu->download(cacc);

      DeviceTensor dx = gpu->upload(x, act), dw = gpu->upload(w, act), db = gpu->upload(bias, act);
      DeviceTensor dy = gpu->allocate(act, {c.m, c.n});
      ASSERT_TRUE(cuda::split_k_gemm_eligible(act, c.k, dx.data, dw.data));
      cuda::SplitKGemmArgs args;
      args.x = dx.data;
      args.w = dw.data;
      args.bias = db.data;
      args.y = dy.data;
      args.m = c.m;
      args.n = c.n;
      args.k = c.k;
      const int splits = cuda::split_k_gemm_splits(args);
      cuda::SplitKGemmArgs unsplit = args;
      unsplit.max_splits = 1;
      EXPECT_EQ(cuda::split_k_gemm_splits(unsplit), 1);
      if (c.m == 128 && c.n == 768 && gpu->name().find("sm_9") != std::string::npos) {
        EXPECT_GT(splits, 1) << "24 output tiles should split K on a Hopper GPU";
      }

      for (const int max_splits : {8, 1}) {
        const char* how = max_splits == 1 ? "one block per tile" : "as planned";
        args.max_splits = max_splits;
        args.activation = c.activation;
        args.residual = nullptr;
        launch(act, args);
        const HostTensor got_activation = gpu->download(dy);
        // The residual variant in place, as GPT-2's blocks call it: y holds the residual.
        DeviceTensor dacc = gpu->upload(residual, act);
        args.activation = Activation::None;
        args.residual = dacc.data;
        args.y = dacc.data;
        launch(act, args);
        const HostTensor got_residual = gpu->download(dacc);
        args.y = dy.data;
        gpu->release(dacc);

        const double e_act = test::max_relative_error(got_activation, want_activation);
        const double e_res = test::max_relative_error(got_residual, want_residual);
        EXPECT_LE(e_act, tolerance) << how << ", " << precision_name(precision) << " m " << c.m
                                    << " n " << c.n << " k " << c.k;
        EXPECT_LE(e_res, tolerance) << how << " (+residual), " << precision_name(precision) << " m "
                                    << c.m << " n " << c.n << " k " << c.k;
        std::printf(
            "[ split-k   ] %-5s m %3lld n %4lld k %4lld %-18s splits %d  act %.1e  res %.1e\n",
            std::string(precision_name(precision)).c_str(), static_cast<long long>(c.m),
            static_cast<long long>(c.n), static_cast<long long>(c.k), how,
            cuda::split_k_gemm_splits(args), e_act, e_res);
      }

      // Bitwise repeatable with the split.
      if (splits > 1) {
        args.max_splits = 8;
        args.activation = c.activation;
        args.residual = nullptr;
        launch(act, args);
        const HostTensor first = gpu->download(dy);
        launch(act, args);
        EXPECT_TRUE(bitwise_equal(first, gpu->download(dy)))
            << "split result differs between launches, m " << c.m << " n " << c.n;
      }
      for (DeviceTensor* t : {&dx, &dw, &db, &dy}) gpu->release(*t);
      for (DeviceTensor* t : {&cx, &cy, &cacc}) cpu->release(*t);
    }
  }
}

#else

TEST(CudaSplitKGemm, MatchesTheCpuLinearSplitOrNot) {
  GTEST_SKIP() << "built without CUDA";
}

#endif

}  // namespace
}  // namespace eaq
