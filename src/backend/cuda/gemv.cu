// Linear layers on a few rows (decode steps, classification heads): y[m, n] = act(x[m] . W[n] +
// bias[n]) + residual[m, n], optionally after a LayerNorm of x. At these sizes the layer is a read
// of W, which cuBLASLt's tiles spread over too few multiprocessors. References: cpu_kernels.cpp
// gemm_f32 and layer_norm_f32 (the fused forms are checked against the unfused CPU ops).
//
// One warp per output feature at a time, four warps per block. Each lane issues its 16-byte loads
// of W (up to kChunk of them) before it waits for the previous kernel (programmatic dependent
// launch, see dependent_launch.cuh) and before the block stages x in shared memory, so the weight
// reads overlap the previous kernel's tail and the reading (and, when asked, normalizing) of x.
// The LayerNorm costs each block a few reductions over k values it reads anyway, and saves a
// launch. One row (a batch-1 decode step) runs gemv_split_row_kernel instead: k split over a
// block's warps, so that each block, not each warp, reads x.
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/gemv_stage.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/mma_copy.cuh"
#include "backend/cuda/pending_residual.cuh"
#include "backend/cuda/warp_layer_norm.cuh"
#include "backend/cuda/weight_load.cuh"
#include "core/error.hpp"

namespace eaq::cuda {
namespace {

constexpr int kChunk = 12;                             // 16-byte pieces of W in flight per lane
constexpr std::int64_t kSharedFloats = 48 * 1024 / 4;  // x rows staged as f32
constexpr int kMaxRowsPerLaunch = 4;

// Loads this lane's pieces [base + lane + 32 u] of W row `feature` into registers.
template <class T>
__device__ __forceinline__ void load_weights(uint4 (&wv)[kChunk], const GemvArgs& a,
                                             std::int64_t feature, std::int64_t base,
                                             std::int64_t vectors, int lane) {
  const uint4* w_row = reinterpret_cast<const uint4*>(static_cast<const T*>(a.w) + feature * a.k);
#pragma unroll
  for (int u = 0; u < kChunk; ++u) {
    const std::int64_t v = base + lane + 32 * u;
    if (v < vectors) wv[u] = load_weight(w_row + v);
  }
}

// Each warp takes features warp, warp + stride, ... (the grid is at most what fits on the GPU at
// once, so x is staged and normalized once per block, not once per 4 features: the LM head has
// 50k of them). The next feature's first loads are issued before this one's reduction.
template <class T, int kRows>
__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(GemvArgs a) {
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  extern __shared__ float xs[];  // [kRows, k]
  const int lane = threadIdx.x % 32;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kGemvWarps;
  std::int64_t feature = static_cast<std::int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  const std::int64_t vectors = a.k / kPerVec;

  uint4 wv[kChunk];
  if (feature < a.n) load_weights<T>(wv, a, feature, 0, vectors, lane);
  // Weights are never written by a kernel: they load while the previous kernel finishes.
  wait_then_allow_dependents(a.early_dependents);
  stage_rows<T, kRows>(a, static_cast<const T*>(a.x), xs);
  if (feature >= a.n) return;  // after staging: every thread takes part in its barriers

  const T* bias = static_cast<const T*>(a.bias);
  const T* residual = static_cast<const T*>(a.residual);
  T* y = static_cast<T*>(a.y);
  for (;;) {
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
    for (std::int64_t base = 0;;) {
#pragma unroll
      for (int u = 0; u < kChunk; ++u) {
        const std::int64_t v = base + lane + 32 * u;
        if (v >= vectors) break;
        const T* wt = reinterpret_cast<const T*>(&wv[u]);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const float* xr = xs + r * a.k + v * kPerVec;
#pragma unroll
          for (int e = 0; e < kPerVec; ++e) acc[r] += xr[e] * to_f32(wt[e]);
        }
      }
      base += 32 * kChunk;
      if (base >= vectors) break;
      load_weights<T>(wv, a, feature, base, vectors, lane);
    }
    const std::int64_t next = feature + stride;
    if (next < a.n) load_weights<T>(wv, a, next, 0, vectors, lane);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float sum = warp_sum(acc[r]);
      if (lane == 0) {
        float out = apply_activation(sum + (bias ? to_f32(bias[feature]) : 0.0f), a.activation);
        if (residual) out += to_f32(residual[r * a.n + feature]);  // read before y (may alias)
        y[r * a.n + feature] = from_f32<T>(out);
      }
    }
    if (next >= a.n) break;
    feature = next;
  }
}

// One row (a decode step at batch 1) with k small enough that each lane keeps its slice of x in
// registers: lane l owns pieces l, l + 32, ... of x, the same pieces of every W row it reads. No
// shared memory and no block barrier; with a LayerNorm, every warp computes the row's statistics
// with shuffles (two-pass, as the LayerNorm kernel) from its own registers. kVecs = 3 (k <= 768
// in f16) takes a LayerNorm; kVecs = 12 (k <= 3072: the MLP projection) does not.
constexpr int kRowVecs = 3;       // 16-byte pieces of x per lane: k <= 768 (f16) or 384 (f32)
constexpr int kWideRowVecs = 12;  // k <= 3072 (f16) or 1536 (f32), without a LayerNorm

// Register use decides how early a kernel starts under dependent launch: its blocks start only
// where the previous kernel's leave room. So the wide form reads x at each feature as 16-byte
// pieces of T, converted at each use (from L1 after the first feature), which keeps it to 4
// blocks per multiprocessor instead of 3; and the LayerNorm form loads two features' weights per
// warp before the wait, so c_fc's 3,072 features can run as 384 blocks instead of 768 (of which
// only 528 fit at once, the rest loading their weights after the wait), which leaves the next
// kernel room.
template <class T, int kVecs>
__global__ void __launch_bounds__(kGemvThreads, kVecs > kRowVecs ? 4 : 1)
    gemv_row_kernel(GemvArgs a) {
  constexpr bool kLayerNorm = kVecs <= kRowVecs;
  constexpr int kNormVecs = kLayerNorm ? kVecs : 1;
  constexpr int kAhead = kLayerNorm ? kRowFeaturesAhead : 1;
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  const int lane = threadIdx.x % 32;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kGemvWarps;
  std::int64_t feature = static_cast<std::int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  const std::int64_t vectors = a.k / kPerVec;
  const auto load_row = [&](std::int64_t f, uint4(&out)[kVecs]) {
    const auto* w_row = reinterpret_cast<const uint4*>(static_cast<const T*>(a.w) + f * a.k);
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (lane + 32 * u < vectors) out[u] = load_weight(w_row + lane + 32 * u);
    }
  };

  uint4 wv[kAhead][kVecs];
  load_features_ahead(wv, feature, stride, a.n, load_row);
  // So are the LayerNorm's gamma and beta.
  float gv[kNormVecs][kPerVec], bv[kNormVecs][kPerVec];
  if constexpr (kLayerNorm) {
    if (a.ln_gamma != nullptr) {
      load_layer_norm_params<kNormVecs, kPerVec>(a.ln_gamma, a.ln_beta, static_cast<int>(vectors),
                                                 gv, bv);
    }
  }
  // Weights are constant: they load while the previous kernel ends.
  wait_then_allow_dependents(a.early_dependents);

  // x: floats after the LayerNorm form's normalization, else its pieces, read at each feature
  // (from L1 after the first; converted at each use).
  float xv[kNormVecs][kPerVec];
  if constexpr (kLayerNorm) {
    warp_load_row<T>(a.x, a.ln_residual, static_cast<int>(vectors), xv);
    if (a.ln_gamma != nullptr) {
      warp_layer_norm_row<T>(xv, gv, bv, static_cast<int>(vectors), a.k, a.ln_eps, a.ln_out);
    }
  }
  if (feature >= a.n) return;
  const auto* x4 = static_cast<const uint4*>(a.x);
  const T* bias = static_cast<const T*>(a.bias);
  const T* residual = static_cast<const T*>(a.residual);
  T* y = static_cast<T*>(a.y);
  for (;;) {
    uint4 xq[kLayerNorm ? 1 : kVecs];  // all of this lane's pieces in flight at once
    if constexpr (!kLayerNorm) {
#pragma unroll
      for (int u = 0; u < kVecs; ++u) {
        if (lane + 32 * u < vectors) xq[u] = x4[lane + 32 * u];
      }
    }
    float acc = 0.0f;
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (lane + 32 * u >= vectors) break;
      const T* wt = reinterpret_cast<const T*>(&wv[0][u]);
      if constexpr (kLayerNorm) {
#pragma unroll
        for (int e = 0; e < kPerVec; ++e) acc += xv[u][e] * to_f32(wt[e]);
      } else {
        const T* xt = reinterpret_cast<const T*>(&xq[u]);
#pragma unroll
        for (int e = 0; e < kPerVec; ++e) acc += to_f32(xt[e]) * to_f32(wt[e]);
      }
    }
    const std::int64_t next = feature + stride;
    advance_features_ahead(wv, next, stride, a.n, load_row);
    const float total = warp_sum(acc);
    if (lane == 0) {
      float out = apply_activation(total + (bias ? to_f32(bias[feature]) : 0.0f), a.activation);
      if (residual) out += to_f32(residual[feature]);  // read before y (may alias)
      y[feature] = from_f32<T>(out);
    }
    if (next >= a.n) break;
    feature = next;
  }
}

// One row (k up to 12 pieces a lane) with k split over the block's warps instead of features over
// them: warp w reads quarter w of x and of kFeatures features' rows, and the block adds the four
// partial sums in shared memory. In the row kernel every warp reads all of x (6 KB at k 3,072)
// from L2 at the same moment as the others; here each block reads it once. With a LayerNorm the
// block also adds the quarters' sums for the row's statistics (two more barriers). kVecs: pieces
// of x a lane (3 for k <= 3,072 in 16 bits, 1 for k <= 768). On an H200 the fp16 step went from
// ~4,760 to ~5,120 tokens/s with the three GEMVs of a layer on it (docs/results.md, the
// seventeenth session).
// shared_shuffles: the kFeatures sums share their shuffles (warp_sum_many; the same bits).
// early_residual: the residual loads right after the wait (EAQ_EARLY_RESIDUAL=0: at the end).
//
// kMma (16-bit T, EAQ_MMA_GEMV=1; off by default, it costs energy): the products run on the tensor
// cores, one mma.sync m16n8k16 (f32 accumulators) where the FMA form issues 16 conversions and FMAs
// a lane. x is exactly a T here (the LayerNorm's output is rounded to T, as the unfused op stores
// it), so it is a T operand without loss. A sum over k may take k in any order, so each lane keeps
// whole 16-byte pieces of a row: lane (g, t) = (lane / 4, lane % 4) holds, at step s, piece t of
// block s R + g / F (blocks of 4 pieces, R = 8 / F) of feature g % F, as A's row g (its first 8
// bytes) and row g + 8 (its last 8). B's column c (given by lanes g = c) holds the matching x:
// column 2j the first halves of block s R + j's pieces, column 2j + 1 the second halves. So
// D[g][2j] + D[g + 8][2j + 1], with j = g / F, is feature g % F's sum over block j of each step:
// lane (g, j)'s c[0] + c[3]. The tensor cores also do the warp's reduction, so no shuffles; the
// sums run in another order than the FMA form's (within f32 rounding of it: the fused-ops test).
template <class T, int kVecs, int kFeatures, bool kLayerNorm, bool kMma>
__global__ void __launch_bounds__(kGemvThreads, 4)
    gemv_split_row_kernel(GemvArgs a, bool shared_shuffles, bool early_residual) {
  constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));
  static_assert(!kMma || (kPerVec == 8 && (kFeatures == 4 || kFeatures == 8)),
                "the mma form takes 16-bit T and 4 or 8 features");
  constexpr int kParts = kMma ? 8 / kFeatures : 1;      // R: blocks of a step
  constexpr int kSteps = kMma ? kVecs * kFeatures : 1;  // 32 kVecs pieces a warp, 4 R a step
  __shared__ float partial[kGemvWarps * kParts][kFeatures];
  __shared__ float row_sum[kGemvWarps], row_squares[kGemvWarps];
  // The mma form's normalized x, as the T pieces B is read from.
  __shared__ uint4 x_normed[kMma && kLayerNorm ? kGemvWarps * 32 * kVecs : 1];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t vectors = a.k / kPerVec;
  // Warp w's pieces are [w slice, (w + 1) slice); lane l's are begin, begin + 32, ... before end.
  const std::int64_t slice = (vectors + kGemvWarps - 1) / kGemvWarps;
  const std::int64_t begin = warp * slice + lane;
  const std::int64_t end = (warp + 1) * slice < vectors ? (warp + 1) * slice : vectors;
  const std::int64_t groups = (a.n + kFeatures - 1) / kFeatures;
  const auto* w = static_cast<const uint4*>(a.w);  // rows of `vectors` pieces
  // The mma form's roles: lane (g, t); the first piece of step s's block b is
  // warp slice + (s R + b) 4.
  const int g = lane / 4, t = lane % 4;
  const auto step_piece = [&](int s, int block) {
    return warp * slice + (s * kParts + block) * 4 + t;
  };
  uint4 wv[kMma ? 1 : kFeatures][kMma ? 1 : kVecs] = {};
  uint4 wm[kSteps];
  const auto load_group = [&](std::int64_t group) {
    if constexpr (kMma) {
      const std::int64_t feature = group * kFeatures + g % kFeatures;
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const std::int64_t v = step_piece(s, g / kFeatures);
        wm[s] = feature < a.n && v < end ? load_weight(w + feature * vectors + v)
                                         : make_uint4(0u, 0u, 0u, 0u);
      }
    } else {
#pragma unroll
      for (int f = 0; f < kFeatures; ++f) {
        const std::int64_t feature = group * kFeatures + f;
#pragma unroll
        for (int u = 0; u < kVecs; ++u) {
          const std::int64_t v = begin + 32 * u;
          if (feature < a.n && v < end) wv[f][u] = load_weight(w + feature * vectors + v);
        }
      }
    }
  };
  std::int64_t group = blockIdx.x;  // the grid is at most `groups` blocks
  load_group(group);
  // Thread f < kFeatures's value of `values` (bias, residual) for group g's feature f, or 0.
  const auto feature_value = [&](const void* values, std::int64_t g) {
    const std::int64_t f = g * kFeatures + threadIdx.x;
    return values != nullptr && threadIdx.x < kFeatures && f < a.n
               ? to_f32(static_cast<const T*>(values)[f])
               : 0.0f;
  };
  // The bias is constant too: loaded here, not behind the block's last barrier.
  float bias_v = feature_value(a.bias, group);
  // So are the LayerNorm's gamma and beta (this lane's pieces).
  float gv[kLayerNorm ? kVecs : 1][kPerVec], bv[kLayerNorm ? kVecs : 1][kPerVec];
  if constexpr (kLayerNorm) {
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      const std::int64_t v = begin + 32 * u;
      if (v >= end) break;
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) {
        gv[u][e] = a.ln_gamma[v * kPerVec + e];
        bv[u][e] = a.ln_beta[v * kPerVec + e];
      }
    }
  }
  // Weights are constant: they load while the previous kernel ends.
  wait_then_allow_dependents(a.early_dependents);
  // The residual comes from an earlier kernel: with early_residual it loads right after the wait,
  // behind x, instead of after the block's last barrier (the same value).
  const T* residual = static_cast<const T*>(a.residual);
  float residual_v = early_residual ? feature_value(residual, group) : 0.0f;
  // A sum the kernel before read (and this one's does not touch), zeroed for the next adder.
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(kGemvThreads) + threadIdx.x;
       i < a.zero_count; i += static_cast<std::int64_t>(gridDim.x) * kGemvThreads) {
    a.zero[i] = 0;
  }

  // This lane's pieces of x as f32 (plus ln_residual's, or finished with ln_pending's sums;
  // normalized with a LayerNorm).
  // (The mma form without a LayerNorm reads x as B's pieces below instead.)
  float xv[kVecs][kPerVec] = {};
  const auto* x4 = static_cast<const uint4*>(a.x);
  const auto* r4 = static_cast<const uint4*>(a.ln_residual);
  const bool poisoned = kLayerNorm && a.ln_pending != nullptr && a.ln_pending[a.k] != 0;
#pragma unroll
  for (int u = 0; u < kVecs; ++u) {
    const std::int64_t v = begin + 32 * u;
    if ((kMma && !kLayerNorm) || v >= end) break;
    const uint4 xq = x4[v];
    const T* xt = reinterpret_cast<const T*>(&xq);
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) xv[u][e] = to_f32(xt[e]);
    if (kLayerNorm && r4 != nullptr) {
      const uint4 rq = r4[v];
      const T* rt = reinterpret_cast<const T*>(&rq);
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) xv[u][e] += to_f32(rt[e]);
    }
    if (kLayerNorm && a.ln_pending != nullptr) {
      const auto* p2 = reinterpret_cast<const longlong2*>(a.ln_pending + v * kPerVec);
      alignas(16) T finished[kPerVec];
#pragma unroll
      for (int q = 0; q < kPerVec / 2; ++q) {
        const longlong2 p = p2[q];
        xv[u][2 * q] = pending_finish<T>(xv[u][2 * q], p.x, poisoned);
        xv[u][2 * q + 1] = pending_finish<T>(xv[u][2 * q + 1], p.y, poisoned);
      }
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) finished[e] = from_f32<T>(xv[u][e]);
      if (blockIdx.x == 0 && a.ln_finished != nullptr)
        static_cast<uint4*>(a.ln_finished)[v] = *reinterpret_cast<const uint4*>(finished);
    }
  }
  if constexpr (kLayerNorm) {
    // Two passes, as warp_row_stats: the mean from the four quarters' sums, then the variance.
    float sum = 0.0f;
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) sum += xv[u][e];  // zero past end
    }
    sum = warp_sum(sum);
    if (lane == 0) row_sum[warp] = sum;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int s = 0; s < kGemvWarps; ++s) total += row_sum[s];
    const float mean = total / static_cast<float>(a.k);
    float squares = 0.0f;
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (begin + 32 * u >= end) break;
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) squares += (xv[u][e] - mean) * (xv[u][e] - mean);
    }
    squares = warp_sum(squares);
    if (lane == 0) row_squares[warp] = squares;
    __syncthreads();
    float all_squares = 0.0f;
#pragma unroll
    for (int s = 0; s < kGemvWarps; ++s) all_squares += row_squares[s];
    const float rstd = rsqrtf(all_squares / static_cast<float>(a.k) + a.ln_eps);
    const bool writer = blockIdx.x == 0 && a.ln_out != nullptr;
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      const std::int64_t v = begin + 32 * u;
      if (v >= end) break;
      alignas(16) T normed[kPerVec];
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) {
        normed[e] = from_f32<T>((xv[u][e] - mean) * rstd * gv[u][e] + bv[u][e]);
        xv[u][e] = to_f32(normed[e]);
      }
      if (writer) static_cast<uint4*>(a.ln_out)[v] = *reinterpret_cast<const uint4*>(normed);
      if constexpr (kMma) x_normed[v] = *reinterpret_cast<const uint4*>(normed);
    }
  }

  // The mma form's B: lane (g, t) gives column g, half g % 2 of piece t of block g / 2 (lanes
  // g >= 2 R give columns nobody reads: any finite x, here lane g % (2 R)'s). Zero past the warp's
  // pieces, where A is zero too. The same for every group.
  uint2 xb[kSteps];
  if constexpr (kMma) {
    const int column = g % (2 * kParts);
    if constexpr (kLayerNorm) __syncwarp();  // the warp's own pieces of x_normed
    const uint2* x_halves =
        kLayerNorm ? reinterpret_cast<const uint2*>(x_normed) : static_cast<const uint2*>(a.x);
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const std::int64_t v = step_piece(s, column / 2);
      xb[s] = v < end ? x_halves[2 * v + column % 2] : make_uint2(0u, 0u);
    }
  }

  T* y = static_cast<T*>(a.y);
  for (;;) {
    if constexpr (kMma) {
      float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        if (warp * slice + s * kParts * 4 >= end) break;  // the same in every lane
        const unsigned fragment[4] = {wm[s].x, wm[s].z, wm[s].y, wm[s].w};
        mma_f16<T>(fragment, xb[s].x, xb[s].y, c);
      }
      if (t == g / kFeatures) partial[warp * kParts + t][g % kFeatures] = c[0] + c[3];
    } else {
      float acc[kFeatures] = {};
#pragma unroll
      for (int u = 0; u < kVecs; ++u) {
        if (begin + 32 * u >= end) break;
#pragma unroll
        for (int f = 0; f < kFeatures; ++f) {
          const T* wt = reinterpret_cast<const T*>(&wv[f][u]);
#pragma unroll
          for (int e = 0; e < kPerVec; ++e) acc[f] += xv[u][e] * to_f32(wt[e]);
        }
      }
      if (shared_shuffles) {  // the kFeatures sums share their shuffles (warp_sum's bits)
        const float sum = warp_sum_many<kFeatures>(acc);
        if (lane % (32 / kFeatures) == 0) partial[warp][warp_sum_many_index<kFeatures>(lane)] = sum;
      } else {
#pragma unroll
        for (int f = 0; f < kFeatures; ++f) acc[f] = warp_sum(acc[f]);
        if (lane == 0) {
#pragma unroll
          for (int f = 0; f < kFeatures; ++f) partial[warp][f] = acc[f];
        }
      }
    }
    __syncthreads();
    const std::int64_t feature = group * kFeatures + threadIdx.x;
    if (threadIdx.x < kFeatures && feature < a.n) {
      float total = 0.0f;
#pragma unroll
      for (int s = 0; s < kGemvWarps * kParts; ++s) total += partial[s][threadIdx.x];
      float out = apply_activation(total + bias_v, a.activation);
      if (residual) out += early_residual ? residual_v : to_f32(residual[feature]);  // y may alias
      y[feature] = from_f32<T>(out);
    }
    group += gridDim.x;
    if (group >= groups) break;
    load_group(group);
    bias_v = feature_value(a.bias, group);
    if (early_residual) residual_v = feature_value(residual, group);
    __syncthreads();  // every thread has read `partial` before the next group writes it
  }
}

// Whether gemv_split_row_kernel takes a one-row GEMV that the row kernel could: every one but a
// residual added without a LayerNorm, unless EAQ_SPLIT_ROW_GEMV=0 (to measure what it buys). Read
// at every launch.
bool split_row_gemv(const GemvArgs& a) {
  return !env_is("EAQ_SPLIT_ROW_GEMV", "0") && (a.ln_gamma != nullptr || a.ln_residual == nullptr);
}

template <class T, int kVecs, int kFeatures, bool kLayerNorm, bool kMma>
void launch_split_row(const GemvArgs& a, cudaStream_t stream) {
  const auto kernel = gemv_split_row_kernel<T, kVecs, kFeatures, kLayerNorm, kMma>;
  const std::int64_t groups = (a.n + kFeatures - 1) / kFeatures;
  const std::int64_t resident = static_cast<std::int64_t>(gemv_blocks_per_multiprocessor(
                                    reinterpret_cast<const void*>(kernel), 0)) *
                                multiprocessor_count();
  launch_dependent(kernel, dim3(static_cast<unsigned>(groups < resident ? groups : resident)),
                   dim3(kGemvThreads), 0, stream, a, shared_shuffles_enabled(),
                   !env_is("EAQ_EARLY_RESIDUAL", "0"));  // read at every launch
}

// The split kernel's forms: k <= 768 (in 16 bits; a piece of x a lane) takes the attention
// projection with four features a block and c_fc (with its LayerNorm) with eight, as many blocks
// as the row kernel's; k <= 3,072 (three pieces a lane) the MLP projection, four features a block.
template <class T, bool kMma>
void launch_split_row_forms_as(int vecs, const GemvArgs& a, cudaStream_t stream) {
  if (vecs == kWideRowVecs) {  // never with a LayerNorm (row_kernel_vecs)
    launch_split_row<T, 3, 4, false, kMma>(a, stream);
  } else if (a.ln_gamma != nullptr) {
    launch_split_row<T, 1, 8, true, kMma>(a, stream);
  } else {
    launch_split_row<T, 1, 4, false, kMma>(a, stream);
  }
}

// 16-bit T on the tensor cores with EAQ_MMA_GEMV=1 (read at every launch), else on FMAs: the
// tensor cores made a GPT-2 step ~1.4% faster but cost ~0.35 mJ more a token (docs/results.md,
// the twenty-first session).
template <class T>
void launch_split_row_forms(int vecs, const GemvArgs& a, cudaStream_t stream) {
  if constexpr (sizeof(T) == 2) {
    if (env_is("EAQ_MMA_GEMV", "1")) {
      launch_split_row_forms_as<T, true>(vecs, a, stream);
      return;
    }
  }
  launch_split_row_forms_as<T, false>(vecs, a, stream);
}

template <class T, int kRows>
void launch_rows(const GemvArgs& a, cudaStream_t stream) {
  const std::size_t shared = static_cast<std::size_t>(kRows * a.k) * sizeof(float);
  launch_dependent(
      gemv_kernel<T, kRows>,
      dim3(gemv_grid(reinterpret_cast<const void*>(gemv_kernel<T, kRows>), shared, a.n)),
      dim3(kGemvThreads), shared, stream, a);
}

// The register kernel's pieces of x per lane for these arguments (one row, x and the LayerNorm
// operands in 16-byte pieces), or 0 when it cannot run them.
int row_kernel_vecs(DType act, const GemvArgs& a) {
  const std::int64_t per_vec = act == DType::F32 ? 4 : 8;
  const auto ok = [](const void* p) { return p == nullptr || aligned16(p); };
  if (a.m != 1 || !ok(a.x) || !ok(a.ln_residual) || !ok(a.ln_out) || !ok(a.ln_gamma) ||
      !ok(a.ln_beta)) {
    return 0;
  }
  if (a.k / per_vec <= 32 * kRowVecs) return kRowVecs;
  const bool layer_norm = a.ln_gamma != nullptr || a.ln_residual != nullptr;
  return !layer_norm && a.k / per_vec <= 32 * kWideRowVecs && wide_row_gemv_enabled() ? kWideRowVecs
                                                                                      : 0;
}

std::int64_t rows_per_launch(std::int64_t k) {
  const std::int64_t fit = kSharedFloats / k;
  return fit < kMaxRowsPerLaunch ? fit : kMaxRowsPerLaunch;
}

}  // namespace

int gemv_blocks_per_multiprocessor(const void* kernel, std::size_t shared) {
  static std::mutex mutex;
  static std::map<std::tuple<int, const void*, std::size_t>, int> known;
  int device = 0;
  (void)cudaGetDevice(&device);
  const auto key = std::make_tuple(device, kernel, shared);
  const std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = known.find(key); it != known.end()) return it->second;
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kGemvThreads, shared) !=
          cudaSuccess ||
      per_sm < 1) {
    (void)cudaGetLastError();  // not a launch error: fall back to one block per multiprocessor
    per_sm = 1;
  }
  known.emplace(key, per_sm);
  return per_sm;
}

unsigned gemv_grid(const void* kernel, std::size_t shared, std::int64_t n, int features_per_warp) {
  const int per_sm = gemv_blocks_per_multiprocessor(kernel, shared);
  const std::int64_t per_block = static_cast<std::int64_t>(kGemvWarps) * features_per_warp;
  const std::int64_t wanted = (n + per_block - 1) / per_block;
  const std::int64_t resident = static_cast<std::int64_t>(per_sm) * multiprocessor_count();
  return static_cast<unsigned>(wanted < resident ? wanted : resident);
}

int row_features_per_warp(std::int64_t n) {
  const std::int64_t one_each = (n + kGemvWarps - 1) / kGemvWarps;
  return one_each > 2 * multiprocessor_count() ? kRowFeaturesAhead : 1;
}

bool gemv_eligible(DType act, std::int64_t m, std::int64_t k, const void* x, const void* w) {
  const std::int64_t per_vec = act == DType::F32 ? 4 : 8;
  return m >= 1 && m <= kMaxGemvRows && k % per_vec == 0 && rows_per_launch(k) >= 1 &&
         aligned16(x) && aligned16(w);
}

bool gemv_takes_pending(DType act, const GemvArgs& args) {
  return act != DType::F32 && row_kernel_vecs(act, args) != 0 && split_row_gemv(args) &&
         aligned16(args.ln_pending) && aligned16(args.ln_finished);
}

void launch_gemv(DType act, const GemvArgs& args, cudaStream_t stream) {
  const bool pending = args.ln_pending != nullptr || args.zero != nullptr;
  EAQ_CHECK(
      !pending || gemv_takes_pending(act, args),
      "gemv: a pending sum (one row of {} values in {}) that the split-row kernel cannot take",
      args.k, dtype_name(act));
  EAQ_CHECK(args.ln_pending == nullptr || args.ln_gamma != nullptr,
            "gemv: a pending sum to finish without a LayerNorm");
  if (const int vecs = row_kernel_vecs(act, args); vecs != 0) {
    if (split_row_gemv(args)) {
      EAQ_DISPATCH_FLOAT(act, { launch_split_row_forms<T>(vecs, args, stream); });
      return;
    }
    EAQ_DISPATCH_FLOAT(act, {
      const auto kernel =
          vecs == kRowVecs ? gemv_row_kernel<T, kRowVecs> : gemv_row_kernel<T, kWideRowVecs>;
      const int features_per_warp = vecs == kRowVecs ? row_features_per_warp(args.n) : 1;
      launch_dependent(
          kernel,
          dim3(gemv_grid(reinterpret_cast<const void*>(kernel), 0, args.n, features_per_warp)),
          dim3(kGemvThreads), 0, stream, args);
    });
    return;
  }  // A few rows per launch (the accumulators stay in registers, x in shared memory).
  const std::size_t element = dtype_size(act);
  const std::int64_t per_launch = rows_per_launch(args.k);
  for (std::int64_t first = 0; first < args.m; first += per_launch) {
    const std::int64_t rows = args.m - first < per_launch ? args.m - first : per_launch;
    GemvArgs a = args;
    a.x = static_cast<const char*>(args.x) + first * args.k * element;
    a.y = static_cast<char*>(args.y) + first * args.n * element;
    if (a.residual) a.residual = static_cast<const char*>(args.residual) + first * args.n * element;
    if (a.ln_residual)
      a.ln_residual = static_cast<const char*>(args.ln_residual) + first * args.k * element;
    if (a.ln_out) a.ln_out = static_cast<char*>(args.ln_out) + first * args.k * element;
    a.m = rows;
    EAQ_DISPATCH_FLOAT(act, {
      switch (rows) {
        case 1:
          launch_rows<T, 1>(a, stream);
          break;
        case 2:
          launch_rows<T, 2>(a, stream);
          break;
        case 3:
          launch_rows<T, 3>(a, stream);
          break;
        default:
          launch_rows<T, 4>(a, stream);
          break;
      }
    });
  }
}

}  // namespace eaq::cuda
