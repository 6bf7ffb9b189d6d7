// A batch-1 decode step's feed-forward block in one kernel: h = act(LayerNorm(x) W1^T + b1), then
// the shares of h W2^T + b2 added into a pending residual sum (pending_residual.cuh) that the next
// kernel finishes. References: the two kernels it replaces, gemv.cu's LayerNorm row kernel (c_fc:
// the same pieces in the same order, so h has the same bits) and its wide row kernel with the
// residual (the MLP projection), and through them the CPU backend.
//
// Opt-in (EAQ_MLP_PENDING=1, cuda_backend.cpp): measured slower than the two kernels on an H200
// (docs/results.md, the sixteenth session: 4,094 against 4,653 fp16 tokens/s). Cut short after
// each phase, the kernel showed why: its 9.4 MB of weights load only while the attention
// projection runs (~2.7 us), so it still waits for them after the previous kernel ends, and the
// W2 phase (~1.6 us) and the atomics (~0.3 us) come on top. Kept, tested, as the base of a layer in
// two kernels.
//
// Why: those two kernels meet at a kernel boundary, ~2.7 us of a ~14 us layer on an H200 (kernel
// trace, docs/results.md), though the projection's weights are loaded long before. Here the
// inner features are split over thread-block clusters of 8: cluster c owns features
// [192 c, 192 c + 192), block r of it computes 24 of them (6 a warp) and sends them
// to every block of the cluster through distributed shared memory. After one cluster barrier,
// block r multiplies the cluster's 192 values by its E/8 rows of W2 (restricted to those 192
// columns) and adds each output's share into pending with one integer atomic: 16 shares per
// output, in no particular order, with the same sum. Both weight blocks are copied to shared
// memory (cp.async) before the kernel waits for the previous one.
#include <cooperative_groups.h>

#include <cstdint>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/device_query.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/mma_copy.cuh"
#include "backend/cuda/pending_residual.cuh"
#include "backend/cuda/warp_layer_norm.cuh"
#include "core/error.hpp"

namespace eaq::cuda {
namespace {

constexpr int kClusterBlocks = 8;  // the portable cluster size
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kUnitsPerWarp = 6;                                  // inner features a warp
constexpr int kUnitsPerBlock = kUnitsPerWarp * kWarps;            // 24
constexpr int kClusterUnits = kUnitsPerBlock * kClusterBlocks;    // 192
constexpr int kPerVec = 8;                                        // 16 bytes of f16 or bf16
constexpr int kXVecs = 3;                                         // pieces of x a lane: E <= 768
constexpr int kTeam = 8;                                          // threads per output row of W2
constexpr int kTeamVecs = kClusterUnits / kPerVec / kTeam;        // 3 pieces of a W2 row each
constexpr int kTeamsPerPass = kThreads / kTeam;                   // 16 outputs at a time
constexpr int kMaxHidden = kXVecs * 32 * kPerVec;                 // 768
constexpr int kMaxOutputsPerBlock = kMaxHidden / kClusterBlocks;  // 96
constexpr int kMaxPasses = kMaxOutputsPerBlock / kTeamsPerPass;   // 6
constexpr int kRowPieces = kClusterUnits / kPerVec;               // 24 pieces of a W2 row

// Shared memory of a block: W1's 24 rows (E values each) and W2's E/8 rows restricted to the
// cluster's 192 columns, both copied in before the wait.
std::size_t stage_bytes(std::int64_t hidden, std::size_t element) {
  return static_cast<std::size_t>(kUnitsPerBlock * hidden +
                                  hidden / kClusterBlocks * kClusterUnits) *
         element;
}

// The weights wait in shared memory rather than registers: a block then holds ~14K registers,
// and the kernels before and after it keep room to start early beside it (with both matrices in
// registers, 34K a block, it started only as the attention projection left and took 10.8 us:
// docs/results.md).
template <class T>
__global__ void __launch_bounds__(kThreads) mlp_pending_kernel(MlpPendingArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  extern __shared__ __align__(16) unsigned char stage[];  // W1 rows, then W2's block, of T
  __shared__ __align__(16) float h[kClusterUnits];        // the cluster's inner features

  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const std::int64_t c = blockIdx.x / kClusterBlocks;  // the cluster's slice of the inner features
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int vectors = static_cast<int>(a.hidden / kPerVec);
  const int outputs = static_cast<int>(a.hidden / kClusterBlocks);
  const std::int64_t first_output = static_cast<std::int64_t>(rank) * outputs;
  const std::int64_t first_unit = c * kClusterUnits + rank * kUnitsPerBlock;
  // Every block must have started before any writes into its shared memory: arrive now, wait
  // just before the first remote write.
  cluster.barrier_arrive();

  // Nothing below comes from the previous kernel: both weight blocks into shared memory, the
  // biases and the LayerNorm parameters into registers.
  const unsigned long long policy = evict_first_policy();
  const unsigned w1_stage = shared_address(stage);
  const int w1_pieces = kUnitsPerBlock * vectors;  // W1's rows are contiguous in memory
  const auto* w1 =
      reinterpret_cast<const uint4*>(static_cast<const T*>(a.w_in) + first_unit * a.hidden);
  for (int p = threadIdx.x; p < w1_pieces; p += kThreads) {
    copy16_evict_first(w1_stage + 16u * static_cast<unsigned>(p), w1 + p, policy);
  }
  const unsigned w2_stage = w1_stage + 16u * static_cast<unsigned>(w1_pieces);
  for (int p = threadIdx.x; p < outputs * kRowPieces; p += kThreads) {
    const int o = p / kRowPieces, q = p % kRowPieces;
    const T* src = static_cast<const T*>(a.w_out) + (first_output + o) * a.inner +
                   c * kClusterUnits + q * kPerVec;
    copy16_evict_first(w2_stage + 16u * static_cast<unsigned>(p), src, policy);
  }
  commit();
  const T* b_in = static_cast<const T*>(a.b_in);
  float unit_bias[kUnitsPerWarp];
#pragma unroll
  for (int j = 0; j < kUnitsPerWarp; ++j) {
    unit_bias[j] = b_in ? to_f32(b_in[first_unit + warp * kUnitsPerWarp + j]) : 0.0f;
  }
  const T* b_out = static_cast<const T*>(a.b_out);
  float gv[kXVecs][kPerVec], bv[kXVecs][kPerVec];
  load_layer_norm_params<kXVecs, kPerVec>(a.ln_gamma, a.ln_beta, vectors, gv, bv);
  // x comes from the kernel before, and pending was zeroed there.
  wait_then_allow_dependents(a.early_dependents);

  // LayerNorm of x in every warp, then this warp's six features of h, rounded to T as the
  // unfused kernel stores them; lane c < 8 sends each to block c of the cluster.
  float xv[kXVecs][kPerVec];
  warp_load_row<T>(a.x, nullptr, vectors, xv);
  warp_layer_norm_row<T>(xv, gv, bv, vectors, a.hidden, a.ln_eps, nullptr);
  wait_pending<0>();  // this thread's copies have landed
  __syncthreads();    // and every thread's
  cluster.barrier_wait();
  const auto* w1_rows = reinterpret_cast<const uint4*>(stage);
#pragma unroll
  for (int j = 0; j < kUnitsPerWarp; ++j) {
    const int unit = warp * kUnitsPerWarp + j;  // of the block's 24
    float acc = 0.0f;
#pragma unroll
    for (int u = 0; u < kXVecs; ++u) {
      if (lane + 32 * u >= vectors) break;
      const uint4 raw = w1_rows[unit * vectors + lane + 32 * u];
      const T* wt = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) acc += xv[u][e] * to_f32(wt[e]);
    }
    const float value =
        to_f32(from_f32<T>(apply_activation(warp_sum(acc) + unit_bias[j], a.activation)));
    if (lane < kClusterBlocks) {
      *cluster.map_shared_rank(&h[rank * kUnitsPerBlock + unit], lane) = value;
    }
  }
  cluster.sync();  // h is complete in every block

  // Output o of this block: a team of 8 threads, each taking 24 of the 192 columns.
  const int team = threadIdx.x / kTeam, piece = threadIdx.x % kTeam;
  float hv[kTeamVecs * kPerVec];
#pragma unroll
  for (int i = 0; i < kTeamVecs * kPerVec; i += 4) {
    const float4 q = *reinterpret_cast<const float4*>(&h[piece * kTeamVecs * kPerVec + i]);
    hv[i] = q.x, hv[i + 1] = q.y, hv[i + 2] = q.z, hv[i + 3] = q.w;
  }
  const auto* w2_rows = reinterpret_cast<const uint4*>(stage) + w1_pieces;
#pragma unroll
  for (int pass = 0; pass < kMaxPasses; ++pass) {
    if (pass * kTeamsPerPass >= outputs) break;  // uniform over the block
    const int o = team + pass * kTeamsPerPass;
    float acc = 0.0f;
    if (o < outputs) {
      const uint4* row = w2_rows + o * kRowPieces + piece * kTeamVecs;
#pragma unroll
      for (int u = 0; u < kTeamVecs; ++u) {
        const uint4 raw = row[u];
        const T* wt = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int e = 0; e < kPerVec; ++e) acc += hv[u * kPerVec + e] * to_f32(wt[e]);
      }
    }
    for (int offset = kTeam / 2; offset > 0; offset /= 2) {
      acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    }
    if (o < outputs && piece == 0) {
      const std::int64_t out = first_output + o;
      // The bias once per output: in the shares of cluster 0.
      if (c == 0 && b_out) acc += to_f32(b_out[out]);
      pending_add(a.pending, out, a.hidden, acc);
    }
  }
#endif
}

// pending's x + pending, rounded to T, into out: where no kernel after the MLP finishes the sum.
template <class T>
__global__ void finish_pending_kernel(const T* x, const long long* pending, T* out,
                                      std::int64_t n) {
  wait_for_previous_kernel();
  allow_dependent_launch();
  const bool poisoned = __ldcg(pending + n) != 0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = from_f32<T>(pending_finish<T>(to_f32(x[i]), __ldcg(pending + i), poisoned));
  }
}

// pending += y in fixed point: where the attention block's projection ran as its own kernels.
template <class T>
__global__ void add_to_pending_kernel(const T* y, long long* pending, std::int64_t n) {
  wait_for_previous_kernel();
  allow_dependent_launch();
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    pending_add(pending, i, n, to_f32(y[i]));
  }
}

template <class T>
void launch_typed(const MlpPendingArgs& a, cudaStream_t stream) {
  static const bool configured = [] {
    EAQ_CUDA_CHECK(cudaFuncSetAttribute(mlp_pending_kernel<T>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(stage_bytes(kMaxHidden, sizeof(T)))));
    return true;
  }();
  (void)configured;
  launch_dependent_clusters(
      mlp_pending_kernel<T>, dim3(static_cast<unsigned>(a.inner / kClusterUnits * kClusterBlocks)),
      dim3(kThreads), kClusterBlocks, stage_bytes(a.hidden, sizeof(T)), stream, a);
}

}  // namespace

bool mlp_pending_eligible(DType act, const MlpPendingArgs& a) {
  return (act == DType::F16 || act == DType::BF16) && thread_block_clusters_supported() &&
         a.hidden > 0 && a.hidden % (kClusterBlocks * kPerVec) == 0 &&
         a.hidden / kPerVec <= 32 * kXVecs && a.inner > 0 && a.inner % kClusterUnits == 0 &&
         aligned16(a.x) && aligned16(a.w_in) && aligned16(a.w_out);
}

void launch_mlp_pending(DType act, const MlpPendingArgs& a, cudaStream_t stream) {
  EAQ_CHECK(mlp_pending_eligible(act, a), "mlp_pending: a block of {} x {} in {} it does not take",
            a.hidden, a.inner, dtype_name(act));
  EAQ_CHECK(a.ln_gamma != nullptr && a.ln_beta != nullptr && a.pending != nullptr &&
                aligned16(a.ln_gamma) && aligned16(a.ln_beta) && aligned16(a.pending),
            "mlp_pending: the LayerNorm parameters and the sum must be 16-byte aligned buffers");
  if (act == DType::F16) {
    launch_typed<__half>(a, stream);
  } else {
    launch_typed<__nv_bfloat16>(a, stream);
  }
}

void launch_finish_pending(DType act, const void* x, const long long* pending, void* out,
                           std::int64_t n, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((n + 255) / 256)), block(256);
  if (act == DType::F16) {
    launch_dependent(finish_pending_kernel<__half>, grid, block, 0, stream,
                     static_cast<const __half*>(x), pending, static_cast<__half*>(out), n);
  } else if (act == DType::BF16) {
    launch_dependent(finish_pending_kernel<__nv_bfloat16>, grid, block, 0, stream,
                     static_cast<const __nv_bfloat16*>(x), pending,
                     static_cast<__nv_bfloat16*>(out), n);
  } else {
    EAQ_CHECK(false, "finish_pending: rows in {} (f16 or bf16 only)", dtype_name(act));
  }
}

void launch_add_to_pending(DType act, const void* y, long long* pending, std::int64_t n,
                           cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((n + 255) / 256)), block(256);
  if (act == DType::F16) {
    launch_dependent(add_to_pending_kernel<__half>, grid, block, 0, stream,
                     static_cast<const __half*>(y), pending, n);
  } else if (act == DType::BF16) {
    launch_dependent(add_to_pending_kernel<__nv_bfloat16>, grid, block, 0, stream,
                     static_cast<const __nv_bfloat16*>(y), pending, n);
  } else {
    EAQ_CHECK(false, "add_to_pending: rows in {} (f16 or bf16 only)", dtype_name(act));
  }
}

}  // namespace eaq::cuda
