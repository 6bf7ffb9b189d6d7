// eaq's GEMM for tens to a few hundred rows (a 128-token prefill, a batch-32 decode step):
//   y[m, n] = act(x[m, :] . w[n, :] + bias[n]) + residual[m, n]
// x [M, K] and w [N, K] K-contiguous f16/bf16, f32 accumulation. The idea: at M = 128, GPT-2's
// layers have too few output tiles to fill 132 multiprocessors, so split K as well. Measured
// (docs/results.md), cuBLASLt's small-tile Hopper kernels are still faster on all but one GPT-2
// shape, so the CUDA backend uses this kernel only with EAQ_SPLIT_K_GEMM=1 (a benchmarked
// variant, not the default). Here the tiles are 64 x 64 and, on Hopper, K is split over the
// blocks of a thread-block cluster (gridDim.z = cluster size <= 8) until the grid covers every
// multiprocessor. Each block leaves its f32 partial tile in its shared memory; after a cluster
// barrier every block adds one slice of rows over all the cluster's tiles (distributed shared
// memory, in split order: the result does not depend on timing) and writes that slice. No
// partials go through global memory and no counters are needed. Reference: cpu_kernels.cpp
// gemm_f32.
//
// Tensor cores through mma.sync.m16n8k16 (f16/bf16 -> f32), operands staged by a 4-stage cp.async
// pipeline into XOR-swizzled shared memory and read with ldmatrix; 4 warps of 32 x 32 each.
// Fragment layouts (PTX ISA, "mma.m16n8k16" for .f16/.bf16): with g = lane / 4, t = lane % 4,
//   A: a0 = A[g][2t, 2t+1], a1 = A[g+8][2t..], a2 = A[g][8+2t..], a3 = A[g+8][8+2t..]
//   B: b0 = B[k = 2t, 2t+1][n = g], b1 = B[k = 8+2t..][n = g]
//   C: c0, c1 = C[g][2t, 2t+1], c2, c3 = C[g+8][2t, 2t+1]
// ldmatrix.x4 hands lane l the 32 bits at row l / 4, elements 2 (l % 4).. of each of four 8 x 8
// matrices, which for K-contiguous rows is exactly a0..a3 (matrices: rows 0-7 / 8-15 x k 0-7 /
// 8-15) and b0, b1 of two n8 tiles (n rows 0-7 / 8-15 x k 0-7 / 8-15).
//
// The weights do not depend on the previous kernel: under programmatic dependent launch each
// block issues its first weight tiles before it waits for that kernel (dependent_launch.cuh).
// The epilogue's bias and residual rows are copied to shared memory with the first input tile,
// so the epilogue itself reads no global memory; it and the reduction are plain loops (a fully
// unrolled epilogue was most of the kernel's code, run once per block on a cold instruction
// cache: 20 us per call in ncu).
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/gemm_tile.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/mma_copy.cuh"
#include "backend/cuda/quant_device.cuh"

namespace eaq::cuda {
namespace {

constexpr int kBlockM = 64, kBlockN = 64, kBlockK = 64;  // K in elements: 128-byte rows
constexpr int kStages = 4;
constexpr int kThreads = tile64::kThreads;  // 4 warps: 2 along M x 2 along N
static_assert(kBlockM == tile64::kRows && kBlockK * 2 == tile64::kRowBytes, "gemm_tile.cuh tiles");
constexpr int kTileElements = kBlockM * kBlockN;
// The pipeline's stages, then the epilogue's residual tile and bias row (in the output dtype).
constexpr int kResidualOffset = kStages * tile64::kStageBytes;  // 64 KB
constexpr int kBiasOffset = kResidualOffset + kTileElements * 2;
constexpr int kSharedBytes = kBiasOffset + kBlockN * 2;  // ~72 KB: three blocks per SM
constexpr int kPitch = kBlockN + 4;  // f32 tile row (floats); the padding spreads the banks

// Copies rows [r_begin, r_end) x 64 columns of a [rows, n] matrix at (row0, col0) into a [64][64]
// tile (zero past the matrix); n a multiple of 8 and 16-byte aligned rows.
template <class T>
__device__ __forceinline__ void load_rows(T* tile, const T* src, std::int64_t row0,
                                          std::int64_t col0, std::int64_t rows, std::int64_t n,
                                          int r_begin, int r_end) {
  for (int id = r_begin * 8 + static_cast<int>(threadIdx.x); id < r_end * 8; id += kThreads) {
    const int r = id / 8, chunk = id % 8;
    const std::int64_t row = row0 + r, col = col0 + chunk * 8;
    const bool ok = row < rows && col < n;
    copy16(shared_address(tile + r * kBlockN + chunk * 8), ok ? src + row * n + col : src, ok);
  }
}

// `staged`: n a multiple of 8 and y, bias and residual 16-byte aligned (every GPT-2 and BERT
// layer), so bias and residual can be copied to shared memory; otherwise the epilogue reads them
// from global memory.
template <class T>
__global__ void __launch_bounds__(kThreads)
    split_k_gemm_kernel(SplitKGemmArgs a, int tiles_per_split, bool staged) {
  extern __shared__ __align__(128) unsigned char shared[];
  const T* x = static_cast<const T*>(a.x);
  const T* w = static_cast<const T*>(a.w);
  const std::int64_t row_bytes = a.k * 2;
  const tile64::BlockTile b = tile64::block_tile(row_bytes, tiles_per_split);
  const std::int64_t m0 = b.m0, n0 = b.n0;

  float acc[2][4][4];  // [mi][ni][fragment], zeroed by k_loop

  // Prologue: the first weight tiles, then (once the previous kernel is done) the first input
  // tiles (the epilogue's copies join their first group).
  tile64::load_weight_tiles_ahead<kStages>(shared, w, n0, a.n, row_bytes, b.kt_begin, b.tiles);
  wait_for_previous_kernel();
  allow_dependent_launch();
  // The rows this block writes in the end (all 64 without a split), and its epilogue operands.
  const int splits = static_cast<int>(gridDim.z), rank = static_cast<int>(blockIdx.z);
  const int r_begin = rank * kBlockM / splits, r_end = (rank + 1) * kBlockM / splits;
  T* residual_tile = reinterpret_cast<T*>(shared + kResidualOffset);  // [64][64]
  T* bias_row = reinterpret_cast<T*>(shared + kBiasOffset);           // [64]
  if (staged) {
    if (a.residual != nullptr) {
      load_rows(residual_tile, static_cast<const T*>(a.residual), m0, n0, a.m, a.n, r_begin, r_end);
    }
    if (a.bias != nullptr && threadIdx.x < 8) {
      const std::int64_t col = n0 + threadIdx.x * 8;
      const T* bias = static_cast<const T*>(a.bias);
      copy16(shared_address(bias_row + threadIdx.x * 8), col < a.n ? bias + col : bias, col < a.n);
    }
  }
  tile64::load_input_tiles_ahead<kStages>(shared, x, m0, a.m, row_bytes, b.kt_begin, b.tiles);
  tile64::k_loop<kStages>(shared, x, m0, a.m, w, n0, a.n, row_bytes, b.kt_begin, b.tiles, b.warp_m,
                          b.warp_n, acc,
                          [](const unsigned(&af)[4], unsigned b0, unsigned b1, float(&c)[4]) {
                            mma_f16<T>(af, b0, b1, c);
                          });  // (it waits for the residual and bias copies too)

  // The accumulators as a [64][kPitch] f32 tile over the stage buffers; after the cluster
  // barrier (the cluster's blocks are this tile's splits), every split's tile is ready.
  float* tile_f32 = reinterpret_cast<float*>(shared);
  __syncthreads();  // every warp has finished reading the operand tiles
  tile64::store_partial(tile_f32, kPitch, acc, b.warp_m, b.warp_n);
  tile64::sync_splits(splits);
  __syncthreads();

  // Epilogue over rows [r_begin, r_end): the splits' partials added in split order, then bias,
  // activation, residual (the order of the GEMV and of the CPU reference), one rounding to T.
  // Two columns per thread and step, consecutive threads on consecutive columns.
  const T* bias = static_cast<const T*>(a.bias);
  const T* residual = static_cast<const T*>(a.residual);
  T* y = static_cast<T*>(a.y);
  const bool aligned = a.n % 2 == 0 && reinterpret_cast<std::uintptr_t>(y) % 4 == 0;
  constexpr int kPairsPerRow = kBlockN / 2;
#pragma unroll 1
  for (int i = threadIdx.x; i < (r_end - r_begin) * kPairsPerRow; i += kThreads) {
    const int r = r_begin + i / kPairsPerRow, c = (i % kPairsPerRow) * 2;
    const std::int64_t row = m0 + r, col = n0 + c;
    if (row >= a.m || col >= a.n) continue;
    float v[2];
    tile64::sum_over_splits(tile_f32, r * kPitch + c, splits, v[0], v[1]);
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      if (col + e >= a.n) continue;
      if (bias != nullptr) v[e] += to_f32(staged ? bias_row[c + e] : bias[col + e]);
      v[e] = apply_activation(v[e], a.activation);
      if (residual != nullptr) {
        v[e] += to_f32(staged ? residual_tile[r * kBlockN + c + e] : residual[row * a.n + col + e]);
      }
    }
    tile64::store_pair(y + row * a.n + col, v[0], v[1], col + 1 < a.n, aligned);
  }
  tile64::sync_splits(splits);  // no block may leave while another still reads its tile
}

tile64::SplitPlan plan_for(const SplitKGemmArgs& a) {
  const std::int64_t tiles = ((a.m + kBlockM - 1) / kBlockM) * ((a.n + kBlockN - 1) / kBlockN);
  return tile64::plan_split(tiles, static_cast<int>((a.k + kBlockK - 1) / kBlockK), a.max_splits);
}

template <class T>
void launch_typed(const SplitKGemmArgs& a, cudaStream_t stream) {
  // More than the 48 KB of static shared memory: opt in once per instantiation (host-side, on
  // the first call, which comes before any graph capture).
  static const cudaError_t opted = cudaFuncSetAttribute(
      split_k_gemm_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes);
  (void)opted;
  const tile64::SplitPlan p = plan_for(a);
  const bool staged = a.n % 8 == 0 && aligned16(a.y) && (!a.bias || aligned16(a.bias)) &&
                      (!a.residual || aligned16(a.residual));
  tile64::launch_split(split_k_gemm_kernel<T>, (a.n + kBlockN - 1) / kBlockN,
                       (a.m + kBlockM - 1) / kBlockM, p, kSharedBytes, stream, a, p.tiles_per_split,
                       staged);
}

}  // namespace

bool split_k_gemm_eligible(DType act, std::int64_t k, const void* x, const void* w) {
  if (act != DType::F16 && act != DType::BF16) return false;
  return k > 0 && k % 8 == 0 && aligned16(x) && aligned16(w);
}

int split_k_gemm_splits(const SplitKGemmArgs& a) {
  return plan_for(a).splits;
}

void launch_split_k_gemm(DType act, const SplitKGemmArgs& a, cudaStream_t stream) {
  if (a.m == 0 || a.n == 0) return;
  if (act == DType::F16)
    launch_typed<__half>(a, stream);
  else if (act == DType::BF16)
    launch_typed<__nv_bfloat16>(a, stream);
}

}  // namespace eaq::cuda
