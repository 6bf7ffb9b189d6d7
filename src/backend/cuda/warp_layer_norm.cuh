// LayerNorm of one row that a warp holds in registers, lane l holding the row's 16-byte pieces
// l, l + 32, ... (up to kVecs of them) as f32: what the GEMV row kernel (gemv.cu) and the QKV +
// attention kernel (qkv_attention.cu) share. Two passes over the registers, shuffles only;
// reference: cpu_kernels.cpp layer_norm_f32.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_types.cuh"

namespace eaq::cuda {

// This lane's pieces of gamma and beta (of `vectors` pieces in all). They are constant: load
// them before waiting for the previous kernel.
template <int kVecs, int kPerVec>
__device__ __forceinline__ void load_layer_norm_params(const float* gamma, const float* beta,
                                                       int vectors, float (&g)[kVecs][kPerVec],
                                                       float (&b)[kVecs][kPerVec]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int u = 0; u < kVecs; ++u) {
    const int v = lane + 32 * u;
    if (v >= vectors) break;
#pragma unroll
    for (int q = 0; q < kPerVec / 4; ++q) {
      const float4 gq = reinterpret_cast<const float4*>(gamma + v * kPerVec)[q];
      const float4 bq = reinterpret_cast<const float4*>(beta + v * kPerVec)[q];
      g[u][4 * q] = gq.x, g[u][4 * q + 1] = gq.y, g[u][4 * q + 2] = gq.z, g[u][4 * q + 3] = gq.w;
      b[u][4 * q] = bq.x, b[u][4 * q + 1] = bq.y, b[u][4 * q + 2] = bq.z, b[u][4 * q + 3] = bq.w;
    }
  }
}

// This lane's pieces of a row of T (and of `residual`, added, when not null) as f32: lane l
// reads pieces l, l + 32, ... of the `vectors` 16-byte pieces.
template <class T, int kVecs, int kPerVec>
__device__ __forceinline__ void warp_load_row(const void* x, const void* residual, int vectors,
                                              float (&out)[kVecs][kPerVec]) {
  static_assert(kPerVec * sizeof(T) == 16, "rows are read in 16-byte pieces");
  const int lane = threadIdx.x % 32;
  const auto* x4 = static_cast<const uint4*>(x);
  const auto* r4 = static_cast<const uint4*>(residual);
#pragma unroll
  for (int u = 0; u < kVecs; ++u) {
    const int v = lane + 32 * u;
    if (v >= vectors) break;
    const uint4 xr = x4[v];
    const T* xt = reinterpret_cast<const T*>(&xr);
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) out[u][e] = to_f32(xt[e]);
    if (r4) {
      const uint4 rr = r4[v];
      const T* rt = reinterpret_cast<const T*>(&rr);
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) out[u][e] += to_f32(rt[e]);
    }
  }
}

// warp_load_row's result (without a residual) in every warp of the block, with x read from global
// memory once a block: the block's threads load its 16-byte pieces into `stage` (`vectors`
// pieces), then every warp reads its own from shared memory. For kernels whose hundreds or
// thousands of warps would all read the same row at once (the QKV + attention kernel, the bounded
// head's scores; what it buys: docs/results.md, the nineteenth session). Every thread of the
// block must call it.
template <class T, int kVecs, int kPerVec>
__device__ __forceinline__ void block_load_row(const void* x, int vectors, uint4* stage,
                                               float (&out)[kVecs][kPerVec]) {
  for (int v = threadIdx.x; v < vectors; v += blockDim.x)
    stage[v] = static_cast<const uint4*>(x)[v];
  __syncthreads();
  warp_load_row<T>(stage, nullptr, vectors, out);
}

struct RowStats {
  float mean = 0.0f;
  float rstd = 0.0f;  // 1 / sqrt(variance + eps)
};

// The statistics of the row's k values (every lane gets them).
template <int kVecs, int kPerVec>
__device__ __forceinline__ RowStats warp_row_stats(const float (&x)[kVecs][kPerVec], int vectors,
                                                   std::int64_t k, float eps) {
  const int lane = threadIdx.x % 32;
  float sum = 0.0f;
#pragma unroll
  for (int u = 0; u < kVecs; ++u) {
    if (lane + 32 * u >= vectors) break;
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) sum += x[u][e];
  }
  RowStats s;
  s.mean = warp_sum(sum) / static_cast<float>(k);
  float sq = 0.0f;
#pragma unroll
  for (int u = 0; u < kVecs; ++u) {
    if (lane + 32 * u >= vectors) break;
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) sq += (x[u][e] - s.mean) * (x[u][e] - s.mean);
  }
  s.rstd = rsqrtf(warp_sum(sq) / static_cast<float>(k) + eps);
  return s;
}

// x = LayerNorm(x) * gamma + beta rounded to T (what the unfused LayerNorm would store), in the
// registers of a warp that holds the whole row. The first warp of block 0 also stores the row to
// `out` (16-byte pieces: kPerVec values of T) when out is not null.
template <class T, int kVecs, int kPerVec>
__device__ __forceinline__ void warp_layer_norm_row(float (&x)[kVecs][kPerVec],
                                                    const float (&g)[kVecs][kPerVec],
                                                    const float (&b)[kVecs][kPerVec], int vectors,
                                                    std::int64_t k, float eps, void* out) {
  static_assert(kPerVec * sizeof(T) == 16, "rows are stored in 16-byte pieces");
  const int lane = threadIdx.x % 32;
  const RowStats st = warp_row_stats<kVecs, kPerVec>(x, vectors, k, eps);
  const bool writer = blockIdx.x == 0 && threadIdx.x < 32 && out != nullptr;
#pragma unroll
  for (int u = 0; u < kVecs; ++u) {
    const int v = lane + 32 * u;
    if (v >= vectors) break;
    alignas(16) T normed[kPerVec];
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) {
      normed[e] = from_f32<T>((x[u][e] - st.mean) * st.rstd * g[u][e] + b[u][e]);
      x[u][e] = to_f32(normed[e]);
    }
    if (writer) reinterpret_cast<uint4*>(out)[v] = *reinterpret_cast<const uint4*>(normed);
  }
}

}  // namespace eaq::cuda
