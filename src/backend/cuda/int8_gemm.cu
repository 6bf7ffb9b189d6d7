// eaq's own int8 GEMM with the dequantization fused into its epilogue:
//   y[m, n] = act(acc[m, n] * (row_scale[m] * col_scale[n]) + bias[n]),  acc = sum_k x[m, k] w[n,
//   k]
// x [M, K] and w [N, K] int8, both K-contiguous (the TN layout of the cuBLASLt path), y in the
// activation dtype. Unlike cuBLASLt's IMMA kernels, which can only write i32 (or requantized
// int8), the accumulators never leave registers: the i32 round trip through memory and the
// separate dequantization pass disappear.
//
// Tensor cores through mma.sync.m16n8k32 (s8 x s8 -> s32, sm_80 and newer), operands staged by a
// 3-stage cp.async pipeline into XOR-swizzled shared memory and read with ldmatrix. Block tile
// 128 x 128 x 64, 8 warps of 64 x 32 each.
//
// Fragment layouts (PTX ISA, "mma.m16n8k32" for .s8): with g = lane / 4 and t = lane % 4,
//   A: a0 = A[g][4t..4t+3], a1 = A[g+8][4t..], a2 = A[g][16+4t..], a3 = A[g+8][16+4t..]
//   B: b0 = B[k = 4t..4t+3][n = g], b1 = B[k = 16+4t..][n = g]
//   C: c0, c1 = C[g][2t, 2t+1], c2, c3 = C[g+8][2t, 2t+1]
// ldmatrix.x4 hands lane l the 4 bytes at row l / 4, bytes 4 (l % 4).. of each of four 8 x 16-byte
// matrices, which for K-contiguous int8 rows is exactly a0..a3 (matrices: rows 0-7 / 8-15 x
// k 0-15 / 16-31) and b0, b1 (n rows 0-7 x k 0-15 / 16-31).
#include <cstdint>

#include "backend/cuda/device_query.hpp"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/mma_copy.cuh"
#include "backend/cuda/quant_device.cuh"
#include "core/error.hpp"

namespace eaq::cuda {
namespace {

constexpr int kBlockM = 128, kBlockN = 128, kBlockK = 64;  // K in bytes = int8 elements
constexpr int kStages = 3;
constexpr int kThreads = 256;  // 8 warps: 2 along M x 4 along N
constexpr int kWarpM = 64, kWarpN = 32;
constexpr int kTileBytes = kBlockM * kBlockK;  // one operand tile (A and B are the same size)
constexpr int kSharedBytes = kStages * 2 * kTileBytes;

// Byte offset of 16-byte chunk `chunk` (0..3) of row `row` in a [128 x 64 B] tile. Rows are 64 B
// (16 banks); swizzling the chunk with bits 1-2 of the row makes the 8 rows an ldmatrix reads at
// the same logical chunk land on 8 different 16-byte bank groups.
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * kBlockK + ((chunk ^ ((row >> 1) & 3)) << 4);
}

// Loads the k-tile `kt` of both operands into stage `stage`: 128 rows x 4 chunks per operand,
// two chunks of each per thread.
__device__ __forceinline__ void load_tiles(unsigned char* shared, int stage, int kt,
                                           const std::int8_t* x, const std::int8_t* w,
                                           std::int64_t m0, std::int64_t n0, std::int64_t m,
                                           std::int64_t n, std::int64_t k) {
  unsigned char* a_tile = shared + stage * 2 * kTileBytes;
  unsigned char* b_tile = a_tile + kTileBytes;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int id = threadIdx.x + i * kThreads;  // 0..511
    const int row = id / 4, chunk = id % 4;
    const std::int64_t col = static_cast<std::int64_t>(kt) * kBlockK + chunk * 16;
    const bool k_ok = col < k;  // k is a multiple of 16: a chunk is all in or all out
    const std::int64_t a_row = m0 + row, b_row = n0 + row;
    const bool a_ok = k_ok && a_row < m, b_ok = k_ok && b_row < n;
    // Out-of-range chunks read nothing but still need a valid address.
    copy16(shared_address(a_tile + swizzled(row, chunk)), a_ok ? x + a_row * k + col : x, a_ok);
    copy16(shared_address(b_tile + swizzled(row, chunk)), b_ok ? w + b_row * k + col : w, b_ok);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads, 2)
    int8_gemm_kernel(const std::int8_t* __restrict__ x, const std::int8_t* __restrict__ w,
                     std::int64_t m, std::int64_t n, std::int64_t k,
                     const float* __restrict__ row_scales, float static_row_scale,
                     const float* __restrict__ col_scales, const float* __restrict__ bias,
                     Activation activation, T* __restrict__ y, std::int64_t ldy,
                     std::int64_t n_out) {
  extern __shared__ __align__(128) unsigned char shared[];
  const std::int64_t m0 = static_cast<std::int64_t>(blockIdx.y) * kBlockM;
  const std::int64_t n0 = static_cast<std::int64_t>(blockIdx.x) * kBlockN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warp_m = (warp / 4) * kWarpM;  // 0 or 64
  const int warp_n = (warp % 4) * kWarpN;  // 0, 32, 64, 96
  const int k_tiles = static_cast<int>((k + kBlockK - 1) / kBlockK);

  int acc[4][4][4];  // [mi][ni][fragment]
#pragma unroll
  for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[mi][ni][r] = 0;
    }
  }

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_tiles(shared, s, s, x, w, m0, n0, m, n, k);
    commit();
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    wait_pending<kStages - 2>();  // tile kt has landed (for this thread's copies)
    __syncthreads();              // ... for every thread's, and stage (kt - 1) is free again
    const int next = kt + kStages - 1;
    if (next < k_tiles) load_tiles(shared, next % kStages, next, x, w, m0, n0, m, n, k);
    commit();

    const unsigned char* a_tile = shared + (kt % kStages) * 2 * kTileBytes;
    const unsigned char* b_tile = a_tile + kTileBytes;
#pragma unroll
    for (int ks = 0; ks < kBlockK / 32; ++ks) {
      unsigned a[4][4], b[2][4];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        // Matrices: rows 0-7 / 8-15 (lane bit 3) x chunk 2ks / 2ks+1 (lane bit 4).
        const int row = warp_m + mi * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
        const int chunk = 2 * ks + lane / 16;
        ldmatrix_x4(shared_address(a_tile + swizzled(row, chunk)), a[mi]);
      }
#pragma unroll
      for (int nj = 0; nj < 2; ++nj) {
        // Matrices: n 0-7 x chunk 2ks, n 0-7 x 2ks+1, n 8-15 x 2ks, n 8-15 x 2ks+1.
        const int row = warp_n + nj * 16 + (lane % 8) + (lane / 16) * 8;
        const int chunk = 2 * ks + (lane / 8) % 2;
        ldmatrix_x4(shared_address(b_tile + swizzled(row, chunk)), b[nj]);
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          const unsigned* bn = b[ni / 2] + (ni % 2) * 2;
          mma_s8(a[mi], bn[0], bn[1], acc[mi][ni]);
        }
      }
    }
  }
  wait_pending<0>();

  // Epilogue: dequantize, bias, activation (the formula of quantize.cu's DequantizeSource), then
  // store. 16-bit outputs go through shared memory so that each row leaves in 16-byte stores;
  // straight from the fragments a warp would write 16-byte pieces of 8 rows.
  const int g = lane / 4, t = lane % 4;
  if constexpr (sizeof(T) == 2) {
    constexpr int kPitch = kBlockN + 8;  // elements; the padding spreads rows over the banks
    static_assert(kBlockM * kPitch * 2 <= kSharedBytes, "output tile must fit in shared memory");
    __syncthreads();  // every warp has finished reading the operand tiles
    T* tile = reinterpret_cast<T*>(shared);
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int local_row = warp_m + mi * 16 + g + half * 8;
        const std::int64_t row = m0 + local_row;
        const float rs = row >= m                ? 0.0f
                         : row_scales != nullptr ? row_scales[row]
                                                 : static_row_scale;
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          const std::int64_t col = n0 + warp_n + ni * 8 + 2 * t;
          T* out = tile + local_row * kPitch + warp_n + ni * 8 + 2 * t;
          out[0] = from_f32<T>(
              dequantize(acc[mi][ni][half * 2], rs, col, n_out, col_scales, bias, activation));
          out[1] = from_f32<T>(dequantize(acc[mi][ni][half * 2 + 1], rs, col + 1, n_out, col_scales,
                                          bias, activation));
        }
      }
    }
    __syncthreads();
    const bool vector = ldy % 8 == 0 && reinterpret_cast<std::uintptr_t>(y) % 16 == 0;
    for (int id = threadIdx.x; id < kBlockM * (kBlockN / 8); id += kThreads) {
      const int local_row = id / (kBlockN / 8), chunk = id % (kBlockN / 8);
      const std::int64_t row = m0 + local_row, col = n0 + chunk * 8;
      if (row >= m || col >= n_out) continue;
      const T* src = tile + local_row * kPitch + chunk * 8;
      T* dst = y + row * ldy + col;
      if (vector && col + 8 <= n_out) {
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
      } else {
        for (int i = 0; i < 8 && col + i < n_out; ++i) dst[i] = src[i];
      }
    }
  } else {
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const std::int64_t row = m0 + warp_m + mi * 16 + g + half * 8;
        if (row >= m) continue;
        const float rs = row_scales != nullptr ? row_scales[row] : static_row_scale;
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const std::int64_t col = n0 + warp_n + ni * 8 + 2 * t + e;
            if (col < n_out) {
              y[row * ldy + col] = from_f32<T>(dequantize(acc[mi][ni][half * 2 + e], rs, col, n_out,
                                                          col_scales, bias, activation));
            }
          }
        }
      }
    }
  }
}

}  // namespace

Int8GemmKernel int8_gemm_kernel_for(std::int64_t m, std::int64_t n) {
  static const bool split_k_off = env_is("EAQ_INT8_SPLIT_K", "0");
  const std::int64_t tiles = ((m + kBlockM - 1) / kBlockM) * ((n + kBlockN - 1) / kBlockN);
  return split_k_off || tiles >= multiprocessor_count() ? Int8GemmKernel::Tiles128
                                                        : Int8GemmKernel::SplitK64;
}

void launch_int8_gemm(DType act, const Int8GemmArgs& a, cudaStream_t stream,
                      Int8GemmKernel kernel) {
  if (a.m == 0 || a.n_out == 0) return;
  if (kernel == Int8GemmKernel::Auto) kernel = int8_gemm_kernel_for(a.m, a.n);
  if (kernel == Int8GemmKernel::SplitK64) {
    launch_int8_split_k_gemm(act, a, stream);
    return;
  }
  // This kernel has no residual epilogue: read in its fragment layout, the residual made a
  // 128-token prompt's 24 such GEMMs ~0.5 ms slower (int8split-gpt2, docs/results.md), far more
  // than the adds it saved.
  EAQ_CHECK(a.residual == nullptr, "launch_int8_gemm: the 128 x 128 kernel takes no residual");
  const dim3 grid(static_cast<unsigned>((a.n + kBlockN - 1) / kBlockN),
                  static_cast<unsigned>((a.m + kBlockM - 1) / kBlockM));
  EAQ_DISPATCH_FLOAT(act, {
    // More than the 48 KB of static shared memory: opt in once per instantiation (host-side,
    // outside any graph capture: the first forward runs before it).
    static const cudaError_t opted = cudaFuncSetAttribute(
        int8_gemm_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes);
    (void)opted;
    int8_gemm_kernel<T><<<grid, kThreads, kSharedBytes, stream>>>(
        a.x, a.w, a.m, a.n, a.k, a.row_scales, a.static_row_scale, a.col_scales, a.bias,
        a.activation, static_cast<T*>(a.y), a.ldy, a.n_out);
  });
}

}  // namespace eaq::cuda
