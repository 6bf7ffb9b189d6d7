// eaq's split-K GEMM (split_k_gemm.cu) against the CPU reference's Linear ops, launched directly
// with and without scratch (split K, and one block per tile), for GPT-2's prefill shapes and
// awkward ones: n odd, k not a multiple of the 64-wide k-tile, m not a multiple of the 64-row tile.
// A split result must also be bitwise the same on a second launch: the partial tiles are added in
// split order whichever block arrives last, and the arrival counters are back at zero.
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
    {200, 130, 72, Activation::None},        // m past the last full row tile
    {9, 64, 64, Activation::GeluTanh},       // one k-tile: nothing to split
};

// The kernel's output on device buffers, copied back (f32).
HostTensor download(Backend& gpu, const DeviceTensor& t) {
  return gpu.download(t);
}

struct Scratch {
  DeviceTensor partials, counters;
  cuda::SplitScratch view;
};

Scratch make_scratch(Backend& gpu, const cuda::SplitNeed& need) {
  Scratch s;
  if (need.partial_floats == 0) return s;
  s.partials = gpu.allocate(DType::F32, {need.partial_floats});
  s.counters = gpu.upload(HostTensor::empty(DType::I32, {need.counters}), DType::I32);  // zeros
  s.view.partials = static_cast<float*>(s.partials.data);
  s.view.partial_floats = need.partial_floats;
  s.view.counters = static_cast<unsigned*>(s.counters.data);
  s.view.counter_count = need.counters;
  return s;
}

void launch(DType act, const cuda::SplitKGemmArgs& args, const cuda::SplitScratch& scratch) {
  cuda::launch_split_k_gemm(act, args, scratch, nullptr);  // legacy stream: synchronized below
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
      Scratch full = make_scratch(*gpu, cuda::split_k_gemm_need(c.m, c.n, c.k));
      const cuda::SplitScratch none;
      const int splits = cuda::split_k_gemm_splits(args, full.view);
      EXPECT_EQ(cuda::split_k_gemm_splits(args, none), 1);
      if (c.m == 128 && c.n == 768) {
        EXPECT_GT(splits, 1) << "24 output tiles should split K on any GPU with more SMs";
      }

      const cuda::SplitScratch* scratches[] = {&full.view, &none};
      for (const cuda::SplitScratch* scratch : scratches) {
        const char* how = scratch == &none ? "one block per tile" : "split K";
        args.activation = c.activation;
        args.residual = nullptr;
        launch(act, args, *scratch);
        const HostTensor got_activation = download(*gpu, dy);
        // The residual variant in place, as GPT-2's blocks call it: y holds the residual.
        DeviceTensor dacc = gpu->upload(residual, act);
        args.activation = Activation::None;
        args.residual = dacc.data;
        args.y = dacc.data;
        launch(act, args, *scratch);
        const HostTensor got_residual = download(*gpu, dacc);
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
            scratch == &none ? 1 : splits, e_act, e_res);
      }

      // Bitwise repeatable with the split (and a third launch reuses the counters again).
      if (splits > 1) {
        args.activation = c.activation;
        args.residual = nullptr;
        launch(act, args, full.view);
        const HostTensor first = gpu->download(dy);
        launch(act, args, full.view);
        EXPECT_TRUE(bitwise_equal(first, gpu->download(dy)))
            << "split result differs between launches, m " << c.m << " n " << c.n;
      }
      for (DeviceTensor* t : {&dx, &dw, &db, &dy, &full.partials, &full.counters}) gpu->release(*t);
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
