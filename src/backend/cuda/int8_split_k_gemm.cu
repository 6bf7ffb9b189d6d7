// eaq's int8 GEMM for a few hundred rows (a 128-token prompt), the dequantization in its epilogue:
//   y[m, n] = act(acc[m, n] * (row_scale[m] * col_scale[n]) + bias[n]) + residual[m, n],
//   acc = x[m, :] . w[n, :]
// (launch_int8_gemm's contract, quant_kernels.hpp). At M = 128 the 128 x 128 tiles of
// int8_gemm.cu make 6 to 24 blocks for GPT-2's layers, on a 132-multiprocessor GPU: each block
// then walks all of K alone, latency bound (the MLP projection, K = 3072, took 30 us; kernel trace
// in docs/results.md). Here the tiles are 64 x 64 and K is split over the blocks of a
// thread-block cluster (Hopper; gridDim.z = cluster size <= 8) until the grid covers every
// multiprocessor, as split_k_gemm.cu does for f16. Each block leaves its i32 partial tile in
// shared memory; after a cluster barrier every block adds one slice of rows over all the
// cluster's tiles (distributed shared memory) and dequantizes and writes that slice. Integer sums
// are exact, so the result is int8_gemm.cu's to the bit. Reference: the host sums of
// test_cuda_quant.cpp, and the CPU int8 backend.
//
// Tensor cores through mma.sync.m16n8k32 (s8 x s8 -> s32), operands staged by a 4-stage cp.async
// pipeline (gemm_tile.cuh: 64 rows x 128 bytes of K a tile) and read with ldmatrix; 4 warps of
// 32 x 32. Fragment layouts as in int8_gemm.cu. The weights do not depend on the previous kernel:
// under programmatic dependent launch each block issues its first weight tiles before it waits.
#include <cstdint>

#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/gemm_tile.cuh"
#include "backend/cuda/quant_device.cuh"

namespace eaq::cuda {
namespace {

constexpr int kBlock = tile64::kRows;       // 64 x 64 output tile
constexpr int kBlockK = tile64::kRowBytes;  // 128 int8 values of K per k-tile
constexpr int kStages = 4;
constexpr int kSharedBytes = kStages * tile64::kStageBytes;  // 64 KB: three blocks per SM
constexpr int kPitch = kBlock + 4;  // i32 partial tile row; the padding spreads the banks
static_assert(kBlock * kPitch * 4 <= kSharedBytes, "the partial tile reuses the stages");

template <class T>
__global__ void __launch_bounds__(tile64::kThreads)
    int8_split_k_gemm_kernel(Int8GemmArgs a, int tiles_per_split) {
  extern __shared__ __align__(128) unsigned char shared[];
  const tile64::BlockTile b = tile64::block_tile(a.k, tiles_per_split);
  const std::int64_t m0 = b.m0, n0 = b.n0;

  int acc[2][4][4];  // [mi][ni][fragment], zeroed by k_loop

  // Prologue: the first weight tiles, then (once the previous kernel is done) the first input
  // tiles. The epilogue's operands load here too, so that it waits on no global memory: every
  // thread writes the same two columns of its rows (kThreads is a multiple of the 32 pairs of a
  // row), whose weight scales and bias are constant, and the rows' scales come from the previous
  // kernel.
  tile64::load_weight_tiles_ahead<kStages>(shared, a.w, n0, a.n, a.k, b.kt_begin, b.tiles);
  const std::int64_t my_col = n0 + (threadIdx.x % (kBlock / 2)) * 2;
  float col_scale[2] = {0.0f, 0.0f}, bias[2] = {0.0f, 0.0f};
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    if (my_col + e < a.n_out) {
      col_scale[e] = a.col_scales[my_col + e];
      if (a.bias != nullptr) bias[e] = a.bias[my_col + e];
    }
  }
  __shared__ float row_scale[kBlock];
  wait_for_previous_kernel();
  allow_dependent_launch();
  if (threadIdx.x < kBlock) {
    const std::int64_t row = m0 + threadIdx.x;
    row_scale[threadIdx.x] = row >= a.m                ? 0.0f
                             : a.row_scales != nullptr ? a.row_scales[row]
                                                       : a.static_row_scale;
  }
  tile64::load_input_tiles_ahead<kStages>(shared, a.x, m0, a.m, a.k, b.kt_begin, b.tiles);
  tile64::k_loop<kStages>(
      shared, a.x, m0, a.m, a.w, n0, a.n, a.k, b.kt_begin, b.tiles, b.warp_m, b.warp_n, acc,
      [](const unsigned(&af)[4], unsigned b0, unsigned b1, int(&c)[4]) { mma_s8(af, b0, b1, c); });

  // The accumulators as a [64][kPitch] i32 tile over the stage buffers; after the cluster
  // barrier (the cluster's blocks are this tile's splits), every split's tile is ready.
  int* partial = reinterpret_cast<int*>(shared);
  __syncthreads();  // every warp has finished reading the operand tiles
  tile64::store_partial(partial, kPitch, acc, b.warp_m, b.warp_n);
  const int splits = static_cast<int>(gridDim.z), rank = static_cast<int>(blockIdx.z);
  tile64::sync_splits(splits);
  __syncthreads();

  // Epilogue over this block's rows: the splits' partials added, then int8_gemm.cu's
  // dequantization. Two columns per thread and step, consecutive threads on consecutive columns.
  const int r_begin = rank * kBlock / splits, r_end = (rank + 1) * kBlock / splits;
  T* y = static_cast<T*>(a.y);
  const bool aligned = a.ldy % 2 == 0 && reinterpret_cast<std::uintptr_t>(y) % 4 == 0;
  constexpr int kPairsPerRow = kBlock / 2;
#pragma unroll 1
  for (int i = threadIdx.x; i < (r_end - r_begin) * kPairsPerRow; i += tile64::kThreads) {
    const int r = r_begin + i / kPairsPerRow, c = (i % kPairsPerRow) * 2;
    const std::int64_t row = m0 + r, col = n0 + c;
    if (row >= a.m || col >= a.n_out) continue;
    int sum0 = 0, sum1 = 0;
    tile64::sum_over_splits(partial, r * kPitch + c, splits, sum0, sum1);
    const bool both = col + 1 < a.n_out;
    float v0 = dequantize_value(sum0, row_scale[r], col_scale[0], bias[0], a.activation);
    float v1 = dequantize_value(sum1, row_scale[r], col_scale[1], bias[1], a.activation);
    if (a.residual != nullptr) {  // read before y is written (they may alias)
      const T* res = static_cast<const T*>(a.residual) + row * a.ldy + col;
      v0 += to_f32(res[0]);
      if (both) v1 += to_f32(res[1]);
    }
    tile64::store_pair(y + row * a.ldy + col, v0, v1, both, aligned);
  }
  tile64::sync_splits(splits);  // no block may leave while another still reads its tile
}

tile64::SplitPlan plan_for(const Int8GemmArgs& a) {
  const std::int64_t tiles = ((a.m + kBlock - 1) / kBlock) * ((a.n_out + kBlock - 1) / kBlock);
  return tile64::plan_split(tiles, static_cast<int>((a.k + kBlockK - 1) / kBlockK),
                            tile64::kMaxSplits);
}

template <class T>
void launch_typed(const Int8GemmArgs& a, cudaStream_t stream) {
  // More than the 48 KB of static shared memory: opt in once per instantiation (host-side, on
  // the first call, which comes before any graph capture).
  static const cudaError_t opted = cudaFuncSetAttribute(
      int8_split_k_gemm_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes);
  (void)opted;
  const tile64::SplitPlan p = plan_for(a);
  tile64::launch_split(int8_split_k_gemm_kernel<T>, (a.n_out + kBlock - 1) / kBlock,
                       (a.m + kBlock - 1) / kBlock, p, kSharedBytes, stream, a, p.tiles_per_split);
}

}  // namespace

int int8_split_k_gemm_splits(const Int8GemmArgs& a) {
  return plan_for(a).splits;
}

void launch_int8_split_k_gemm(DType act, const Int8GemmArgs& a, cudaStream_t stream) {
  if (a.m == 0 || a.n_out == 0) return;
  EAQ_DISPATCH_FLOAT(act, launch_typed<T>(a, stream));
}

}  // namespace eaq::cuda
