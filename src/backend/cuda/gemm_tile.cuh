// The operand tiles of eaq's small-tile mma.sync GEMMs (split_k_gemm.cu for f16/bf16,
// int8_split_k_gemm.cu for int8): 64 rows of 128 bytes (64 f16 or 128 int8 values of K) in
// XOR-swizzled shared memory, filled by cp.async and read into mma fragments with ldmatrix. The
// byte layout is the same for both element types: an m16n8k16 f16 fragment and an m16n8k32 int8
// fragment are both 16 rows x 32 bytes.
#pragma once

#include <cstdint>

#include "backend/cuda/mma_copy.cuh"

namespace eaq::cuda::tile64 {

constexpr int kRows = 64;       // rows of an operand tile (M or N)
constexpr int kRowBytes = 128;  // bytes of K per row and k-tile
constexpr int kTileBytes = kRows * kRowBytes;
constexpr int kWarpRows = 32;  // each of the 4 warps computes 32 x 32 of the 64 x 64 tile

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row`. The 8 rows an ldmatrix reads at one
// logical chunk land on 8 different 16-byte bank groups.
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * kRowBytes + ((chunk ^ (row & 7)) << 4);
}

// Copies k-tile `kt` of 64 rows of `src` (rows [row0, row0 + 64) of `rows`, each `row_bytes`
// long, a multiple of 16: a chunk is all in or all out) into `tile`; rows and chunks beyond the
// matrix are zero-filled.
template <int kThreads>
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

}  // namespace eaq::cuda::tile64
