// The CUDA backend's fused decode ops against the CPU reference's unfused ones: LayerNorm inside
// the GEMV (layer_norm_linear), the residual in the GEMV or cuBLASLt epilogue (linear_residual,
// output aliasing the residual as GPT-2 uses it), and the split argmax over a vocabulary row.
// Inputs are rounded to the GPU dtype first so only the kernels' own error is measured.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "cuda_test_util.hpp"
#include "golden.hpp"
#include "test_util.hpp"

#ifdef EAQ_HAVE_CUDA
#include "backend/cuda/kernels.hpp"
#endif

namespace eaq {
namespace {

double tolerance_for(DType act) {
  // f16/bf16: the GPU rounds the normalized rows and the outputs to the dtype; the CPU does not.
  return act == DType::F32 ? 1e-4 : act == DType::F16 ? 1e-2 : 5e-2;
}

double max_abs_difference(const HostTensor& a, const HostTensor& b) {
  EAQ_ASSERT(a.numel() == b.numel());
  double most = 0.0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    most = std::max(most, std::abs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]));
  }
  return most;
}

struct LinearShape {
  std::int64_t m, n, k;
};

// m <= 8 runs eaq's GEMV (one row with k <= 1536 f16 / 768 f32: x in registers; otherwise x in
// shared memory); m = 40 runs cuBLASLt (the residual as its C operand).
const LinearShape kShapes[] = {{1, 2304, 768}, {1, 768, 3072}, {1, 96, 1536}, {1, 75, 1000},
                               {1, 40, 256},   {3, 768, 3072}, {5, 200, 64},  {8, 96, 128},
                               {1, 5000, 768}, {40, 256, 128}};

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

// One row runs the kernel that splits k over a block's warps (with and without a LayerNorm), and
// with EAQ_SPLIT_ROW_GEMV=0 the row kernel. With EAQ_MMA_GEMV=1 the split kernel runs f16 and
// bf16 on the tensor cores: both forms are checked against the CPU, and against each other within
// one rounding of T. The FMA forms also run with EAQ_SHARED_SHUFFLES=0 and EAQ_EARLY_RESIDUAL=0,
// bit for bit.
TEST(CudaFusedOps, LayerNormGemvAndResidualEpilogueMatchTheUnfusedCpuOps) {
  for (const char* split : {"0", "1"}) {
    for (Precision precision : {Precision::Fp32, Precision::Fp16, Precision::Bf16}) {
      const test::ScopedEnv split_rows("EAQ_SPLIT_ROW_GEMV", split);
      EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
      auto cpu = make_cpu_backend(Precision::Fp32);
      const DType act = gpu->activation_dtype();
      for (const LinearShape& s : kShapes) {
        const float w_scale = 1.0f / std::sqrt(static_cast<float>(s.k));
        const HostTensor w = test::rounded_to(test::random_f32({s.n, s.k}, 21, w_scale), act);
        const HostTensor bias = test::rounded_to(test::random_f32({s.n}, 22, 0.5f), act);
        const HostTensor x = test::rounded_to(test::random_f32({s.m, s.k}, 23, 3.0f), act);
        const HostTensor ln_residual =
            test::rounded_to(test::random_f32({s.m, s.k}, 24, 1.0f), act);
        const HostTensor gamma = test::random_f32({s.k}, 25, 1.0f);
        const HostTensor beta = test::random_f32({s.k}, 26, 0.2f);
        const HostTensor residual = test::rounded_to(test::random_f32({s.m, s.n}, 27, 2.0f), act);
        const FusedResults want =
            run_fused(*cpu, s, w, bias, x, ln_residual, gamma, beta, residual);
        const FusedResults got = [&] {
          const test::ScopedEnv mma("EAQ_MMA_GEMV", "1");
          return run_fused(*gpu, s, w, bias, x, ln_residual, gamma, beta, residual);
        }();
        const auto run_fma = [&](bool one_at_a_time) {
          const test::ScopedEnv fma("EAQ_MMA_GEMV", "0");
          // A warp's sums one at a time (EAQ_SHARED_SHUFFLES=0: the same pairs of lanes add)
          // and the residual read at the end (EAQ_EARLY_RESIDUAL=0: the same value).
          const test::ScopedEnv shuffles("EAQ_SHARED_SHUFFLES", one_at_a_time ? "0" : "1");
          const test::ScopedEnv late_residual("EAQ_EARLY_RESIDUAL", one_at_a_time ? "0" : "1");
          return run_fused(*gpu, s, w, bias, x, ln_residual, gamma, beta, residual);
        };
        const FusedResults fma = run_fma(false), one_at_a_time = run_fma(true);
        const std::pair<const HostTensor*, const HostTensor*> same_bits[] = {
            {&fma.ln_linear.y, &one_at_a_time.ln_linear.y},
            {&fma.ln_linear.normed, &one_at_a_time.ln_linear.normed},
            {&fma.ln_residual_linear.y, &one_at_a_time.ln_residual_linear.y},
            {&fma.linear_residual, &one_at_a_time.linear_residual},
            {&got.ln_linear.normed, &fma.ln_linear.normed},
            {&got.ln_residual_linear.normed, &fma.ln_residual_linear.normed}};
        for (const auto& [a, b] : same_bits) {
          EXPECT_EQ(max_abs_difference(*a, *b), 0.0)
              << "EAQ_MMA_GEMV=1 and 0, EAQ_SHARED_SHUFFLES=0 EAQ_EARLY_RESIDUAL=0, "
              << precision_name(precision) << " split " << split << " m " << s.m << " n " << s.n
              << " k " << s.k;
        }
        // The tensor cores add the same products in another order: one rounding of T apart at
        // most (relative to the largest output), where the CPU tolerance is ten times wider.
        const double one_rounding = act == DType::F32 ? 0.0 : act == DType::F16 ? 1e-3 : 8e-3;
        const std::pair<const HostTensor*, const HostTensor*> mma_and_fma[] = {
            {&got.ln_linear.y, &fma.ln_linear.y},
            {&got.ln_residual_linear.y, &fma.ln_residual_linear.y},
            {&got.linear_residual, &fma.linear_residual}};
        for (const auto& [a, b] : mma_and_fma) {
          EXPECT_LE(test::max_relative_error(*a, *b), one_rounding)
              << "tensor cores (EAQ_MMA_GEMV=1) against FMAs, " << precision_name(precision)
              << " split " << split << " m " << s.m << " n " << s.n << " k " << s.k;
        }
        const std::pair<const HostTensor*, const HostTensor*> fma_and_cpu[] = {
            {&fma.ln_linear.y, &want.ln_linear.y},
            {&fma.ln_residual_linear.y, &want.ln_residual_linear.y},
            {&fma.linear_residual, &want.linear_residual}};
        for (const auto& [a, b] : fma_and_cpu) {
          EXPECT_LE(test::max_relative_error(*a, *b), tolerance_for(act))
              << "EAQ_MMA_GEMV=0 against the CPU, " << precision_name(precision) << " split "
              << split << " m " << s.m << " n " << s.n << " k " << s.k;
        }
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
          EXPECT_LE(errors[i], tolerance_for(act))
              << what[i] << ", " << precision_name(precision) << " split " << split << " m " << s.m
              << " n " << s.n << " k " << s.k;
        }
        std::printf(
            "[ fused     ] split %s %-5s m %2lld n %5lld k %4lld  ln+gemv %.1e/%.1e  "
            "ln(x+r)+gemv %.1e/%.1e  +residual %.1e\n",
            split, std::string(precision_name(precision)).c_str(), static_cast<long long>(s.m),
            static_cast<long long>(s.n), static_cast<long long>(s.k), errors[0], errors[1],
            errors[2], errors[3], errors[4]);
      }
    }
  }
}

// A batch-1 decode step's LayerNorm + QKV projection + attention over a KV cache, laid out as
// Gpt2Model lays it out (q, k, v in one qkv row; the cache [capacity, 2 hidden], K then V).
struct QkvAttentionCase {
  std::int64_t hidden, capacity;
  std::int32_t slot;  // where this step's k and v go (past the end: nowhere)
};

struct QkvAttentionResult {
  HostTensor out, cache;
};

// A decode step's attention as Gpt2Model asks for it at batch 1: q, k and v in one qkv row
// [1, 3E], the cache [capacity, 2E] (K then V), this step's k and v appended at *slot, heads of
// 64, the output into `out` [1, E].
AttentionArgs decode_step_attention(DType act, std::int64_t e, std::int64_t capacity,
                                    const DeviceTensor& qkv, const DeviceTensor& cache,
                                    const DeviceTensor& out, const DeviceTensor& mask,
                                    const DeviceTensor& slot) {
  const std::size_t element = dtype_size(act);
  char* q = static_cast<char*>(qkv.data);
  AttentionArgs a;
  a.q = q;
  a.k = cache.data;
  a.v = static_cast<char*>(cache.data) + e * element;
  a.out = out.data;
  a.q_batch_stride = a.q_row_stride = 3 * e;
  a.kv_batch_stride = capacity * 2 * e;
  a.kv_row_stride = 2 * e;
  a.out_batch_stride = a.out_row_stride = e;
  a.key_mask = static_cast<const std::int32_t*>(mask.data);
  a.mask_batch_stride = capacity;
  a.batch = 1;
  a.q_len = 1;
  a.kv_len = capacity;
  a.heads = e / 64;
  a.head_dim = 64;
  a.scale = 0.125f;
  a.append_k = q + e * element;
  a.append_v = q + 2 * e * element;
  a.append_batch_stride = 3 * e;
  a.append_slot = static_cast<const std::int32_t*>(slot.data);
  return a;
}

QkvAttentionResult run_qkv_attention(Backend& backend, const QkvAttentionCase& c,
                                     const HostTensor& w, const HostTensor& bias,
                                     const HostTensor& x, const HostTensor& gamma,
                                     const HostTensor& beta, const HostTensor& cache,
                                     const HostTensor& mask) {
  const DType act = backend.activation_dtype();
  const std::int64_t e = c.hidden;
  LinearOptions options;
  options.name = "test.c_attn";
  const std::unique_ptr<LinearWeights> layer = backend.prepare_linear(w, &bias, options);
  DeviceTensor dx = backend.upload(x, act), dcache = backend.upload(cache, act);
  DeviceTensor dgamma = backend.upload(gamma, DType::F32), dbeta = backend.upload(beta, DType::F32);
  DeviceTensor dmask = backend.upload(mask, DType::I32);
  DeviceTensor slot = backend.upload(HostTensor::from_i32({1}, {c.slot}), DType::I32);
  DeviceTensor normed = backend.allocate(act, {1, e}), qkv = backend.allocate(act, {1, 3 * e});
  DeviceTensor out = backend.allocate(act, {1, e});
  const AttentionArgs a = decode_step_attention(act, e, c.capacity, qkv, dcache, out, dmask, slot);
  backend.layer_norm_linear_attention(dx, dgamma, dbeta, 1e-5f, normed, *layer, qkv, a);
  QkvAttentionResult r{backend.download(out), backend.download(dcache)};
#ifdef EAQ_HAVE_CUDA
  if (backend.is_cuda()) {
    // The shapes here are the kernel's: the test fails rather than pass on the two-op fallback.
    cuda::QkvAttentionArgs k;
    k.x = dx.data;
    k.ln_gamma = static_cast<const float*>(dgamma.data);
    k.ln_beta = static_cast<const float*>(dbeta.data);
    k.w = dx.data;  // the layer's own buffer is opaque here; any 16-byte aligned one will do
    k.cache = dcache.data;
    k.key_mask = a.key_mask;
    k.slot = a.append_slot;
    k.hidden = e;
    k.heads = a.heads;
    k.capacity = c.capacity;
    EXPECT_TRUE(cuda::qkv_attention_eligible(act, k)) << "hidden " << e;
  }
#endif
  for (DeviceTensor* t : {&dx, &dcache, &dgamma, &dbeta, &dmask, &slot, &normed, &qkv, &out}) {
    backend.release(*t);
  }
  return r;
}

// The one-kernel form (CUDA, qkv_attention.cu) against the CPU's two ops, the GPU's own two
// ops (EAQ_FUSED_QKV_ATTENTION=0), itself with x read by every warp (EAQ_STAGE_X=0), with the
// rows' sums one at a time (EAQ_SHARED_SHUFFLES=0; these two the same bits) and with the softmax
// reduced over the block (EAQ_WARP_SOFTMAX=0): the
// attention output, and the cache, whose slot row gets this step's k and v (the same bits as the
// two ops' on the row kernel, EAQ_SPLIT_ROW_GEMV=0, whose projection sums in the same order; the
// split kernel sums k's quarters apart) while every other row stays as it was. Caches of 37 to 1000
// rows, the slot in different blocks' chunks and past the end, a mask with holes.
TEST(CudaFusedOps, LayerNormQkvAttentionMatchesTheCpusTwoOps) {
  const QkvAttentionCase cases[] = {{768, 384, 200}, {768, 1000, 999}, {768, 384, 0},
                                    {256, 37, 5},    {256, 37, 37},    {128, 9, 8}};
  for (Precision precision : {Precision::Fp16, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto cpu = make_cpu_backend(Precision::Fp32);
    const DType act = gpu->activation_dtype();
    for (const QkvAttentionCase& c : cases) {
      const std::int64_t e = c.hidden;
      const float w_scale = 1.0f / std::sqrt(static_cast<float>(e));
      const HostTensor w = test::rounded_to(test::random_f32({3 * e, e}, 61, w_scale), act);
      const HostTensor bias = test::rounded_to(test::random_f32({3 * e}, 62, 0.5f), act);
      const HostTensor x = test::rounded_to(test::random_f32({1, e}, 63, 3.0f), act);
      const HostTensor gamma = test::random_f32({e}, 64, 1.0f);
      const HostTensor beta = test::random_f32({e}, 65, 0.2f);
      const HostTensor cache =
          test::rounded_to(test::random_f32({c.capacity, 2 * e}, 66, 2.0f), act);
      std::vector<std::int32_t> m(static_cast<std::size_t>(c.capacity));
      for (std::size_t j = 0; j < m.size(); ++j) m[j] = j % 7 == 3 ? 0 : 1;
      if (c.slot < c.capacity) m[static_cast<std::size_t>(c.slot)] = 1;  // as mark_cache_slot
      const HostTensor mask = HostTensor::from_i32({c.capacity}, m);
      const auto run = [&](Backend& b) {
        return run_qkv_attention(b, c, w, bias, x, gamma, beta, cache, mask);
      };
      const QkvAttentionResult want = run(*cpu);
      const QkvAttentionResult fused = run(*gpu);
      const QkvAttentionResult two_ops = [&] {
        const test::ScopedEnv two("EAQ_FUSED_QKV_ATTENTION", "0");
        const test::ScopedEnv row_kernel("EAQ_SPLIT_ROW_GEMV", "0");
        return run(*gpu);
      }();
      const QkvAttentionResult x_every_warp = [&] {
        const test::ScopedEnv warp_loads("EAQ_STAGE_X", "0");
        return run(*gpu);
      }();
      const QkvAttentionResult one_at_a_time = [&] {
        const test::ScopedEnv shuffles("EAQ_SHARED_SHUFFLES", "0");
        return run(*gpu);
      }();
      const QkvAttentionResult block_softmax = [&] {
        const test::ScopedEnv block_reductions("EAQ_WARP_SOFTMAX", "0");
        return run(*gpu);
      }();
      const std::string where = std::string(precision_name(precision)) + " hidden " +
                                std::to_string(e) + " capacity " + std::to_string(c.capacity) +
                                " slot " + std::to_string(c.slot);
      const double out_error = test::max_relative_error(fused.out, want.out);
      EXPECT_LE(out_error, tolerance_for(act)) << where;
      EXPECT_LE(test::max_relative_error(fused.out, two_ops.out), tolerance_for(act)) << where;
      EXPECT_LE(test::max_relative_error(fused.cache, want.cache), tolerance_for(act)) << where;
      EXPECT_EQ(max_abs_difference(fused.cache, two_ops.cache), 0.0) << where;
      // x read once a block or by every warp: the same values, the same bits.
      EXPECT_EQ(max_abs_difference(fused.out, x_every_warp.out), 0.0) << where << " EAQ_STAGE_X=0";
      // The rows' sums one at a time: the same bits.
      EXPECT_EQ(max_abs_difference(fused.out, one_at_a_time.out), 0.0)
          << where << " EAQ_SHARED_SHUFFLES=0";
      EXPECT_EQ(max_abs_difference(fused.cache, one_at_a_time.cache), 0.0)
          << where << " EAQ_SHARED_SHUFFLES=0";
      EXPECT_EQ(max_abs_difference(fused.cache, x_every_warp.cache), 0.0)
          << where << " EAQ_STAGE_X=0";
      // The attention's softmax by warps or by the whole block: the same cache, outputs within
      // the precision's rounding of each other (the sums run in another order).
      EXPECT_EQ(max_abs_difference(fused.cache, block_softmax.cache), 0.0) << where;
      EXPECT_LE(test::max_relative_error(block_softmax.out, want.out), tolerance_for(act)) << where;
      EXPECT_LE(test::max_relative_error(fused.out, block_softmax.out), tolerance_for(act))
          << where << " EAQ_WARP_SOFTMAX=0";
      // Rows other than the slot are the input's.
      const float* got = fused.cache.data<float>();
      const HostTensor before = cache.to_f32();
      std::int64_t changed = 0;
      for (std::int64_t j = 0; j < c.capacity; ++j) {
        if (j == c.slot) continue;
        for (std::int64_t col = 0; col < 2 * e; ++col) {
          changed += got[j * 2 * e + col] != before.data<float>()[j * 2 * e + col];
        }
      }
      EXPECT_EQ(changed, 0) << where;
      std::printf(
          "[ fused     ] %-5s ln+qkv+attention hidden %4lld capacity %4lld slot %4d  out %.1e\n",
          std::string(precision_name(precision)).c_str(), static_cast<long long>(e),
          static_cast<long long>(c.capacity), c.slot, out_error);
    }
  }
}

// A batch-1 decode step's layer with its attention projection left pending (CUDA: folded into
// qkv_attention.cu's kernel, finished by c_fc's split-row GEMV, the sum zeroed by the MLP
// projection's) against the CPU's unfused ops, laid out as Gpt2Model lays them out.
struct AttentionBlockCase {
  std::int64_t hidden, inner, capacity;
  std::int32_t slot;
};

struct AttentionBlockResult {
  HostTensor finished, ffn, hidden;   // x + attention block, the MLP's activation, the layer's row
  std::vector<std::int64_t> pending;  // the sum after the layer (pending form)
};

AttentionBlockResult run_attention_block(Backend& backend, const AttentionBlockCase& c,
                                         bool left_pending, unsigned seed) {
  const DType act = backend.activation_dtype();
  const std::int64_t e = c.hidden, inner = c.inner;
  const auto weights = [&](std::int64_t out, std::int64_t in, unsigned s, const char* name) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(in));
    const HostTensor w = test::rounded_to(test::random_f32({out, in}, seed + s, scale), act);
    const HostTensor b = test::rounded_to(test::random_f32({out}, seed + s + 1, 0.5f), act);
    LinearOptions options;
    options.name = name;
    return backend.prepare_linear(w, &b, options);
  };
  const auto c_attn = weights(3 * e, e, 1, "test.c_attn");
  const auto proj = weights(e, e, 3, "test.attn_proj");
  const auto c_fc = weights(inner, e, 5, "test.c_fc");
  const auto mlp_proj = weights(e, inner, 7, "test.mlp_proj");
  const auto upload_f32 = [&](Shape shape, unsigned s, float scale, float offset) {
    HostTensor t = test::random_f32(shape, seed + s, scale);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.mutable_data<float>()[i] += offset;
    return backend.upload(t, DType::F32);
  };
  DeviceTensor dx =
      backend.upload(test::rounded_to(test::random_f32({1, e}, seed + 9, 3.0f), act), act);
  DeviceTensor g1 = upload_f32({e}, 10, 0.2f, 1.0f), b1 = upload_f32({e}, 11, 0.2f, 0.0f);
  DeviceTensor g2 = upload_f32({e}, 12, 0.2f, 1.0f), b2 = upload_f32({e}, 13, 0.2f, 0.0f);
  DeviceTensor dcache = backend.upload(
      test::rounded_to(test::random_f32({c.capacity, 2 * e}, seed + 14, 2.0f), act), act);
  std::vector<std::int32_t> m(static_cast<std::size_t>(c.capacity));
  for (std::size_t j = 0; j < m.size(); ++j) m[j] = j % 5 == 2 ? 0 : 1;
  if (c.slot < c.capacity) m[static_cast<std::size_t>(c.slot)] = 1;
  DeviceTensor dmask = backend.upload(HostTensor::from_i32({c.capacity}, m), DType::I32);
  DeviceTensor slot = backend.upload(HostTensor::from_i32({1}, {c.slot}), DType::I32);
  DeviceTensor normed = backend.allocate(act, {1, e}), qkv = backend.allocate(act, {1, 3 * e});
  DeviceTensor context = backend.allocate(act, {1, e}), finished = backend.allocate(act, {1, e});
  DeviceTensor scratch = backend.allocate(act, {1, e}), ffn = backend.allocate(act, {1, inner});
  DeviceTensor pending =
      backend.upload(HostTensor::empty(DType::I64, Backend::pending_residual_shape(e)), DType::I64);
  const AttentionArgs a =
      decode_step_attention(act, e, c.capacity, qkv, dcache, context, dmask, slot);
  const float eps = 1e-5f;
#ifdef EAQ_HAVE_CUDA
  if (left_pending && backend.is_cuda()) {
    // The shapes here are the folded kernel's: the test fails rather than pass on the fallback.
    cuda::QkvAttentionArgs k;
    k.x = dx.data;
    k.ln_gamma = static_cast<const float*>(g1.data);
    k.ln_beta = static_cast<const float*>(b1.data);
    k.w = k.proj_w = dx.data;  // the layers' own buffers are opaque here; any aligned one will do
    k.cache = dcache.data;
    k.key_mask = a.key_mask;
    k.slot = a.append_slot;
    k.out = context.data;
    k.proj_pending = static_cast<long long*>(pending.data);
    k.hidden = e;
    k.heads = a.heads;
    k.capacity = c.capacity;
    EXPECT_TRUE(cuda::qkv_attention_eligible(act, k)) << "hidden " << e;
  }
#endif
  if (left_pending) {
    backend.layer_norm_attention_pending(dx, g1, b1, eps, normed, *c_attn, qkv, a, *proj, pending);
    backend.layer_norm_linear_pending(dx, pending, finished, g2, b2, eps, normed, *c_fc,
                                      Activation::GeluTanh, ffn);
    backend.linear_residual_zeroing(ffn, *mlp_proj, finished, scratch, dx, pending);
  } else {
    backend.layer_norm_linear_attention(dx, g1, b1, eps, normed, *c_attn, qkv, a);
    backend.linear_residual(context, *proj, dx, scratch, finished);
    backend.layer_norm_linear(finished, nullptr, g2, b2, eps, normed, *c_fc, Activation::GeluTanh,
                              ffn);
    backend.linear_residual(ffn, *mlp_proj, finished, scratch, dx);
  }
  AttentionBlockResult r{backend.download(finished).to_f32(), backend.download(ffn).to_f32(),
                         backend.download(dx).to_f32(), backend.download(pending).to_i64()};
  for (DeviceTensor* t : {&dx, &g1, &b1, &g2, &b2, &dcache, &dmask, &slot, &normed, &qkv, &context,
                          &finished, &scratch, &ffn, &pending}) {
    backend.release(*t);
  }
  return r;
}

// The layer with its attention projection left pending (opt-in: EAQ_ATTENTION_PENDING=1; off by
// default, the backend says it cannot) against the CPU's unfused ops: the row
// after the attention block (which c_fc's kernel finishes), the MLP's activation and the layer's
// output, the sum zero again afterwards, and the same bits run to run (the fixed-point sum does
// not depend on the order of the atomics). Also its fallbacks: the attention block as two kernels
// (EAQ_FUSED_QKV_ATTENTION=0) and the GEMVs on the row kernel (EAQ_SPLIT_ROW_GEMV=0).
TEST(CudaFusedOps, AttentionBlockLeftPendingMatchesTheCpusOps) {
  const test::ScopedEnv fold("EAQ_ATTENTION_PENDING", "1");  // opt-in
  const AttentionBlockCase cases[] = {
      {768, 3072, 200, 150}, {768, 1536, 1000, 999}, {256, 1024, 37, 5}, {128, 256, 9, 8}};
  auto cpu = make_cpu_backend(Precision::Fp32);
  for (Precision precision : {Precision::Fp16, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    const DType act = gpu->activation_dtype();
    for (const AttentionBlockCase& c : cases) {
      const std::string where = std::string(precision_name(precision)) + " hidden " +
                                std::to_string(c.hidden) + " inner " + std::to_string(c.inner) +
                                " capacity " + std::to_string(c.capacity);
      DeviceTensor row = gpu->allocate(act, {1, c.hidden});
      LinearOptions options;
      const HostTensor square = HostTensor::empty(DType::F32, {c.hidden, c.hidden});
      const auto layer = gpu->prepare_linear(square, nullptr, options);
      EXPECT_TRUE(gpu->can_leave_attention_pending(row, *layer, *layer)) << where;
      {
        const test::ScopedEnv by_default("EAQ_ATTENTION_PENDING", nullptr);
        EXPECT_FALSE(gpu->can_leave_attention_pending(row, *layer, *layer)) << where;
      }
      gpu->release(row);
      const AttentionBlockResult want = run_attention_block(*cpu, c, false, 80);
      const AttentionBlockResult got = run_attention_block(*gpu, c, true, 80);
      const AttentionBlockResult again = run_attention_block(*gpu, c, true, 80);
      const AttentionBlockResult two_kernels = [&] {
        const test::ScopedEnv two("EAQ_FUSED_QKV_ATTENTION", "0");
        const test::ScopedEnv row_kernel("EAQ_SPLIT_ROW_GEMV", "0");
        return run_attention_block(*gpu, c, true, 80);
      }();
      const std::vector<std::int64_t> zero(static_cast<std::size_t>(c.hidden + 1), 0);
      for (const AttentionBlockResult* r : {&got, &two_kernels}) {
        const char* form = r == &got ? "one kernel" : "fallback";
        EXPECT_LE(test::max_relative_error(r->finished, want.finished), tolerance_for(act))
            << where << " " << form;
        EXPECT_LE(test::max_relative_error(r->ffn, want.ffn), tolerance_for(act))
            << where << " " << form;
        EXPECT_LE(test::max_relative_error(r->hidden, want.hidden), tolerance_for(act))
            << where << " " << form;
        EXPECT_EQ(r->pending, zero) << where << " " << form;
      }
      EXPECT_EQ(max_abs_difference(got.hidden, again.hidden), 0.0) << where << ": run to run";
      EXPECT_EQ(max_abs_difference(got.finished, again.finished), 0.0) << where << ": run to run";
      std::printf(
          "[ fused     ] %-5s attention block left pending, hidden %3lld inner %4lld capacity "
          "%4lld  finished %.1e  layer %.1e (fallback %.1e)\n",
          std::string(precision_name(precision)).c_str(), static_cast<long long>(c.hidden),
          static_cast<long long>(c.inner), static_cast<long long>(c.capacity),
          test::max_relative_error(got.finished, want.finished),
          test::max_relative_error(got.hidden, want.hidden),
          test::max_relative_error(two_kernels.hidden, want.hidden));
    }
  }
}

// A decode step's first op (start_decode_step: key mask, token and embedding in one kernel)
// against the CPU's three ops and the GPU's three ops (EAQ_STEP_START_KERNEL=0), with the slot
// at both ends of the cache and past it; then the counters' increment, which now waits for the
// kernel before it under dependent launch.
TEST(CudaFusedOps, StartDecodeStepMatchesTheThreeOps) {
  for (Precision precision : {Precision::Fp16, Precision::Bf16, Precision::Fp32}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto cpu = make_cpu_backend(Precision::Fp32);
    const DType act = gpu->activation_dtype();
    const std::int64_t batch = 3, capacity = 12, vocab = 50, positions = 20;
    for (const std::int64_t e : {768, 100}) {
      const HostTensor word = test::rounded_to(test::random_f32({vocab, e}, 71, 1.0f), act);
      const HostTensor position = test::rounded_to(test::random_f32({positions, e}, 72, 1.0f), act);
      std::vector<std::int32_t> mask(batch * capacity), tokens(batch * capacity, -1);
      for (std::size_t j = 0; j < mask.size(); ++j) mask[j] = j % 5 == 1 ? 1 : 0;
      for (const std::int32_t slot : {0, 5, 11, 12}) {
        struct Result {
          HostTensor key_mask, tokens, hidden, counters;
        };
        const auto run = [&](Backend& b, DType table_dtype) {
          DeviceTensor ids = b.upload(HostTensor::from_i32({batch}, {7, 0, 49}), DType::I32);
          DeviceTensor counters =
              b.upload(HostTensor::from_i32({1 + batch}, {slot, 3, 19, 0}), DType::I32);
          DeviceTensor key_mask =
              b.upload(HostTensor::from_i32({batch, capacity}, mask), DType::I32);
          DeviceTensor token_ids =
              b.upload(HostTensor::from_i32({batch, capacity}, tokens), DType::I32);
          DeviceTensor word_table = b.upload(word, table_dtype);
          DeviceTensor position_table = b.upload(position, table_dtype);
          DeviceTensor hidden = b.allocate(table_dtype, {batch, e});
          const DeviceTensor slot_view = counters.rows(0, 1);
          const DeviceTensor position_ids = counters.rows(1, batch);
          DecodeStart start;
          start.ids = &ids;
          start.slot = &slot_view;
          start.key_mask = &key_mask;
          start.tokens = &token_ids;
          start.word_table = &word_table;
          start.positions = &position_ids;
          start.position_table = &position_table;
          start.hidden = &hidden;
          b.start_decode_step(start);
          b.increment(counters);
          Result r{b.download(key_mask), b.download(token_ids), b.download(hidden).to_f32(),
                   b.download(counters)};
          for (DeviceTensor* t :
               {&ids, &counters, &key_mask, &token_ids, &word_table, &position_table, &hidden}) {
            b.release(*t);
          }
          return r;
        };
        const Result want = run(*cpu, DType::F32);
        const Result fused = run(*gpu, act);
        const Result three_ops = [&] {
          const test::ScopedEnv three("EAQ_STEP_START_KERNEL", "0");
          return run(*gpu, act);
        }();
        const std::string where = std::string(precision_name(precision)) + " width " +
                                  std::to_string(e) + " slot " + std::to_string(slot);
        for (const Result* got : {&fused, &three_ops}) {
          EXPECT_EQ(got->key_mask.to_i64(), want.key_mask.to_i64()) << where;
          EXPECT_EQ(got->tokens.to_i64(), want.tokens.to_i64()) << where;
          EXPECT_EQ(got->counters.to_i64(), want.counters.to_i64()) << where;
        }
        EXPECT_LE(test::max_relative_error(fused.hidden, want.hidden), tolerance_for(act)) << where;
        EXPECT_EQ(max_abs_difference(fused.hidden, three_ops.hidden), 0.0) << where;
        // The slot's column got the mark and the token; no other column changed.
        if (slot < capacity) {
          EXPECT_EQ(want.tokens.to_i64()[static_cast<std::size_t>(capacity + slot)], 0) << where;
          EXPECT_EQ(want.key_mask.to_i64()[static_cast<std::size_t>(2 * capacity + slot)], 1)
              << where;
        }
        EXPECT_EQ(want.counters.to_i64(), (std::vector<std::int64_t>{slot + 1, 4, 20, 1})) << where;
      }
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

// One vocabulary row (a decode step at batch 1): the first of tied maxima wins (inside a chunk and
// across chunks), a maximum in the last columns, a row of -inf only.
TEST(CudaFusedOps, OneRowArgmaxMatchesTheCpu) {
  for (Precision precision : {Precision::Fp16, Precision::Bf16, Precision::Fp32}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto cpu = make_cpu_backend(Precision::Fp32);
    const DType act = gpu->activation_dtype();
    const std::int64_t cols = 50257;
    const std::vector<std::vector<std::int64_t>> maxima = {
        {40000, 100, 30000}, {50255}, {50256}, {5, 1029, 8197}, {}};
    for (std::size_t k = 0; k < maxima.size(); ++k) {
      HostTensor logits = test::rounded_to(test::random_f32({1, cols}, 41 + k, 4.0f), act);
      float* v = logits.mutable_data<float>();
      if (maxima[k].empty()) {
        for (std::int64_t c = 0; c < cols; ++c) v[c] = -INFINITY;
      }
      for (std::int64_t c : maxima[k]) v[c] = 9.0f;
      DeviceTensor d_cpu = cpu->upload(logits, DType::F32), d_gpu = gpu->upload(logits, act);
      DeviceTensor out_cpu = cpu->allocate(DType::I32, {1});
      DeviceTensor out_gpu = gpu->upload(HostTensor::from_i32({1}, {-7}), DType::I32);
      cpu->argmax_rows(d_cpu, out_cpu);
      gpu->argmax_rows(d_gpu, out_gpu);
      const std::int32_t want = cpu->download(out_cpu).data<std::int32_t>()[0];
      const std::int32_t got = gpu->download(out_gpu).data<std::int32_t>()[0];
      EXPECT_EQ(got, want) << "case " << k << ", " << precision_name(precision);
      const std::int64_t expected_column =
          maxima[k].empty() ? 0 : *std::min_element(maxima[k].begin(), maxima[k].end());
      EXPECT_EQ(want, expected_column) << "case " << k;
      for (DeviceTensor* t : {&d_cpu, &out_cpu}) cpu->release(*t);
      for (DeviceTensor* t : {&d_gpu, &out_gpu}) gpu->release(*t);
    }
  }
}

}  // namespace
}  // namespace eaq
