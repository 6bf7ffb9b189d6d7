// The operand tiles of eaq's small-tile mma.sync GEMMs (split_k_gemm.cu for f16/bf16,
// int8_split_k_gemm.cu for int8): 64 rows of 128 bytes (64 f16 or 128 int8 values of K) in
// XOR-swizzled shared memory, filled by cp.async and read into mma fragments with ldmatrix. The
// byte layout is the same for both element types: an m16n8k16 f16 fragment and an m16n8k32 int8
// fragment are both 16 rows x 32 bytes.
//
// Both kernels share the rest of their structure too, written here once: 4 warps of 32 x 32 on a
// 64 x 64 output tile, a cp.async pipeline over K whose first weight tiles are issued before the
// kernel waits for its predecessor (programmatic dependent launch), K split over the blocks of a
// thread-block cluster (Hopper), and the splits' partial tiles added through distributed shared
// memory in split order.
#pragma once

#include <cooperative_groups.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/device_query.hpp"
#include "backend/cuda/mma_copy.cuh"

namespace eaq::cuda::tile64 {

constexpr int kRows = 64;       // rows of an operand tile (M or N)
constexpr int kRowBytes = 128;  // bytes of K per row and k-tile
constexpr int kTileBytes = kRows * kRowBytes;
constexpr int kWarpRows = 32;  // each of the 4 warps computes 32 x 32 of the 64 x 64 tile
constexpr int kThreads = 128;  // 4 warps: 2 along M x 2 along N
constexpr int kStageBytes = 2 * kTileBytes;  // a pipeline stage: the input tile, then the weights'
constexpr int kMaxSplits = 8;                // the portable thread-block cluster size

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row`. The 8 rows an ldmatrix reads at one
// logical chunk land on 8 different 16-byte bank groups.
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * kRowBytes + ((chunk ^ (row & 7)) << 4);
}

// Copies k-tile `kt` of 64 rows of `src` (rows [row0, row0 + 64) of `rows`, each `row_bytes`
// long, a multiple of 16: a chunk is all in or all out) into `tile`; rows and chunks beyond the
// matrix are zero-filled.
__device__ __forceinline__ void load_tile(unsigned char* tile, const void* src, std::int64_t row0,
                                          std::int64_t rows, std::int64_t row_bytes, int kt) {
  const auto* bytes = static_cast<const unsigned char*>(src);
#pragma unroll
  for (int i = 0; i < kRows * 8 / kThreads; ++i) {
    const int id = threadIdx.x + i * kThreads;
    const int row = id / 8, chunk = id % 8;
    const std::int64_t col = static_cast<std::int64_t>(kt) * kRowBytes + chunk * 16;
    const std::int64_t r = row0 + row;
    const bool ok = r < rows && col < row_bytes;
    // Out-of-range chunks read nothing but still need a valid address.
    copy16(shared_address(tile + swizzled(row, chunk)), ok ? bytes + r * row_bytes + col : bytes,
           ok);
  }
}

// The fragments of 32-byte step `ks` (0..3) of a k-tile for the warp at (warp_m, warp_n): A for
// its two 16-row slices, B for its four 8-column slices (two ldmatrix.x4 of 16 n-rows each).
__device__ __forceinline__ void load_fragments(const unsigned char* a_tile,
                                               const unsigned char* b_tile, int warp_m, int warp_n,
                                               int ks, unsigned (&af)[2][4], unsigned (&bf)[2][4]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
    // Matrices: rows 0-7 / 8-15 (lane bit 3) x chunk 2ks / 2ks+1 (lane bit 4).
    const int row = warp_m + mi * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
    const int chunk = 2 * ks + lane / 16;
    ldmatrix_x4(shared_address(a_tile + swizzled(row, chunk)), af[mi]);
  }
#pragma unroll
  for (int nj = 0; nj < 2; ++nj) {
    // Matrices: n 0-7 x chunk 2ks, n 0-7 x 2ks+1, n 8-15 x 2ks, n 8-15 x 2ks+1.
    const int row = warp_n + nj * 16 + (lane % 8) + (lane / 16) * 8;
    const int chunk = 2 * ks + (lane / 8) % 2;
    ldmatrix_x4(shared_address(b_tile + swizzled(row, chunk)), bf[nj]);
  }
}

// Where this block works: its output tile at (m0, n0) (grid x over N, y over M), its warp's
// 32 x 32 of it, and its split's k-tiles [kt_begin, kt_begin + tiles) of K (`row_bytes` long).
struct BlockTile {
  std::int64_t m0 = 0, n0 = 0;
  int warp_m = 0, warp_n = 0;
  int kt_begin = 0, tiles = 0;
};
__device__ __forceinline__ BlockTile block_tile(std::int64_t row_bytes, int tiles_per_split) {
  BlockTile b;
  b.m0 = static_cast<std::int64_t>(blockIdx.y) * kRows;
  b.n0 = static_cast<std::int64_t>(blockIdx.x) * kRows;
  const int warp = threadIdx.x / 32;
  b.warp_m = (warp / 2) * kWarpRows;  // 0 or 32
  b.warp_n = (warp % 2) * kWarpRows;  // 0 or 32
  const int k_tiles = static_cast<int>((row_bytes + kRowBytes - 1) / kRowBytes);
  b.kt_begin = static_cast<int>(blockIdx.z) * tiles_per_split;
  b.tiles = min(k_tiles, b.kt_begin + tiles_per_split) - b.kt_begin;
  return b;
}

// Two consecutive outputs, one 4-byte store for 16-bit T when both exist and `aligned` (out on a
// 4-byte boundary).
template <class T>
__device__ __forceinline__ void store_pair(T* out, float v0, float v1, bool both, bool aligned) {
  if constexpr (sizeof(T) == 2) {
    if (both && aligned) {
      alignas(4) T pair[2] = {from_f32<T>(v0), from_f32<T>(v1)};
      *reinterpret_cast<unsigned*>(out) = *reinterpret_cast<const unsigned*>(pair);
      return;
    }
  }
  out[0] = from_f32<T>(v0);
  if (both) out[1] = from_f32<T>(v1);
}

__device__ __forceinline__ unsigned char* input_tile(unsigned char* shared, int stage) {
  return shared + stage * kStageBytes;
}
__device__ __forceinline__ unsigned char* weight_tile(unsigned char* shared, int stage) {
  return shared + stage * kStageBytes + kTileBytes;
}

// The first kStages - 1 weight tiles of this block's `tiles` k-tiles from `kt_begin`, uncommitted:
// they join the first input group, and waiting for it waits for them too. Weights do not depend
// on the previous kernel: issue these before waiting for it.
template <int kStages>
__device__ __forceinline__ void load_weight_tiles_ahead(unsigned char* shared, const void* w,
                                                        std::int64_t n0, std::int64_t n,
                                                        std::int64_t row_bytes, int kt_begin,
                                                        int tiles) {
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_tile(weight_tile(shared, s), w, n0, n, row_bytes, kt_begin + s);
  }
}

// The first kStages - 1 input tiles, one committed group each.
template <int kStages>
__device__ __forceinline__ void load_input_tiles_ahead(unsigned char* shared, const void* x,
                                                       std::int64_t m0, std::int64_t m,
                                                       std::int64_t row_bytes, int kt_begin,
                                                       int tiles) {
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_tile(input_tile(shared, s), x, m0, m, row_bytes, kt_begin + s);
    commit();
  }
}

// The pipeline's main loop over the block's k-tiles (after the two loads ahead): waits for each
// tile, issues the one kStages - 1 ahead, and accumulates the warp's 2 x 4 m16n8 products of each
// 32-byte step, mma(a, b0, b1, c) each, into acc (zeroed first). Returns when every copy has
// landed.
template <int kStages, class Acc, class Mma>
__device__ __forceinline__ void k_loop(unsigned char* shared, const void* x, std::int64_t m0,
                                       std::int64_t m, const void* w, std::int64_t n0,
                                       std::int64_t n, std::int64_t row_bytes, int kt_begin,
                                       int tiles, int warp_m, int warp_n, Acc (&acc)[2][4][4],
                                       Mma mma) {
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[mi][ni][r] = Acc(0);
    }
  }
  for (int t = 0; t < tiles; ++t) {
    wait_pending<kStages - 2>();  // tile t has landed (for this thread's copies)
    __syncthreads();              // ... for every thread's, and stage (t - 1) is free again
    const int next = t + kStages - 1;
    if (next < tiles) {
      load_tile(input_tile(shared, next % kStages), x, m0, m, row_bytes, kt_begin + next);
      load_tile(weight_tile(shared, next % kStages), w, n0, n, row_bytes, kt_begin + next);
    }
    commit();
#pragma unroll
    for (int ks = 0; ks < kRowBytes / 32; ++ks) {
      unsigned af[2][4], bf[2][4];
      load_fragments(input_tile(shared, t % kStages), weight_tile(shared, t % kStages), warp_m,
                     warp_n, ks, af, bf);
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          const unsigned* bn = bf[ni / 2] + (ni % 2) * 2;
          mma(af[mi], bn[0], bn[1], acc[mi][ni]);
        }
      }
    }
  }
  wait_pending<0>();
}

// The warp's accumulators (mma C fragments: [mi][ni][4], Acc float or int) into a [64][pitch] tile.
template <class Acc>
__device__ __forceinline__ void store_partial(Acc* tile, int pitch, const Acc (&acc)[2][4][4],
                                              int warp_m, int warp_n) {
  using Pair = std::conditional_t<std::is_same_v<Acc, float>, float2, int2>;
  const int lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = warp_m + mi * 16 + g + half * 8, c = warp_n + ni * 8 + 2 * q;
        *reinterpret_cast<Pair*>(tile + r * pitch + c) = {acc[mi][ni][2 * half],
                                                          acc[mi][ni][2 * half + 1]};
      }
    }
  }
}

// Elements `offset` and `offset` + 1 of the partial tile summed over the cluster's `splits`
// blocks, in split order (so the sum does not depend on timing); without a split, this block's.
template <class Acc>
__device__ __forceinline__ void sum_over_splits(Acc* tile, int offset, int splits, Acc& s0,
                                                Acc& s1) {
  s0 = tile[offset];
  s1 = tile[offset + 1];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (splits > 1) {
    s0 = s1 = Acc(0);
#pragma unroll
    for (int z = 0; z < kMaxSplits; ++z) {
      if (z >= splits) break;
      const Acc* part = cooperative_groups::this_cluster().map_shared_rank(tile, z) + offset;
      s0 += part[0];
      s1 += part[1];
    }
  }
#endif
}

// A barrier across the cluster's blocks (the splits of one output tile); nothing without a split.
__device__ __forceinline__ void sync_splits(int splits) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (splits > 1) cooperative_groups::this_cluster().sync();
#else
  (void)splits;
#endif
}

struct SplitPlan {
  int splits = 1;
  int tiles_per_split = 1;
};

// Splits K (Hopper's clusters only) until `tiles` output tiles times the splits cover every
// multiprocessor, at most max_splits, keeping at least two k-tiles per split.
inline SplitPlan plan_split(std::int64_t tiles, int k_tiles, int max_splits) {
  SplitPlan p;
  std::int64_t splits = (multiprocessor_count() + tiles - 1) / tiles;
  splits = std::min<std::int64_t>(
      {splits, kMaxSplits, std::max(1, max_splits), std::max(1, k_tiles / 2)});
  if (!thread_block_clusters_supported()) splits = 1;
  p.tiles_per_split = (k_tiles + static_cast<int>(splits) - 1) / static_cast<int>(splits);
  p.splits = std::max(1, (k_tiles + p.tiles_per_split - 1) / p.tiles_per_split);
  return p;
}

// kernel<<<(grid_x, grid_y, plan.splits), kThreads, shared, stream>>>(args...), the splits of a
// tile in one cluster (1 x 1 x splits), allowed to overlap the previous kernel where the device
// supports dependent launch. The kernel's shared-memory opt-in is the caller's.
template <class... KernelArgs, class... Args>
void launch_split(void (*kernel)(KernelArgs...), std::int64_t grid_x, std::int64_t grid_y,
                  const SplitPlan& plan, std::size_t shared, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y),
                        static_cast<unsigned>(plan.splits));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  cudaLaunchAttribute attributes[2] = {};
  unsigned count = 0;
  if (plan.splits > 1) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count].val.clusterDim.x = 1;
    attributes[count].val.clusterDim.y = 1;
    attributes[count].val.clusterDim.z = static_cast<unsigned>(plan.splits);
    ++count;
  }
  if (dependent_launch_supported()) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count].val.programmaticStreamSerializationAllowed = 1;
    ++count;
  }
  config.attrs = attributes;
  config.numAttrs = count;
  EAQ_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<KernelArgs>(args)...));
}

}  // namespace eaq::cuda::tile64
