// eaq's GEMM for tens to a few hundred rows (a 128-token prefill, an encoder at batch 1):
//   y[m, n] = act(x[m, :] . w[n, :] + bias[n]) + residual[m, n]
// x [M, K] and w [N, K] K-contiguous f16/bf16, f32 accumulation. At M = 128 a cuBLASLt kernel's
// 128 x 128 (or larger) tiles cover 6-24 of the 132 multiprocessors for GPT-2's layers, and each
// tile walks all of K alone. Here the tiles are 64 x 64 and K is split over several blocks
// (gridDim.z) until the grid covers every multiprocessor; each block writes its f32 partial tile,
// and the last block of a tile to arrive adds the partials in split order (so the result does not
// depend on which block came last) and applies the epilogue. Reference: cpu_kernels.cpp gemm_f32.
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
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/quant_device.cuh"

namespace eaq::cuda {
namespace {

constexpr int kBlockM = 64, kBlockN = 64, kBlockK = 64;  // K in elements: 128-byte rows
constexpr int kStages = 4;
constexpr int kThreads = 128;  // 4 warps: 2 along M x 2 along N
constexpr int kWarpM = 32, kWarpN = 32;
constexpr int kRowBytes = kBlockK * 2;
constexpr int kTileBytes = kBlockM * kRowBytes;  // one operand tile (kBlockM == kBlockN)
constexpr int kStageBytes = 2 * kTileBytes;
constexpr int kSharedBytes = kStages * kStageBytes;  // 64 KB
constexpr int kTileElements = kBlockM * kBlockN;
constexpr int kMaxSplits = 8;

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a [64 x 128 B] tile. The 8 rows an
// ldmatrix reads at one logical chunk land on 8 different 16-byte bank groups.
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * kRowBytes + ((chunk ^ (row & 7)) << 4);
}

__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Copies 16 bytes, or zero-fills them when `valid` is false (rows or K beyond the matrix).
__device__ __forceinline__ void copy16(unsigned dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}

__device__ __forceinline__ void commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}

template <int kPending>
__device__ __forceinline__ void wait_pending() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned address, unsigned (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

template <class T>
__device__ __forceinline__ void mma(const unsigned (&a)[4], unsigned b0, unsigned b1,
                                    float (&c)[4]) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Loads k-tile `kt` of one operand (64 rows of `src`, `rows` valid, row stride k) into `tile`:
// 64 rows x 8 chunks, four chunks per thread.
template <class T>
__device__ __forceinline__ void load_tile(unsigned char* tile, const T* src, std::int64_t row0,
                                          std::int64_t rows, std::int64_t k, int kt) {
#pragma unroll
  for (int i = 0; i < kBlockM * 8 / kThreads; ++i) {
    const int id = threadIdx.x + i * kThreads;
    const int row = id / 8, chunk = id % 8;
    const std::int64_t col = static_cast<std::int64_t>(kt) * kBlockK + chunk * 8;
    const std::int64_t r = row0 + row;
    const bool ok = r < rows && col < k;  // k is a multiple of 8: a chunk is all in or all out
    // Out-of-range chunks read nothing but still need a valid address.
    copy16(shared_address(tile + swizzled(row, chunk)), ok ? src + r * k + col : src, ok);
  }
}

template <class T>
struct Pair;
template <>
struct Pair<__half> {
  using type = __half2;
  static __device__ __forceinline__ type make(float a, float b) { return __floats2half2_rn(a, b); }
};
template <>
struct Pair<__nv_bfloat16> {
  using type = __nv_bfloat162;
  static __device__ __forceinline__ type make(float a, float b) {
    return __floats2bfloat162_rn(a, b);
  }
};

template <class T>
__global__ void __launch_bounds__(kThreads)
    split_k_gemm_kernel(SplitKGemmArgs a, int tiles_per_split, SplitScratch scratch) {
  extern __shared__ __align__(128) unsigned char shared[];
  __shared__ bool last;
  const T* x = static_cast<const T*>(a.x);
  const T* w = static_cast<const T*>(a.w);
  const std::int64_t m0 = static_cast<std::int64_t>(blockIdx.y) * kBlockM;
  const std::int64_t n0 = static_cast<std::int64_t>(blockIdx.x) * kBlockN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warp_m = (warp / 2) * kWarpM;  // 0 or 32
  const int warp_n = (warp % 2) * kWarpN;  // 0 or 32
  const int k_tiles = static_cast<int>((a.k + kBlockK - 1) / kBlockK);
  const int kt_begin = static_cast<int>(blockIdx.z) * tiles_per_split;
  const int kt_end = min(k_tiles, kt_begin + tiles_per_split);
  const int tiles = kt_end - kt_begin;
  const auto a_tile = [&](int stage) { return shared + stage * kStageBytes; };
  const auto b_tile = [&](int stage) { return shared + stage * kStageBytes + kTileBytes; };

  float acc[2][4][4];  // [mi][ni][fragment]
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[mi][ni][r] = 0.0f;
    }
  }

  // Prologue: the first weight tiles, then (once the previous kernel is done) the first input
  // tiles. The weight copies join the first group: waiting for it waits for them too.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_tile(b_tile(s), w, n0, a.n, a.k, kt_begin + s);
  }
  wait_for_previous_kernel();
  allow_dependent_launch();
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_tile(a_tile(s), x, m0, a.m, a.k, kt_begin + s);
    commit();
  }

  for (int t = 0; t < tiles; ++t) {
    wait_pending<kStages - 2>();  // tile t has landed (for this thread's copies)
    __syncthreads();              // ... for every thread's, and stage (t - 1) is free again
    const int next = t + kStages - 1;
    if (next < tiles) {
      load_tile(a_tile(next % kStages), x, m0, a.m, a.k, kt_begin + next);
      load_tile(b_tile(next % kStages), w, n0, a.n, a.k, kt_begin + next);
    }
    commit();

    const unsigned char* at = a_tile(t % kStages);
    const unsigned char* bt = b_tile(t % kStages);
#pragma unroll
    for (int ks = 0; ks < kBlockK / 16; ++ks) {
      unsigned af[2][4], bf[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        // Matrices: rows 0-7 / 8-15 (lane bit 3) x chunk 2ks / 2ks+1 (lane bit 4).
        const int row = warp_m + mi * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
        const int chunk = 2 * ks + lane / 16;
        ldmatrix_x4(shared_address(at + swizzled(row, chunk)), af[mi]);
      }
#pragma unroll
      for (int nj = 0; nj < 2; ++nj) {
        // Matrices: n 0-7 x chunk 2ks, n 0-7 x 2ks+1, n 8-15 x 2ks, n 8-15 x 2ks+1.
        const int row = warp_n + nj * 16 + (lane % 8) + (lane / 16) * 8;
        const int chunk = 2 * ks + (lane / 8) % 2;
        ldmatrix_x4(shared_address(bt + swizzled(row, chunk)), bf[nj]);
      }
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          const unsigned* bn = bf[ni / 2] + (ni % 2) * 2;
          mma<T>(af[mi], bn[0], bn[1], acc[mi][ni]);
        }
      }
    }
  }
  wait_pending<0>();

  const int g = lane / 4, q = lane % 4;
  const int splits = static_cast<int>(gridDim.z);
  if (splits > 1) {
    // Partials: [split][tile][64 x 64] f32; each thread owns the same elements in every split.
    const std::int64_t tile = static_cast<std::int64_t>(blockIdx.y) * gridDim.x + blockIdx.x;
    const std::int64_t tile_count = static_cast<std::int64_t>(gridDim.x) * gridDim.y;
    const auto part = [&](int split) {
      return scratch.partials + (split * tile_count + tile) * kTileElements;
    };
    float* mine = part(static_cast<int>(blockIdx.z));
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int r = warp_m + mi * 16 + g + half * 8, c = warp_n + ni * 8 + 2 * q;
          *reinterpret_cast<float2*>(mine + r * kBlockN + c) =
              make_float2(acc[mi][ni][2 * half], acc[mi][ni][2 * half + 1]);
        }
      }
    }
    __threadfence();  // this block's partial is visible before its arrival is counted
    __syncthreads();
    if (threadIdx.x == 0) {
      last = atomicAdd(&scratch.counters[tile], 1u) == static_cast<unsigned>(splits - 1);
      if (last) scratch.counters[tile] = 0;  // ready for the next launch
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    // Sum the splits in order 0, 1, ... whichever block is last.
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int r = warp_m + mi * 16 + g + half * 8, c = warp_n + ni * 8 + 2 * q;
          float2 sum = make_float2(0.0f, 0.0f);
          for (int s = 0; s < splits; ++s) {
            const float2 v =
                s == static_cast<int>(blockIdx.z)
                    ? make_float2(acc[mi][ni][2 * half], acc[mi][ni][2 * half + 1])
                    : __ldcg(reinterpret_cast<const float2*>(part(s) + r * kBlockN + c));
            sum.x += v.x;
            sum.y += v.y;
          }
          acc[mi][ni][2 * half] = sum.x;
          acc[mi][ni][2 * half + 1] = sum.y;
        }
      }
    }
  }

  // Epilogue: bias, activation, residual (the order of the GEMV and of the CPU reference), one
  // rounding to T. Pairs of columns leave as one 32-bit store when n is even.
  const T* bias = static_cast<const T*>(a.bias);
  const T* residual = static_cast<const T*>(a.residual);
  T* y = static_cast<T*>(a.y);
  const bool pairs = a.n % 2 == 0;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const std::int64_t row = m0 + warp_m + mi * 16 + g + half * 8;
      if (row >= a.m) continue;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const std::int64_t col = n0 + warp_n + ni * 8 + 2 * q;
        float v[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          v[e] = 0.0f;
          if (col + e >= a.n) continue;
          float s = acc[mi][ni][2 * half + e];
          if (bias != nullptr) s += to_f32(bias[col + e]);
          s = apply_activation(s, a.activation);
          if (residual != nullptr) s += to_f32(residual[row * a.n + col + e]);
          v[e] = s;
        }
        T* out = y + row * a.n + col;
        if (pairs && col + 1 < a.n) {
          *reinterpret_cast<typename Pair<T>::type*>(out) = Pair<T>::make(v[0], v[1]);
        } else {
          if (col < a.n) out[0] = from_f32<T>(v[0]);
          if (col + 1 < a.n) out[1] = from_f32<T>(v[1]);
        }
      }
    }
  }
}

struct Plan {
  int splits = 1;
  int tiles_per_split = 1;
  std::int64_t tiles = 0;  // output tiles
};

// Splits K until the grid covers every multiprocessor, keeping at least two k-tiles per split (a
// split shorter than that spends most of its time writing and re-reading its partial).
Plan plan_for(std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t max_partial_floats,
              std::int64_t max_counters) {
  Plan p;
  p.tiles = ((m + kBlockM - 1) / kBlockM) * ((n + kBlockN - 1) / kBlockN);
  const int k_tiles = static_cast<int>((k + kBlockK - 1) / kBlockK);
  const std::int64_t sms = multiprocessor_count();
  std::int64_t splits = (sms + p.tiles - 1) / p.tiles;
  splits = std::min<std::int64_t>({splits, kMaxSplits, std::max(1, k_tiles / 2)});
  if (p.tiles > max_counters) splits = 1;
  while (splits > 1 && splits * p.tiles * kTileElements > max_partial_floats) --splits;
  p.tiles_per_split = (k_tiles + static_cast<int>(splits) - 1) / static_cast<int>(splits);
  p.splits = std::max(1, (k_tiles + p.tiles_per_split - 1) / p.tiles_per_split);
  return p;
}

}  // namespace

bool split_k_gemm_eligible(DType act, std::int64_t k, const void* x, const void* w) {
  if (act != DType::F16 && act != DType::BF16) return false;
  const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  return k > 0 && k % 8 == 0 && aligned(x) && aligned(w);
}

SplitNeed split_k_gemm_need(std::int64_t m, std::int64_t n, std::int64_t k) {
  const Plan p = plan_for(m, n, k, INT64_MAX, INT64_MAX);
  if (p.splits == 1) return {};
  return {p.splits * p.tiles * kTileElements, p.tiles};
}

int split_k_gemm_splits(const SplitKGemmArgs& a, const SplitScratch& scratch) {
  return plan_for(a.m, a.n, a.k, scratch.partial_floats, scratch.counter_count).splits;
}

void launch_split_k_gemm(DType act, const SplitKGemmArgs& a, const SplitScratch& scratch,
                         cudaStream_t stream) {
  if (a.m == 0 || a.n == 0) return;
  const Plan p = plan_for(a.m, a.n, a.k, scratch.partial_floats, scratch.counter_count);
  const dim3 grid(static_cast<unsigned>((a.n + kBlockN - 1) / kBlockN),
                  static_cast<unsigned>((a.m + kBlockM - 1) / kBlockM),
                  static_cast<unsigned>(p.splits));
  const auto launch = [&](auto kernel) {
    // More than the 48 KB of static shared memory: opt in once per instantiation (host-side, on
    // the first call, which comes before any graph capture).
    static const cudaError_t opted =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes);
    (void)opted;
    launch_dependent(kernel, grid, dim3(kThreads), kSharedBytes, stream, a, p.tiles_per_split,
                     scratch);
  };
  if (act == DType::F16)
    launch(split_k_gemm_kernel<__half>);
  else if (act == DType::BF16)
    launch(split_k_gemm_kernel<__nv_bfloat16>);
}

}  // namespace eaq::cuda
