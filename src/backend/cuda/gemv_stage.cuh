// What the GEMV kernels (gemv.cu, quantized_gemv.cu) share: the block shape, staging the input
// rows in shared memory as f32 (optionally after a LayerNorm), and the grid size that keeps every
// block resident. Reference of the LayerNorm: cpu_kernels.cpp layer_norm_f32.
#pragma once

#include <cstdint>

#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/env_switch.hpp"

namespace eaq::cuda {

constexpr int kGemvWarps = 4;  // one warp per output feature at a time
constexpr int kGemvThreads = 32 * kGemvWarps;

// Sums one value per row over the block; every thread gets the totals.
template <int kRows>
__device__ void block_sum_rows(float (&v)[kRows], float (*scratch)[kGemvWarps]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float s = warp_sum(v[r]);
    if (lane == 0) scratch[r][warp] = s;
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kGemvWarps; ++w) total += scratch[r][w];
    v[r] = total;
  }
  __syncthreads();  // scratch is reused by the next reduction
}

// Stages x (rows r < kRows, row stride a.k) in shared memory as f32; with LayerNorm parameters
// (a.ln_gamma, a.ln_beta, a.ln_eps), xs = LayerNorm(x + a.ln_residual) rounded to T (what the
// unfused LayerNorm would store), and block 0 writes the normalized rows to a.ln_out.
template <class T, int kRows, class Args>
__device__ void stage_rows(const Args& a, const T* x, float* xs) {
  const std::int64_t k = a.k;
  float sum[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) sum[r] = 0.0f;
  const T* res = static_cast<const T*>(a.ln_residual);
  for (std::int64_t c = threadIdx.x; c < k; c += kGemvThreads) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float v = to_f32(x[r * k + c]);
      if (res) v += to_f32(res[r * k + c]);
      xs[r * k + c] = v;
      sum[r] += v;
    }
  }
  if (a.ln_gamma == nullptr) {
    __syncthreads();
    return;
  }
  __shared__ float scratch[kRows][kGemvWarps];
  block_sum_rows<kRows>(sum, scratch);
  float mean[kRows], var[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    mean[r] = sum[r] / static_cast<float>(k);
    var[r] = 0.0f;
  }
  for (std::int64_t c = threadIdx.x; c < k; c += kGemvThreads) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float d = xs[r * k + c] - mean[r];
      var[r] += d * d;
    }
  }
  block_sum_rows<kRows>(var, scratch);
  T* ln_out = static_cast<T*>(a.ln_out);
  // __ldg: gamma and beta are read-only here, so their loads need not wait for the stores above.
  for (std::int64_t c = threadIdx.x; c < k; c += kGemvThreads) {
    const float g = __ldg(a.ln_gamma + c), b = __ldg(a.ln_beta + c);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float rstd = rsqrtf(var[r] / static_cast<float>(k) + a.ln_eps);
      const T normed = from_f32<T>((xs[r * k + c] - mean[r]) * rstd * g + b);
      xs[r * k + c] = to_f32(normed);
      if (blockIdx.x == 0 && ln_out) ln_out[r * k + c] = normed;
    }
  }
  __syncthreads();
}

// Blocks of `kernel` (kGemvThreads threads, `shared` bytes of dynamic shared memory) that fit on
// one multiprocessor, asked of the occupancy API once per (device, kernel, shared size): host work
// that launches outside a graph (the profiler, --no-cuda-graphs) would otherwise pay on every call.
int gemv_blocks_per_multiprocessor(const void* kernel, std::size_t shared);

// Whether one row of k > 768 may run the register kernels (kVecs = 12) instead of the shared-memory
// ones: EAQ_WIDE_ROW_GEMV=0 says no (to measure what they buy); read at every launch.
inline bool wide_row_gemv_enabled() {
  return !env_is("EAQ_WIDE_ROW_GEMV", "0");
}

// As many blocks as n features need (kGemvWarps a block, features_per_warp a warp), at most as
// many as fit on the GPU at once.
unsigned gemv_grid(const void* kernel, std::size_t shared, std::int64_t n,
                   int features_per_warp = 1);

// The register row kernels' LayerNorm forms (gemv.cu, quantized_gemv.cu) load this many features'
// weights a warp before the wait.
constexpr int kRowFeaturesAhead = 2;
// Features a warp of those forms takes: two (half the blocks, leaving the next kernel room to
// start early) where one a warp would take more than two blocks a multiprocessor (c_fc, the LM
// head), else one (the attention projection's 192 blocks start earlier beside the attention
// kernel as they are).
int row_features_per_warp(std::int64_t n);

// A row kernel's weights for a warp's next kAhead features (feature, feature + stride, ...) in
// registers, wv[0] the one being computed; load_row(f, wv[r]) reads feature f's pieces.
template <class Piece, int kAhead, int kVecs, class LoadRow>
__device__ __forceinline__ void load_features_ahead(Piece (&wv)[kAhead][kVecs],
                                                    std::int64_t feature, std::int64_t stride,
                                                    std::int64_t n, const LoadRow& load_row) {
#pragma unroll
  for (int r = 0; r < kAhead; ++r) {
    if (feature + r * stride < n) load_row(feature + r * stride, wv[r]);
  }
}

// Once wv[0] is used: the later features' weights move up and the one after them loads (before
// the used feature's reduction). `next` is the feature wv[1] (or the new wv[0]) belongs to.
template <class Piece, int kAhead, int kVecs, class LoadRow>
__device__ __forceinline__ void advance_features_ahead(Piece (&wv)[kAhead][kVecs],
                                                       std::int64_t next, std::int64_t stride,
                                                       std::int64_t n, const LoadRow& load_row) {
#pragma unroll
  for (int r = 0; r + 1 < kAhead; ++r) {
#pragma unroll
    for (int u = 0; u < kVecs; ++u) wv[r][u] = wv[r + 1][u];
  }
  if (next + (kAhead - 1) * stride < n) load_row(next + (kAhead - 1) * stride, wv[kAhead - 1]);
}

}  // namespace eaq::cuda
