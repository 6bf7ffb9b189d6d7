// The CUDA backend's quantized precisions (int8, int8-static, int8-wo, fp8), each step against
// the CPU reference: quantization kernels bit for bit, quantized Linear layers against the host
// quantization math, fused pairs against the unfused ops, whole models against fp32 (tolerances
// and argmax agreement). Skips without a GPU; every check prints what it measured with a
// `[ quant     ]` prefix.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "core/error.hpp"
#include "cuda_test_util.hpp"
#include "golden.hpp"
#include "io/dataset.hpp"
#include "model/encoder.hpp"
#include "quant/activation_quant.hpp"
#include "quant/calibrate.hpp"
#include "quant/scheme.hpp"
#include "quant/weight_quant.hpp"
#include "random_models.hpp"
#include "test_util.hpp"

#ifdef EAQ_HAVE_CUDA
#include <cuda_runtime.h>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/quant_kernels.hpp"
#endif

namespace eaq {
namespace {

const std::vector<Precision> kQuantized = {Precision::Int8, Precision::Int8Static,
                                           Precision::Int8WeightOnly, Precision::Fp8};

// x rounded to f16, as the CUDA backend holds activations for the quantized precisions.
HostTensor round_f16(const HostTensor& x) {
  HostTensor out = x.to_f32();
  for (std::int64_t i = 0; i < out.numel(); ++i) {
    out.mutable_data<float>()[i] = f16_bits_to_f32(f32_to_f16_bits(out.data<float>()[i]));
  }
  return out;
}

float gelu(float v) {
  return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
}

// y = gelu(x W^T + b) the way `precision` defines it, computed on the host from the host
// quantization functions (x already rounded to f16).
HostTensor reference_linear(Precision precision, const HostTensor& x, const HostTensor& w,
                            const HostTensor& b, float static_scale) {
  const std::int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  HostTensor y = HostTensor::empty(DType::F32, {m, n});
  std::vector<float> xq(static_cast<std::size_t>(m * k)), sx(static_cast<std::size_t>(m), 1.0f);
  std::vector<float> wq(static_cast<std::size_t>(n * k)), sw(static_cast<std::size_t>(n), 1.0f);
  if (precision == Precision::Fp8) {
    const quant::QuantizedRows qx = quant::quantize_activations_e4m3(x);
    const quant::QuantizedRows qw = quant::quantize_weights_e4m3(w, "w");
    const HostTensor fx = qx.values.to_f32(), fw = qw.values.to_f32();
    std::copy(fx.data<float>(), fx.data<float>() + m * k, xq.begin());
    std::copy(fw.data<float>(), fw.data<float>() + n * k, wq.begin());
    sx = qx.scales;
    sw = qw.scales;
  } else {
    const quant::QuantizedRows qw = quant::quantize_weights_int8(w, "w");
    for (std::int64_t i = 0; i < n * k; ++i) wq[i] = qw.values.data<std::int8_t>()[i];
    sw = qw.scales;
    if (precision == Precision::Int8WeightOnly) {
      for (std::int64_t i = 0; i < n * k; ++i) wq[i] *= sw[i / k];
      std::fill(sw.begin(), sw.end(), 1.0f);
      std::copy(x.data<float>(), x.data<float>() + m * k, xq.begin());
    } else if (precision == Precision::Int8Static) {
      std::vector<std::int8_t> q(xq.size());
      quant::quantize_int8_static(x.data<float>(), m * k, static_scale, q.data());
      for (std::size_t i = 0; i < q.size(); ++i) xq[i] = q[i];
      std::fill(sx.begin(), sx.end(), static_scale);
    } else {
      const quant::QuantizedRows qx = quant::quantize_activations_int8(x);
      for (std::int64_t i = 0; i < m * k; ++i) xq[i] = qx.values.data<std::int8_t>()[i];
      sx = qx.scales;
    }
  }
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (std::int64_t c = 0; c < k; ++c)
        acc += static_cast<double>(xq[i * k + c]) * wq[j * k + c];
      y.mutable_data<float>()[i * n + j] =
          gelu(static_cast<float>(acc) * (sx[i] * sw[j]) + b.data<float>()[j]);
    }
  }
  return y;
}

// One Linear of each quantized precision against the host reference, on shapes that exercise
// the padded (K, N not multiples of 16) and the direct paths.

TEST(CudaQuantLinear, EachPrecisionMatchesTheHostReference) {
  struct Shape3 {
    std::int64_t m, k, n;
  };
  struct Variant {
    Precision precision;
    const char* int8_gemm;  // EAQ_INT8_GEMM, null = the default
  };
  const std::vector<Variant> variants = {
      {Precision::Int8, nullptr},           {Precision::Int8, "cublaslt"},
      {Precision::Int8Static, nullptr},     {Precision::Int8Static, "cublaslt"},
      {Precision::Int8WeightOnly, nullptr}, {Precision::Fp8, nullptr}};
  // The first three run the GEMV (<= 8 rows, K a multiple of 16) where EAQ_QUANTIZED_GEMV allows,
  // the fourth the GEMM path (K = 100).
  for (const Shape3 s :
       {Shape3{1, 768, 2304}, Shape3{3, 3072, 768}, Shape3{8, 64, 40}, Shape3{1, 100, 40},
        Shape3{37, 96, 80}, Shape3{5, 100, 40}, Shape3{300, 784, 272}, Shape3{256, 768, 3072}}) {
    const HostTensor x = round_f16(test::random_f32({s.m, s.k}, 21, 3.0f));
    const HostTensor w = test::random_f32({s.n, s.k}, 22, 0.2f);
    const HostTensor b = round_f16(test::random_f32({s.n}, 23, 0.5f));
    const float static_scale = 2.5f / 127.0f;  // saturates the largest inputs on purpose
    for (const Variant& variant : variants) {
      const Precision precision = variant.precision;
      const test::ScopedEnv env("EAQ_INT8_GEMM", variant.int8_gemm);
      EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
      LinearOptions options;
      options.name = "probe";
      options.quantize = true;
      options.static_input_scale = static_scale;
      auto linear = gpu->prepare_linear(w, &b, options);
      DeviceTensor dx = gpu->upload(x, DType::F16);
      DeviceTensor dy = gpu->allocate(DType::F16, {s.m, s.n});
      gpu->linear(dx, *linear, Activation::Gelu, dy);
      const HostTensor y = gpu->download(dy);
      const HostTensor expected = reference_linear(precision, x, w, b, static_scale);
      const double error = test::max_relative_error(y, expected);
      // f16 output rounding (and, for fp8, cuBLASLt's f32 accumulation order) only.
      const double tolerance = 2e-3;
      std::printf(
          "[ quant     ] linear %-8s M=%-4lld K=%-4lld N=%-4lld rel. error vs host reference "
          "%.2e (tolerance %.0e): %s\n",
          std::string(precision_name(precision)).c_str(), static_cast<long long>(s.m),
          static_cast<long long>(s.k), static_cast<long long>(s.n), error, tolerance,
          linear->kernel.c_str());
      EXPECT_LE(error, tolerance) << precision_name(precision) << " " << linear->kernel;
      gpu->release(dx);
      gpu->release(dy);
    }
  }
}

// The decode-step GEMV (quantized_gemv.cu) against the GEMM path of the same prepared layer
// (EAQ_QUANTIZED_GEMV=0): int8 and int8-static bit for bit (the same quantized x, the same
// integers, the same dequantization), fp8 up to f32 summation order, int8-wo up to the GEMM
// path's f16 rounding of its dequantized weights. Also its fused forms: the residual
// (linear_residual) and the LayerNorm (layer_norm_linear) against the separate ops.
TEST(CudaQuantGemv, MatchesTheGemmPathOfTheSameLayer) {
  struct Case {
    std::int64_t m, k, n;
  };
  const std::map<Precision, double> tolerance = {{Precision::Int8, 0.0},
                                                 {Precision::Int8Static, 0.0},
                                                 {Precision::Int8WeightOnly, 2e-3},
                                                 {Precision::Fp8, 2e-3}};
  // One row of K <= 768 runs the register kernel (K = 64: most lanes hold no piece), the rest
  // the shared-memory one (5 and 8 rows: two launches).
  for (const Case c : {Case{1, 768, 2304}, Case{1, 64, 37}, Case{1, 3072, 768}, Case{2, 768, 3072},
                       Case{5, 64, 37}, Case{8, 768, 96}}) {
    const HostTensor x = round_f16(test::random_f32({c.m, c.k}, 41, 2.0f));
    const HostTensor residual = round_f16(test::random_f32({c.m, c.n}, 42, 2.0f));
    const HostTensor ln_residual = round_f16(test::random_f32({c.m, c.k}, 47, 1.0f));
    const HostTensor w = test::random_f32({c.n, c.k}, 43, 0.1f);
    const HostTensor b = round_f16(test::random_f32({c.n}, 44, 0.5f));
    HostTensor gamma = test::random_f32({c.k}, 45, 0.2f);
    for (std::int64_t i = 0; i < c.k; ++i) gamma.mutable_data<float>()[i] += 1.0f;
    const HostTensor beta = test::random_f32({c.k}, 46, 0.1f);
    for (Precision precision : kQuantized) {
      EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
      LinearOptions options;
      options.name = "probe";
      options.quantize = true;
      options.static_input_scale = 2.0f / 127.0f;
      auto linear = gpu->prepare_linear(w, &b, options);
      DeviceTensor dx = gpu->upload(x, DType::F16), dr = gpu->upload(residual, DType::F16);
      DeviceTensor dlr = gpu->upload(ln_residual, DType::F16);
      DeviceTensor dg = gpu->upload(gamma, DType::F32), db = gpu->upload(beta, DType::F32);
      DeviceTensor y = gpu->allocate(DType::F16, {c.m, c.n});
      DeviceTensor normed = gpu->allocate(DType::F16, {c.m, c.k});
      DeviceTensor scratch = gpu->allocate(DType::F16, {c.m, c.n});
      const auto run = [&](const char* gemv_switch) {
        const test::ScopedEnv env("EAQ_QUANTIZED_GEMV", gemv_switch);
        std::vector<HostTensor> out;
        gpu->linear(dx, *linear, Activation::Gelu, y);
        out.push_back(gpu->download(y));
        gpu->copy(dr, y);
        gpu->linear_residual(dx, *linear, y, scratch, y);  // y = x W^T + b + y
        out.push_back(gpu->download(y));
        gpu->layer_norm_linear(dx, &dlr, dg, db, 1e-5f, normed, *linear, Activation::None, y);
        out.push_back(gpu->download(normed));
        out.push_back(gpu->download(y));
        return out;
      };
      const std::vector<HostTensor> gemv = run(nullptr), gemm = run("0");
      // The wide row (K 3072) loaded and quantized in every warp instead of staged once per block:
      // the same bits as the block's.
      std::vector<HostTensor> per_warp;
      {
        const test::ScopedEnv per_warp_switch("EAQ_BLOCK_QUANTIZE_ROW", "0");
        per_warp = run(nullptr);
      }
      for (std::size_t i = 0; i < gemv.size(); ++i) {
        EXPECT_EQ(test::max_relative_error(per_warp[i], gemv[i]), 0.0)
            << precision_name(precision) << " per-warp quantization, output " << i << " M=" << c.m
            << " K=" << c.k;
      }
      const char* what[] = {"linear+gelu", "linear+residual", "layer_norm out",
                            "layer_norm+linear"};
      for (std::size_t i = 0; i < gemv.size(); ++i) {
        const double error = test::max_relative_error(gemv[i], gemm[i]);
        // Adding the residual before rounding (one rounding, not two: int8's GEMM path adds it
        // in its epilogue too, so there the two agree) and the LayerNorm's reduction order
        // (block, not warp) each move a value by an f16 ulp; for int8 such an ulp can move one
        // quantized x by one step.
        const bool int8 = precision == Precision::Int8 || precision == Precision::Int8Static;
        const double allowed = i == 0 || (i == 1 && int8) ? tolerance.at(precision) : 5e-3;
        std::printf(
            "[ quant     ] gemv %-8s M=%lld K=%-4lld N=%-4lld %-17s vs the GEMM path: rel. "
            "error %.2e (tolerance %.0e)\n",
            std::string(precision_name(precision)).c_str(), static_cast<long long>(c.m),
            static_cast<long long>(c.k), static_cast<long long>(c.n), what[i], error, allowed);
        EXPECT_LE(error, allowed) << precision_name(precision) << " " << what[i] << " M=" << c.m
                                  << " K=" << c.k << " N=" << c.n;
      }
      for (DeviceTensor* t : {&dx, &dr, &dlr, &dg, &db, &y, &normed, &scratch}) gpu->release(*t);
    }
  }
}

TEST(CudaQuantLinear, Int8StaticNeedsACalibratedScale) {
  EAQ_CUDA_BACKEND_OR_SKIP(gpu, Precision::Int8Static);
  LinearOptions options;
  options.name = "layers.2.o";
  options.quantize = true;
  try {
    gpu->prepare_linear(test::random_f32({16, 16}, 1), nullptr, options);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer layers.2.o has no calibrated input scale"),
              std::string::npos)
        << e.what();
  }
}

// layer_norm_linear and feed_forward (fused on the GPU) against the separate ops, on the same
// backend: the fused kernels quantize exactly what the separate ones would read back.
// hidden 96: rows of 16-byte pieces (the piece forms of the LayerNorm and of the fused kernel);
// 100: rows of single elements (their element forms).
TEST(CudaQuantFused, PairsEqualTheSeparateOps) {
  const std::int64_t m = 50, inner = 384;
  for (const std::int64_t hidden : {96, 100}) {
    const HostTensor x = round_f16(test::random_f32({m, hidden}, 31, 2.0f));
    const HostTensor residual = round_f16(test::random_f32({m, hidden}, 32, 2.0f));
    HostTensor gamma = test::random_f32({hidden}, 33, 0.2f);
    for (std::int64_t i = 0; i < hidden; ++i) gamma.mutable_data<float>()[i] += 1.0f;
    const HostTensor beta = test::random_f32({hidden}, 34, 0.1f);
    const HostTensor w1 = test::random_f32({inner, hidden}, 35, 0.1f);
    const HostTensor b1 = test::random_f32({inner}, 36, 0.1f);
    const HostTensor w2 = test::random_f32({hidden, inner}, 37, 0.05f);
    const HostTensor b2 = test::random_f32({hidden}, 38, 0.1f);
    for (Precision precision : kQuantized) {
      EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
      LinearOptions o1, o2;
      o1.name = "ffn_in";
      o2.name = "ffn_out";
      o1.quantize = o2.quantize = true;
      o1.static_input_scale = 3.0f / 127.0f;
      o2.static_input_scale = 1.0f / 127.0f;
      auto lin1 = gpu->prepare_linear(w1, &b1, o1);
      auto lin2 = gpu->prepare_linear(w2, &b2, o2);
      DeviceTensor dx = gpu->upload(x, DType::F16), dr = gpu->upload(residual, DType::F16);
      DeviceTensor dg = gpu->upload(gamma, DType::F32), db = gpu->upload(beta, DType::F32);
      DeviceTensor out_a = gpu->allocate(DType::F16, {m, hidden}),
                   out_b = gpu->allocate(DType::F16, {m, hidden});
      DeviceTensor mid = gpu->allocate(DType::F16, {m, inner});
      DeviceTensor y_a = gpu->allocate(DType::F16, {m, inner}),
                   y_b = gpu->allocate(DType::F16, {m, inner});
      DeviceTensor z_a = gpu->allocate(DType::F16, {m, hidden}),
                   z_b = gpu->allocate(DType::F16, {m, hidden});

      gpu->layer_norm_linear(dx, &dr, dg, db, 1e-12f, out_a, *lin1, Activation::Gelu, y_a);
      gpu->layer_norm(dx, &dr, dg, db, 1e-12f, out_b);
      gpu->linear(out_b, *lin1, Activation::Gelu, y_b);
      const double ln_diff = test::max_relative_error(gpu->download(out_a), gpu->download(out_b));
      const double ln_linear_diff =
          test::max_relative_error(gpu->download(y_a), gpu->download(y_b));

      gpu->feed_forward(out_b, *lin1, Activation::Gelu, mid, *lin2, z_a);
      gpu->linear(out_b, *lin1, Activation::Gelu, y_b);
      gpu->linear(y_b, *lin2, Activation::None, z_b);
      const double ffn_diff = test::max_relative_error(gpu->download(z_a), gpu->download(z_b));
      std::printf(
          "[ quant     ] fused %-8s hidden %3lld layer_norm_linear: LN diff %.1e, y diff %.1e; "
          "feed_forward diff %.1e (all expected 0)\n",
          std::string(precision_name(precision)).c_str(), static_cast<long long>(hidden), ln_diff,
          ln_linear_diff, ffn_diff);
      EXPECT_EQ(ln_diff, 0.0) << precision_name(precision) << " hidden " << hidden;
      EXPECT_EQ(ln_linear_diff, 0.0) << precision_name(precision) << " hidden " << hidden;
      EXPECT_EQ(ffn_diff, 0.0) << precision_name(precision) << " hidden " << hidden;
      for (DeviceTensor* t : {&dx, &dr, &dg, &db, &out_a, &out_b, &mid, &y_a, &y_b, &z_a, &z_b}) {
        gpu->release(*t);
      }
    }
  }
}

#ifdef EAQ_HAVE_CUDA
bool have_gpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

template <class T>
T* device_copy(const std::vector<T>& host) {
  T* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, std::max<std::size_t>(host.size() * sizeof(T), 1)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
            cudaSuccess);
  return p;
}

template <class T>
std::vector<T> host_copy(const T* device, std::size_t count) {
  std::vector<T> host(count);
  EXPECT_EQ(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return host;
}

// The quantization kernel against src/quant bit for bit: per-token int8 and E4M3, static int8,
// on a vectorizable width and an odd one (scalar path, padded ld), with an all-zero row.
TEST(CudaQuantKernels, QuantizeRowsBitExact) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const std::int64_t cols : {768, 100}) {
    const std::int64_t rows = 37, ld = (cols + 15) / 16 * 16;
    HostTensor x = round_f16(test::random_f32({rows, cols}, 41, 5.0f));
    for (std::int64_t c = 0; c < cols; ++c) x.mutable_data<float>()[3 * cols + c] = 0.0f;
    std::vector<std::uint16_t> bits(static_cast<std::size_t>(rows * cols));
    for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = f32_to_f16_bits(x.data<float>()[i]);
    std::uint16_t* dx = device_copy(bits);
    std::uint8_t* dq =
        device_copy(std::vector<std::uint8_t>(static_cast<std::size_t>(rows * ld), 0xAB));
    float* ds = device_copy(std::vector<float>(static_cast<std::size_t>(rows), -1.0f));
    for (int mode = 0; mode < 3; ++mode) {  // int8 dynamic, e4m3 dynamic, int8 static
      cuda::QuantizeTarget target;
      target.format = mode == 1 ? cuda::QuantFormat::E4M3 : cuda::QuantFormat::Int8;
      target.values = dq;
      target.ld = ld;
      const float static_scale = 4.0f / 127.0f;
      if (mode == 2) {
        target.static_inverse = 1.0f / static_scale;
      } else {
        target.scales = ds;
      }
      cuda::launch_quantize_rows(DType::F16, dx, rows, cols, target, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto q = host_copy(dq, static_cast<std::size_t>(rows * ld));
      const auto s = host_copy(ds, static_cast<std::size_t>(rows));
      std::vector<std::uint8_t> expected_q(static_cast<std::size_t>(rows * cols));
      std::vector<float> expected_s(static_cast<std::size_t>(rows));
      if (mode == 0) {
        quant::quantize_rows_int8(x.data<float>(), rows, cols,
                                  reinterpret_cast<std::int8_t*>(expected_q.data()),
                                  expected_s.data());
      } else if (mode == 1) {
        quant::quantize_rows_e4m3(x.data<float>(), rows, cols, expected_q.data(),
                                  expected_s.data());
      } else {
        quant::quantize_int8_static(x.data<float>(), rows * cols, static_scale,
                                    reinterpret_cast<std::int8_t*>(expected_q.data()));
      }
      int mismatches = 0, padding = 0;
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < ld; ++c) {
          const std::uint8_t got = q[static_cast<std::size_t>(r * ld + c)];
          if (c >= cols) {
            padding += got != 0;
          } else {
            mismatches += got != expected_q[static_cast<std::size_t>(r * cols + c)];
          }
        }
        if (mode != 2) {
          EXPECT_EQ(s[static_cast<std::size_t>(r)], expected_s[static_cast<std::size_t>(r)])
              << "row " << r;
        }
      }
      std::printf(
          "[ quant     ] quantize kernel mode %d cols %lld: %d mismatches, %d non-zero "
          "padding bytes (expected 0, 0)\n",
          mode, static_cast<long long>(cols), mismatches, padding);
      EXPECT_EQ(mismatches, 0);
      EXPECT_EQ(padding, 0);
    }
    cudaFree(dx);
    cudaFree(dq);
    cudaFree(ds);
  }
}

// The dequantization epilogue (i32 accumulators) against the host formula, and its fused
// quantization of the output against quantizing the stored output.
TEST(CudaQuantKernels, DequantizeAndRequantize) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::int64_t rows = 19, cols = 72, ld_acc = 80, ld_q = 80;
  std::mt19937 rng(5);
  std::vector<std::int32_t> acc(static_cast<std::size_t>(rows * ld_acc));
  for (auto& a : acc) a = static_cast<std::int32_t>(rng() % 200001) - 100000;
  std::vector<float> rs(static_cast<std::size_t>(rows)), cs(static_cast<std::size_t>(ld_acc)),
      bias(static_cast<std::size_t>(cols));
  for (auto& v : rs) v = 1e-3f * static_cast<float>(1 + rng() % 100);
  for (auto& v : cs) v = 1e-3f * static_cast<float>(1 + rng() % 100);
  for (auto& v : bias) v = 0.01f * static_cast<float>(static_cast<int>(rng() % 200) - 100);
  std::int32_t* d_acc = device_copy(acc);
  float *d_rs = device_copy(rs), *d_cs = device_copy(cs), *d_bias = device_copy(bias);
  std::uint16_t* d_y =
      device_copy(std::vector<std::uint16_t>(static_cast<std::size_t>(rows * cols)));
  std::uint8_t* d_q = device_copy(std::vector<std::uint8_t>(static_cast<std::size_t>(rows * ld_q)));
  float* d_s = device_copy(std::vector<float>(static_cast<std::size_t>(rows)));
  cuda::QuantizeTarget next;
  next.values = d_q;
  next.ld = ld_q;
  next.scales = d_s;
  cuda::DequantizeArgs args;
  args.acc = d_acc;
  args.ld_acc = ld_acc;
  args.row_scales = d_rs;
  args.col_scales = d_cs;
  args.bias = d_bias;
  args.activation = Activation::Gelu;
  args.rows = rows;
  args.cols = cols;
  args.y = d_y;
  args.next = &next;
  cuda::launch_dequantize(DType::F16, args, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto y_bits = host_copy(d_y, static_cast<std::size_t>(rows * cols));
  HostTensor y = HostTensor::empty(DType::F32, {rows, cols});
  double worst = 0.0;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      const float got = f16_bits_to_f32(y_bits[static_cast<std::size_t>(r * cols + c)]);
      y.mutable_data<float>()[r * cols + c] = got;
      const float expected =
          gelu(static_cast<float>(acc[static_cast<std::size_t>(r * ld_acc + c)]) *
                   (rs[static_cast<std::size_t>(r)] * cs[static_cast<std::size_t>(c)]) +
               bias[static_cast<std::size_t>(c)]);
      worst = std::max(worst, static_cast<double>(std::fabs(got - expected) /
                                                  std::max(1.0f, std::fabs(expected))));
    }
  }
  const quant::QuantizedRows requantized = quant::quantize_activations_int8(y);
  const auto q = host_copy(d_q, static_cast<std::size_t>(rows * ld_q));
  const auto s = host_copy(d_s, static_cast<std::size_t>(rows));
  int mismatches = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(s[static_cast<std::size_t>(r)], requantized.scales[static_cast<std::size_t>(r)]);
    for (std::int64_t c = 0; c < cols; ++c) {
      mismatches += static_cast<std::int8_t>(q[static_cast<std::size_t>(r * ld_q + c)]) !=
                    requantized.values.data<std::int8_t>()[r * cols + c];
    }
  }
  std::printf(
      "[ quant     ] dequantize kernel: max rel. error %.2e (f16 output), requantized "
      "mismatches %d (expected 0)\n",
      worst, mismatches);
  EXPECT_LE(worst, 1e-3);
  EXPECT_EQ(mismatches, 0);
  for (void* p : {static_cast<void*>(d_acc), static_cast<void*>(d_rs), static_cast<void*>(d_cs),
                  static_cast<void*>(d_bias), static_cast<void*>(d_y), static_cast<void*>(d_q),
                  static_cast<void*>(d_s)}) {
    cudaFree(p);
  }
}
// eaq's int8 GEMM kernels (128 x 128 tiles, and 64 x 64 tiles with K split over a cluster)
// against exact integer sums on the host, on shapes with tails in M, N and K, per-token and
// static row scales, with and without bias and activation, and GPT-2's prompt shapes (M = 128,
// where K is split). Both kernels sum integers exactly: they must agree to the bit.
TEST(CudaQuantKernels, OwnInt8GemmMatchesHost) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  struct Case {
    std::int64_t m, n, k;
    bool static_rows, with_bias;
    Activation activation;
    bool with_residual = false;  // y starts as the residual: y = ... + y
  };
  std::mt19937 rng(9);
  for (const Case c : {Case{1, 16, 16, false, true, Activation::None},
                       Case{37, 80, 96, false, true, Activation::Gelu, true},
                       Case{130, 144, 80, true, false, Activation::Relu},
                       Case{300, 272, 784, false, true, Activation::GeluTanh, true},
                       Case{512, 3072, 768, false, true, Activation::Gelu},
                       Case{128, 2304, 768, false, true, Activation::None},
                       Case{128, 768, 3072, false, true, Activation::None, true},
                       Case{128, 3072, 768, true, true, Activation::GeluTanh}}) {
    std::vector<std::int8_t> x(static_cast<std::size_t>(c.m * c.k)),
        w(static_cast<std::size_t>(c.n * c.k));
    for (auto& v : x) v = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
    for (auto& v : w) v = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
    std::vector<float> rs(static_cast<std::size_t>(c.m)), cs(static_cast<std::size_t>(c.n)),
        bias(static_cast<std::size_t>(c.n));
    for (auto& v : rs) v = 1e-3f * static_cast<float>(1 + rng() % 50);
    for (auto& v : cs) v = 1e-4f * static_cast<float>(1 + rng() % 50);
    for (auto& v : bias) v = 0.01f * static_cast<float>(static_cast<int>(rng() % 200) - 100);
    const float static_scale = 0.02f;
    std::int8_t* dx = device_copy(x);
    std::int8_t* dw = device_copy(w);
    float *drs = device_copy(rs), *dcs = device_copy(cs), *dbias = device_copy(bias);
    std::vector<std::uint16_t> residual(static_cast<std::size_t>(c.m * c.n), 0);
    if (c.with_residual) {
      for (auto& v : residual) {
        v = f32_to_f16_bits(0.05f * static_cast<float>(static_cast<int>(rng() % 200) - 100));
      }
    }
    std::uint16_t* dy = device_copy(residual);
    cuda::Int8GemmArgs args;
    args.x = dx;
    args.w = dw;
    args.m = c.m;
    args.n = c.n;
    args.k = c.k;
    args.row_scales = c.static_rows ? nullptr : drs;
    args.static_row_scale = static_scale;
    args.col_scales = dcs;
    args.bias = c.with_bias ? dbias : nullptr;
    args.activation = c.activation;
    args.y = dy;
    args.ldy = args.n_out = c.n;
    args.residual = c.with_residual ? dy : nullptr;
    cuda::launch_int8_gemm(DType::F16, args, nullptr, cuda::Int8GemmKernel::SplitK64);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << cudaGetErrorString(cudaGetLastError());
    const auto y = host_copy(dy, static_cast<std::size_t>(c.m * c.n));
    if (!c.with_residual) {  // (the 128 x 128 kernel has no residual epilogue)
      EXPECT_EQ(cudaMemset(dy, 0, residual.size() * 2), cudaSuccess);
      cuda::launch_int8_gemm(DType::F16, args, nullptr, cuda::Int8GemmKernel::Tiles128);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << cudaGetErrorString(cudaGetLastError());
      const auto y_tiles128 = host_copy(dy, static_cast<std::size_t>(c.m * c.n));
      EXPECT_EQ(y, y_tiles128) << c.m << "x" << c.n << "x" << c.k << ": the two kernels differ";
    } else {
      EXPECT_THROW(
          cuda::launch_int8_gemm(DType::F16, args, nullptr, cuda::Int8GemmKernel::Tiles128), Error);
    }
    HostTensor got = HostTensor::empty(DType::F32, {c.m, c.n});
    HostTensor expected = HostTensor::empty(DType::F32, {c.m, c.n});
    for (std::int64_t i = 0; i < c.m; ++i) {
      for (std::int64_t j = 0; j < c.n; ++j) {
        std::int64_t acc = 0;
        for (std::int64_t q = 0; q < c.k; ++q) {
          acc +=
              x[static_cast<std::size_t>(i * c.k + q)] * w[static_cast<std::size_t>(j * c.k + q)];
        }
        const float row = c.static_rows ? static_scale : rs[static_cast<std::size_t>(i)];
        float v = static_cast<float>(acc) * (row * cs[static_cast<std::size_t>(j)]) +
                  (c.with_bias ? bias[static_cast<std::size_t>(j)] : 0.0f);
        switch (c.activation) {
          case Activation::Gelu:
            v = gelu(v);
            break;
          case Activation::Relu:
            v = std::max(v, 0.0f);
            break;
          case Activation::GeluTanh:
            v = 0.5f * v * (1.0f + std::tanh(0.79788456080286536f * (v + 0.044715f * v * v * v)));
            break;
          default:
            break;
        }
        expected.mutable_data<float>()[i * c.n + j] =
            v + f16_bits_to_f32(residual[static_cast<std::size_t>(i * c.n + j)]);
        got.mutable_data<float>()[i * c.n + j] =
            f16_bits_to_f32(y[static_cast<std::size_t>(i * c.n + j)]);
      }
    }
    const double error = test::max_relative_error(got, expected);
    std::printf(
        "[ quant     ] eaq int8 gemm M=%-4lld N=%-4lld K=%-4lld (%d splits of K)%s rel. error "
        "%.2e (tolerance 2e-3)\n",
        static_cast<long long>(c.m), static_cast<long long>(c.n), static_cast<long long>(c.k),
        cuda::int8_split_k_gemm_splits(args), c.with_residual ? " + residual" : "", error);
    EXPECT_LE(error, 2e-3) << c.m << "x" << c.n << "x" << c.k;
    for (void* p : {static_cast<void*>(dx), static_cast<void*>(dw), static_cast<void*>(drs),
                    static_cast<void*>(dcs), static_cast<void*>(dbias), static_cast<void*>(dy)}) {
      cudaFree(p);
    }
  }
}
#endif  // EAQ_HAVE_CUDA

struct Inputs {
  HostTensor ids, mask;
};

Inputs random_inputs(int batch, int seq, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(batch * seq)), mask(ids.size(), 1);
  for (int b = 0; b < batch; ++b) {
    const int length = seq - (b * 7) % (seq / 2);
    for (int t = 0; t < seq; ++t) {
      ids[b * seq + t] = t < length ? static_cast<std::int32_t>(rng() % vocab) : 0;
      mask[b * seq + t] = t < length ? 1 : 0;
    }
  }
  return {HostTensor::from_i32({batch, seq}, ids), HostTensor::from_i32({batch, seq}, mask)};
}

HostTensor logits_on(Backend& backend, EncoderModel& model, const Inputs& in, bool use_graph) {
  EncoderBatch batch;
  batch.input_ids = backend.upload(in.ids, DType::I32);
  batch.attention_mask = backend.upload(in.mask, DType::I32);
  EncoderOutputs out = model.forward(batch);
  if (use_graph) {
    auto graph = backend.capture([&] { model.forward(batch); });
    graph->launch();
  }
  HostTensor logits = backend.download(out.logits);
  backend.release(batch.input_ids);
  backend.release(batch.attention_mask);
  return logits;
}

// The same scheme on both backends: CUDA int8 / int8-static / int8-wo against CPU int8 (the CPU
// keeps f32 activations, the GPU f16, so they differ by f16 rounding, amplified a little by
// quantization steps that round the other way).
TEST(CudaQuantEncoder, Int8MatchesCpuInt8) {
  test::TempDir dir;
  test::RandomEncoderSpec spec;
  spec.hidden = 128;
  spec.heads = 2;
  spec.intermediate = 256;
  spec.layers = 3;
  spec.vocab = 500;
  spec.positions = 128;
  spec.weight_scale = 0.1f;
  test::write_random_encoder(dir.path(), spec);
  const Inputs in = random_inputs(4, 64, spec.vocab, 5);
  quant::CalibrationOptions options;
  options.batches = 1;
  options.batch_size = 4;
  const quant::Calibration calibration =
      quant::calibrate(dir.path(), {&in.ids, &in.mask, nullptr}, options);
  for (Precision precision : {Precision::Int8, Precision::Int8Static, Precision::Int8WeightOnly}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto cpu = make_cpu_backend(precision);
    auto cpu_model = EncoderModel::load(dir.path(), *cpu, calibration.plan());
    auto gpu_model = EncoderModel::load(dir.path(), *gpu, calibration.plan());
    const HostTensor expected = logits_on(*cpu, *cpu_model, in, false);
    const HostTensor direct = logits_on(*gpu, *gpu_model, in, false);
    const HostTensor graphed = logits_on(*gpu, *gpu_model, in, true);
    const double error = test::max_relative_error(direct, expected);
    std::printf("[ quant     ] cuda vs cpu %-12s logits rel. error %.2e (tolerance 5e-2)\n",
                std::string(precision_name(precision)).c_str(), error);
    EXPECT_LE(error, 5e-2) << precision_name(precision);
    EXPECT_EQ(test::max_relative_error(graphed, direct), 0.0) << "graph replay differs";
  }
}

// Argmax agreement of two [N, 2] logit tensors: over all rows, and over the rows where the
// reference is confident (|margin| > 10% of its largest logit), where quantization noise alone
// must not flip a decision.
struct Agreement {
  int all = 0, confident = 0, confident_total = 0;
};
Agreement agreement(const HostTensor& logits, const HostTensor& expected) {
  Agreement a;
  float largest = 0.0f;
  for (std::int64_t i = 0; i < expected.numel(); ++i) {
    largest = std::max(largest, std::fabs(expected.data<float>()[i]));
  }
  for (std::int64_t b = 0; b < expected.dim(0); ++b) {
    const float* l = logits.data<float>() + 2 * b;
    const float* e = expected.data<float>() + 2 * b;
    const bool same = (l[1] > l[0]) == (e[1] > e[0]);
    a.all += same;
    if (std::fabs(e[1] - e[0]) > 0.1f * largest) {
      ++a.confident_total;
      a.confident += same;
    }
  }
  return a;
}

// The first `count` rows of a bundled dataset as [count, 128] inputs.
Inputs bundled_rows(const std::string& name, std::int64_t count) {
  const Dataset data =
      Dataset::load(std::filesystem::path(test::source_dir()) / "datasets" / name, 30522);
  const std::int64_t width = data.sequence_length();
  count = std::min(count, data.size());
  const auto rows = [&](const HostTensor& t) {
    HostTensor copy = HostTensor::empty(DType::I32, {count, width});
    std::copy_n(t.data<std::int32_t>(), count * width, copy.mutable_data<std::int32_t>());
    return copy;
  };
  return Inputs{rows(data.input_ids()), rows(data.attention_mask())};
}

// DistilBERT's default shape (random weights), seq 128: every quantized precision against CUDA
// fp32 (which matches CPU fp32 within 1e-4), calibrated on datasets/sentiment-calibration.
//  - On the bundled held-out sentences (256 of sentiment-large): argmax agreement >= 99% for int8
//    and int8-wo. int8-static (one calibrated scale per layer input) and fp8 fall just short of
//    that on random weights (H100, commit 748e63365f3a: 252/256 and 253/256, every flip at a
//    margin below 10% of the largest logit), so they are held to 98% here; on the trained bundled
//    model (next test) they agree on 997/1000 and 992/1000 rows.
//  - On 256 rows of uniformly random token ids, a harsher input: random weights give many
//    near-tied logits there (measured on an H200: int8 254/256, int8-static 251/256, fp8 245/256
//    rows, every flip at a margin below 10% of the largest logit), so every row where fp32 is
//    confident must agree, and the logits stay within the tolerance table.
TEST(CudaQuantEncoder, DefaultShapeArgmaxAgreesWithFp32) {
  EAQ_CUDA_BACKEND_OR_SKIP(reference, Precision::Fp32);
  test::TempDir dir;
  test::RandomEncoderSpec spec;
  spec.vocab = 30522;
  spec.hidden = 768;
  spec.heads = 12;
  spec.layers = 6;
  spec.intermediate = 3072;
  spec.positions = 512;
  spec.labels = 2;
  spec.weight_scale = 0.04f;
  test::write_random_encoder(dir.path(), spec);
  const Inputs bundled = bundled_rows("sentiment-large", 256);
  const Inputs random = random_inputs(256, 128, spec.vocab, 9);
  const Inputs calibration_inputs = bundled_rows("sentiment-calibration", 64);
  auto reference_model = EncoderModel::load(dir.path(), *reference);
  const HostTensor expected_bundled = logits_on(*reference, *reference_model, bundled, false);
  const HostTensor expected_random = logits_on(*reference, *reference_model, random, false);
  quant::CalibrationOptions options;
  options.batches = 2;
  options.batch_size = 32;
  const quant::Calibration calibration =
      quant::calibrate(dir.path(), {&calibration_inputs.ids, &calibration_inputs.mask, nullptr},
                       options, reference.get());
  const std::map<Precision, double> tolerance = {{Precision::Int8, 0.08},
                                                 {Precision::Int8Static, 0.12},
                                                 {Precision::Int8WeightOnly, 0.04},
                                                 {Precision::Fp8, 0.25}};
  for (Precision precision : kQuantized) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto model = EncoderModel::load(dir.path(), *gpu, calibration.plan());
    const HostTensor on_bundled = logits_on(*gpu, *model, bundled, false);
    const HostTensor logits = logits_on(*gpu, *model, random, false);
    const HostTensor graphed = logits_on(*gpu, *model, random, true);
    const Agreement b = agreement(on_bundled, expected_bundled);
    const Agreement a = agreement(logits, expected_random);
    const double error = test::max_relative_error(logits, expected_random);
    std::printf(
        "[ quant     ] %-12s argmax agreement: bundled sentences %d/%lld, random ids %d/256 "
        "(confident rows %d/%d); logits rel. error %.2e (tolerance %.2f); layers.0.ffn_in: %s\n",
        std::string(precision_name(precision)).c_str(), b.all,
        static_cast<long long>(on_bundled.dim(0)), a.all, a.confident, a.confident_total, error,
        tolerance.at(precision), model->linear_layers()[2].kernel.c_str());
    const bool per_token = precision == Precision::Int8 || precision == Precision::Int8WeightOnly;
    EXPECT_GE(b.all / static_cast<double>(on_bundled.dim(0)), per_token ? 0.99 : 0.98)
        << precision_name(precision);
    EXPECT_EQ(a.confident, a.confident_total) << precision_name(precision);
    EXPECT_LE(error, tolerance.at(precision)) << precision_name(precision);
    EXPECT_EQ(test::max_relative_error(graphed, logits), 0.0) << "graph replay differs";
  }
}

// The bundled trained model on held-out data (all 1000 sentences of sentiment-large; calibration
// on datasets/sentiment-calibration, yelp sentences): accuracy within a point of fp32, and argmax
// agreement (CPU emulation of fp8 on all 1000: 992/1000, accuracy 75.5 vs 75.7).
TEST(CudaQuantEncoder, BundledSentimentAccuracyWithinAPoint) {
  EAQ_CUDA_BACKEND_OR_SKIP(reference, Precision::Fp32);
  const std::filesystem::path root = test::source_dir();
  const std::filesystem::path model_dir = root / "models" / "sentiment-distilbert";
  const Dataset data = Dataset::load(root / "datasets" / "sentiment-large", 30522);
  const std::int64_t eval_size = data.size();
  const Inputs eval = bundled_rows("sentiment-large", eval_size);
  const Inputs calibration_inputs = bundled_rows("sentiment-calibration", 128);
  const HostTensor& labels = *data.labels();
  const auto accuracy = [&](const HostTensor& logits) {
    int right = 0;
    for (std::int64_t i = 0; i < logits.dim(0); ++i) {
      right += (logits.data<float>()[2 * i + 1] > logits.data<float>()[2 * i]) ==
               (labels.data<std::int64_t>()[i] == 1);
    }
    return 100.0 * right / static_cast<double>(logits.dim(0));
  };
  auto reference_model = EncoderModel::load(model_dir, *reference);
  const HostTensor expected = logits_on(*reference, *reference_model, eval, false);
  quant::CalibrationOptions options;
  options.batches = 4;
  options.batch_size = 32;
  options.dataset = "sentiment-calibration (first 128)";
  const quant::Calibration calibration =
      quant::calibrate(model_dir, {&calibration_inputs.ids, &calibration_inputs.mask, nullptr},
                       options, reference.get());
  for (Precision precision : kQuantized) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto model = EncoderModel::load(model_dir, *gpu, calibration.plan());
    const HostTensor logits = logits_on(*gpu, *model, eval, false);
    const Agreement a = agreement(logits, expected);
    std::printf(
        "[ quant     ] sentiment-distilbert %-12s accuracy %.1f (fp32 %.1f) on %lld "
        "examples, argmax agreement %d/%lld, logits rel. error %.2e\n",
        std::string(precision_name(precision)).c_str(), accuracy(logits), accuracy(expected),
        static_cast<long long>(eval_size), a.all, static_cast<long long>(eval_size),
        test::max_relative_error(logits, expected));
    EXPECT_LE(std::fabs(accuracy(logits) - accuracy(expected)), 1.0) << precision_name(precision);
    EXPECT_GE(a.all / static_cast<double>(eval_size), precision == Precision::Fp8 ? 0.98 : 0.99)
        << precision_name(precision);
  }
}

}  // namespace
}  // namespace eaq
