// CUDA attention kernels against the CPU reference (cpu_kernels.cpp attention_f32), on inputs
// rounded to the GPU dtype first so only the kernel's own error is measured.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cpu/cpu_backend.hpp"
#include "cuda_test_util.hpp"
#include "golden.hpp"
#include "test_util.hpp"

#ifdef EAQ_HAVE_CUDA
#include "backend/cuda/kernels.hpp"
#endif

namespace eaq {
namespace {

struct AttentionCase {
  const char* name;
  int batch, q_len, kv_len, heads, head_dim;
  bool causal, padded, cache_layout;
  // Decode with append: the key/value row at kv_len / 2 comes from separate "new row" buffers
  // (the cache holds garbage there) and must end up in the cache.
  bool append = false;
};

// Runs one attention case on `backend` with buffers laid out as the models use them: fused QKV
// rows for prefill, or separate K/V caches of capacity kv_len + 5 for decode-like cases.
// `kernel` null: the backend's choice; else that kernel alone ("simple", "wmma", "prefill", "mma"),
// or an empty tensor when it cannot run these arguments.
HostTensor run_case(Backend& backend, const AttentionCase& c, const HostTensor& q,
                    const HostTensor& k, const HostTensor& v, const HostTensor& mask,
                    const char* kernel) {
  const DType act = backend.activation_dtype();
  const std::int64_t hidden = c.heads * c.head_dim;
  const std::int64_t capacity = c.cache_layout ? c.kv_len + 5 : c.kv_len;
  // K/V in a cache of `capacity` rows per batch (the first kv_len used).
  HostTensor k_cache = HostTensor::empty(DType::F32, {c.batch, capacity, hidden});
  HostTensor v_cache = HostTensor::empty(DType::F32, {c.batch, capacity, hidden});
  for (int b = 0; b < c.batch; ++b) {
    for (int j = 0; j < c.kv_len; ++j) {
      for (std::int64_t d = 0; d < hidden; ++d) {
        k_cache.mutable_data<float>()[(b * capacity + j) * hidden + d] =
            k.data<float>()[(b * c.kv_len + j) * hidden + d];
        v_cache.mutable_data<float>()[(b * capacity + j) * hidden + d] =
            v.data<float>()[(b * c.kv_len + j) * hidden + d];
      }
    }
  }
  const std::int64_t slot = c.kv_len / 2;
  HostTensor k_new = HostTensor::empty(DType::F32, {c.batch, hidden});
  HostTensor v_new = HostTensor::empty(DType::F32, {c.batch, hidden});
  if (c.append) {
    for (int b = 0; b < c.batch; ++b) {
      for (std::int64_t d = 0; d < hidden; ++d) {
        float& kc = k_cache.mutable_data<float>()[(b * capacity + slot) * hidden + d];
        float& vc = v_cache.mutable_data<float>()[(b * capacity + slot) * hidden + d];
        k_new.mutable_data<float>()[b * hidden + d] = kc;
        v_new.mutable_data<float>()[b * hidden + d] = vc;
        kc = vc = 100.0f;  // would dominate the result if the cache row were read
      }
    }
  }
  DeviceTensor dq = backend.upload(q, act), dk = backend.upload(k_cache, act),
               dv = backend.upload(v_cache, act), dmask = backend.upload(mask, DType::I32);
  DeviceTensor dk_new = backend.upload(k_new, act), dv_new = backend.upload(v_new, act);
  DeviceTensor dslot =
      backend.upload(HostTensor::from_i32({1}, {static_cast<std::int32_t>(slot)}), DType::I32);
  DeviceTensor out = backend.upload(HostTensor::empty(DType::F32, {c.batch, c.q_len, hidden}), act);
  AttentionArgs a;
  a.q = dq.data;
  a.k = dk.data;
  a.v = dv.data;
  a.out = out.data;
  a.q_batch_stride = c.q_len * hidden;
  a.q_row_stride = hidden;
  a.kv_batch_stride = capacity * hidden;
  a.kv_row_stride = hidden;
  a.out_batch_stride = c.q_len * hidden;
  a.out_row_stride = hidden;
  a.key_mask = c.padded ? static_cast<const std::int32_t*>(dmask.data) : nullptr;
  a.mask_batch_stride = c.kv_len;
  a.batch = c.batch;
  a.q_len = c.q_len;
  a.kv_len = c.kv_len;
  a.heads = c.heads;
  a.head_dim = c.head_dim;
  a.q_position_offset = c.kv_len - c.q_len;
  a.causal = c.causal;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  if (c.append) {
    a.append_k = dk_new.data;
    a.append_v = dv_new.data;
    a.append_batch_stride = hidden;
    a.append_slot = static_cast<const std::int32_t*>(dslot.data);
  }
  // Prompts (q_len == kv_len, no cache) also store their K/V rows into a cache of kv_len + 3 rows
  // per batch, whose last rows must keep their sentinel.
  // (Not with the simple kernel launched alone: the store is launch_attention_kernel's.)
  const bool store = c.q_len == c.kv_len && !c.cache_layout && !c.append &&
                     (kernel == nullptr || std::string(kernel) != "simple");
  const std::int64_t store_rows = c.kv_len + 3;
  const HostTensor sentinel = HostTensor::from_f32(
      {c.batch, store_rows, hidden},
      std::vector<float>(static_cast<std::size_t>(c.batch * store_rows * hidden), -7.0f));
  DeviceTensor store_k = backend.upload(sentinel, act), store_v = backend.upload(sentinel, act);
  if (store) {
    a.store_k = store_k.data;
    a.store_v = store_v.data;
    a.store_batch_stride = store_rows * hidden;
    a.store_row_stride = hidden;
  }
  bool ran = true;
#ifdef EAQ_HAVE_CUDA
  const std::string named = kernel ? kernel : "";
  if (named == "simple" && backend.is_cuda()) {
    cuda::launch_attention_simple(act, a, nullptr);  // legacy stream: synchronizes below
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  } else if (!named.empty() && backend.is_cuda()) {
    ran = named == "wmma"  ? cuda::attention_tensor_core_eligible(act, a)
          : named == "mma" ? cuda::attention_prefill_mma_eligible(act, a)
                           : cuda::attention_prefill_eligible(act, a);
    if (ran) {
      cuda::launch_attention_kernel(act, a, cuda::SplitScratch{}, kernel, nullptr);
      EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    }
  } else {
    backend.attention(a);
  }
#else
  (void)kernel;
  backend.attention(a);
#endif
  HostTensor result = ran ? backend.download(out) : HostTensor();
  if (c.append) {
    // The new rows are in the cache now, bit for bit.
    const HostTensor k_after = backend.download(dk), v_after = backend.download(dv);
    const HostTensor k_expected = backend.download(dk_new), v_expected = backend.download(dv_new);
    int wrong = 0;
    for (int b = 0; b < c.batch; ++b) {
      for (std::int64_t d = 0; d < hidden; ++d) {
        const std::int64_t at = (b * capacity + slot) * hidden + d;
        wrong += k_after.data<float>()[at] != k_expected.data<float>()[b * hidden + d];
        wrong += v_after.data<float>()[at] != v_expected.data<float>()[b * hidden + d];
      }
    }
    EXPECT_EQ(wrong, 0) << c.name << ": cache row " << slot << " after the append on "
                        << backend.name();
  }
  if (store && ran) {
    // Rows [0, kv_len) of the store are K and V bit for bit; the rows after keep the sentinel.
    const HostTensor k_in = backend.download(dk), v_in = backend.download(dv);
    const HostTensor k_out = backend.download(store_k), v_out = backend.download(store_v);
    int wrong = 0;
    for (int b = 0; b < c.batch; ++b) {
      for (std::int64_t j = 0; j < store_rows; ++j) {
        for (std::int64_t d = 0; d < hidden; ++d) {
          const std::int64_t at = (b * store_rows + j) * hidden + d;
          const std::int64_t from = (b * capacity + j) * hidden + d;
          const float want_k = j < c.kv_len ? k_in.data<float>()[from] : -7.0f;
          const float want_v = j < c.kv_len ? v_in.data<float>()[from] : -7.0f;
          wrong += k_out.data<float>()[at] != want_k;
          wrong += v_out.data<float>()[at] != want_v;
        }
      }
    }
    EXPECT_EQ(wrong, 0) << c.name << ": stored K/V rows with kernel "
                        << (kernel ? kernel : "(chosen)") << " on " << backend.name();
  }
  for (DeviceTensor* t :
       {&dq, &dk, &dv, &dmask, &out, &dk_new, &dv_new, &dslot, &store_k, &store_v}) {
    backend.release(*t);
  }
  return result;
}

class CudaAttention : public ::testing::TestWithParam<AttentionCase> {};

TEST_P(CudaAttention, MatchesCpuReference) {
  const AttentionCase& c = GetParam();
  for (Precision precision : {Precision::Fp16, Precision::Bf16, Precision::Fp32}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    const DType act = gpu->activation_dtype();
    const std::int64_t hidden = c.heads * c.head_dim;
    const HostTensor q =
        test::rounded_to(test::random_f32({c.batch, c.q_len, hidden}, 11, 2.0f), act);
    const HostTensor k =
        test::rounded_to(test::random_f32({c.batch, c.kv_len, hidden}, 12, 2.0f), act);
    const HostTensor v =
        test::rounded_to(test::random_f32({c.batch, c.kv_len, hidden}, 13, 1.0f), act);
    std::vector<std::int32_t> mask_values(static_cast<std::size_t>(c.batch * c.kv_len), 1);
    for (int b = 0; b < c.batch; ++b) {  // batch b has its last 3*b keys padded
      for (int j = c.kv_len - 3 * b; j < c.kv_len; ++j) {
        if (j >= 0) mask_values[b * c.kv_len + j] = 0;
      }
    }
    const HostTensor mask = HostTensor::from_i32({c.batch, c.kv_len}, mask_values);
    auto cpu = make_cpu_backend(Precision::Fp32);
    const HostTensor expected = run_case(*cpu, c, q, k, v, mask, nullptr);
    const HostTensor fast = run_case(*gpu, c, q, k, v, mask, nullptr);
    // The simple kernel alone knows nothing of appends (launch_attention does them first).
    const HostTensor simple = c.append ? expected : run_case(*gpu, c, q, k, v, mask, "simple");
    const double tolerance = act == DType::F32 ? 1e-5 : act == DType::F16 ? 4e-3 : 3e-2;
    const double fast_error = test::max_relative_error(fast, expected);
    const double simple_error = test::max_relative_error(simple, expected);
    EXPECT_LE(fast_error, tolerance) << c.name << " " << precision_name(precision);
    EXPECT_LE(simple_error, tolerance) << c.name << " simple " << precision_name(precision);
    std::printf("[ attention ] %-26s %-5s launch=%.2e simple=%.2e", c.name,
                std::string(precision_name(precision)).c_str(), fast_error, simple_error);
    // The three tensor-core prefill kernels, each alone, wherever it can run (launch picks one).
    for (const char* kernel : {"wmma", "prefill", "mma"}) {
      if (c.append || act == DType::F32) break;
      const HostTensor alone = run_case(*gpu, c, q, k, v, mask, kernel);
      if (!alone.has_data()) continue;
      const double error = test::max_relative_error(alone, expected);
      EXPECT_LE(error, tolerance) << c.name << " " << kernel << " " << precision_name(precision);
      std::printf(" %s=%.2e", kernel, error);
    }
    std::printf("\n");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaAttention,
    ::testing::Values(
        AttentionCase{"encoder_128_padded", 3, 128, 128, 4, 64, false, true, false},
        AttentionCase{"encoder_200_dh32", 2, 200, 200, 2, 32, false, true, false},
        AttentionCase{"encoder_77_dh128", 2, 77, 77, 2, 128, false, true, false},
        AttentionCase{"prefill_causal_256", 2, 256, 256, 3, 64, true, true, false},
        AttentionCase{"prefill_causal_1024", 1, 1024, 1024, 2, 64, true, false, false},
        AttentionCase{"chunk_with_cache", 2, 32, 96, 2, 64, true, true, true},
        AttentionCase{"decode_step", 3, 1, 77, 4, 64, true, true, true},
        // Decode with 16-byte pieces: teams of 16 (f16) / 32 (f32) threads per key.
        AttentionCase{"decode_dh128_kv300", 2, 1, 300, 2, 128, true, true, true},
        AttentionCase{"decode_4q_dh32", 2, 4, 50, 3, 32, true, true, true},
        // GPT-2 124M's decode at batch 1: the cache split over many blocks, with
        // this step's K/V appended by the kernel; batch 2 of a long cache; appends
        // on the scalar and f32 paths.
        AttentionCase{"decode_split_kv384_append", 1, 1, 384, 12, 64, true, false, true, true},
        AttentionCase{"decode_split_kv1000_b2", 2, 1, 1000, 4, 64, true, true, true},
        AttentionCase{"decode_split_4q_append", 1, 4, 700, 2, 64, true, true, true, true},
        AttentionCase{"decode_dh24_append", 2, 1, 45, 2, 24, true, true, true, true},
        // 24 = 3 pieces of 8 halves: not a power of two, the scalar decode kernel.
        AttentionCase{"decode_dh24_scalar", 2, 1, 45, 2, 24, true, true, true},
        AttentionCase{"odd_head_dim", 2, 20, 20, 4, 8, false, true, false},
        AttentionCase{"grouped_dh24_causal", 3, 40, 40, 2, 24, true, true, false},
        AttentionCase{"grouped_chunk_cache_dh96", 2, 33, 70, 2, 96, true, true, true},
        AttentionCase{"small_batch_64", 1, 64, 64, 12, 64, false, false, false},
        // GPT-2 124M's 128-token prefill at batch 1 (the prefill kernel), and a causal prompt
        // whose last query tile is partial, with padding.
        AttentionCase{"prefill_gpt2_128", 1, 128, 128, 12, 64, true, false, false},
        AttentionCase{"prefill_causal_50_padded", 2, 50, 50, 3, 64, true, true, false},
        AttentionCase{"prefill_causal_dh128_40", 1, 40, 40, 2, 128, true, true, false}),
    [](const ::testing::TestParamInfo<AttentionCase>& param_info) {
      return std::string(param_info.param.name);
    });

}  // namespace
}  // namespace eaq
