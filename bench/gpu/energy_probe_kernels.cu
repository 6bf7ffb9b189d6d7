// The synthetic kernels of eaq_energy_probe (energy_probe.cpp says what each one answers), with
// host-side launchers: the .cu files build as C++17, the probe's host code needs C++20.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "energy_probe_kernels.hpp"

namespace eaq::probe {
namespace {

constexpr int kBulkChunk = 32 * 1024;
constexpr int kBulkStages = 4;

__device__ unsigned smid() {
  unsigned id;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
  return id;
}

// Fills the buffer with pseudo-random bits: DRAM energy depends on how many bits toggle, and real
// weights look random.
__global__ void fill_random(uint4* data, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    std::uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    const std::uint64_t g = h * 0x94D049BB133111EBull;
    data[i] = make_uint4(unsigned(h), unsigned(h >> 32), unsigned(g), unsigned(g >> 32));
  }
}

// Reads `n` uint4 with a grid-stride loop, kUnroll 16-byte loads in flight per thread, and xors
// them so that the loads cannot be removed. Block b records its multiprocessor in sm_of_block[b].
template <int kUnroll>
__global__ void read_stream(const uint4* __restrict__ data, std::size_t n, unsigned* sink,
                            unsigned* sm_of_block) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  unsigned acc = 0;
  std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < n; i += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = __ldcs(data + i + u * stride);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n; i += stride) {
    const uint4 v = __ldcs(data + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9E3779B9u) sink[0] = acc;  // almost never: keeps the loads live
  if (threadIdx.x == 0 && blockIdx.x < kMaxBlocks) sm_of_block[blockIdx.x] = smid();
}

// The same, with L2-friendly loads (the data is meant to stay in L2 between passes).
__global__ void read_resident(const uint4* __restrict__ data, std::size_t n, int repeats,
                              unsigned* sink, unsigned* sm_of_block) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  unsigned acc = 0;
  for (int r = 0; r < repeats; ++r) {
    for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
      const uint4 v = __ldcg(data + i);
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
  }
  if (acc == 0x9E3779B9u) sink[0] = acc;
  if (threadIdx.x == 0 && blockIdx.x < kMaxBlocks) sm_of_block[blockIdx.x] = smid();
}

// A GEMV's arithmetic on the stream: every 16-byte load is 8 f16 weights, multiplied by an x held
// in registers and summed in f32, either on the CUDA cores (convert + FMA, as eaq's decode GEMVs
// do) or on the tensor cores (mma.sync m16n8k16 with x in the first column of B and zeros in the
// other seven). The loop is warp-uniform (mma.sync needs the whole warp): each warp reads chunks of
// 1 KB, two 16-byte loads per lane, kChunks chunks in flight.
enum class DotOn { kCudaCores, kTensorCores };

__device__ void mma_f16(float (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                        unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, "
      "%9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ float dot8(uint4 w, const float (&x)[8]) {
  const unsigned words[4] = {w.x, w.y, w.z, w.w};
  float acc = 0;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    __half2 h;
    memcpy(&h, &words[j], 4);
    const float2 f = __half22float2(h);
    acc = fmaf(f.x, x[2 * j], acc);
    acc = fmaf(f.y, x[2 * j + 1], acc);
  }
  return acc;
}

template <DotOn kOn>
__global__ void read_dot(const uint4* __restrict__ data, std::size_t n, unsigned* sink,
                         unsigned* sm_of_block) {
  constexpr int kChunks = 4;
  const unsigned lane = threadIdx.x % 32;
  const std::size_t warps = std::size_t(gridDim.x) * blockDim.x / 32;
  const std::size_t chunks = n / 64;
  float x[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) x[j] = 1e-3f * float(lane + j);
  // The B fragment: lanes 0-3 hold x (column 0), the other lanes zeros.
  unsigned b[4] = {0, 0, 0, 0};
  if (lane < 4) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const __half2 h = __floats2half2_rn(x[2 * j], x[2 * j + 1]);
      memcpy(&b[j], &h, 4);
    }
  }
  float acc = 0;
  float c[4] = {0, 0, 0, 0};
  for (std::size_t chunk = blockIdx.x * std::size_t(blockDim.x) / 32 + threadIdx.x / 32;
       chunk < chunks; chunk += kChunks * warps) {
    uint4 w[kChunks][2];
#pragma unroll
    for (int u = 0; u < kChunks; ++u) {
      const std::size_t at = (chunk + u * warps) * 64 + lane;
      const bool in = chunk + u * warps < chunks;
      w[u][0] = in ? __ldcs(data + at) : make_uint4(0, 0, 0, 0);
      w[u][1] = in ? __ldcs(data + at + 32) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kChunks; ++u) {
      if constexpr (kOn == DotOn::kCudaCores) {
        acc += dot8(w[u][0], x) + dot8(w[u][1], x);
      } else {
        // Rows g and g + 8 of a 16 x 32 tile: the first mma takes each row's k pairs 0-1, the
        // second its pairs 2-3 (any k order works when B follows it).
        mma_f16(c, w[u][0].x, w[u][1].x, w[u][0].y, w[u][1].y, b[0], b[1]);
        mma_f16(c, w[u][0].z, w[u][1].z, w[u][0].w, w[u][1].w, b[2], b[3]);
      }
    }
  }
  acc += c[0] + c[1] + c[2] + c[3];
  if (acc == 1.2345f) sink[0] = 1;  // almost never: keeps the arithmetic live
  if (threadIdx.x == 0 && blockIdx.x < kMaxBlocks) sm_of_block[blockIdx.x] = smid();
}

// Reads `chunks` chunks of kBulkChunk bytes with the bulk-copy engine (cp.async.bulk, Hopper's
// TMA without a tensor map) into a ring of kBulkStages shared-memory stages, one block per SM;
// chunk c is at (c % per_pass) * kBulkChunk, so per_pass < chunks reads the same bytes again
// (from L2). With kConsume every thread xors its 16-byte pieces of each stage, as read_stream xors
// its loads; without, the block only waits for each stage to land. It answers whether a byte
// costs less energy on the bulk path (no per-thread load instructions, no registers) than on
// read_stream's, which is what a GEMV's weights would gain from it.
template <bool kConsume>
__global__ void read_bulk(const unsigned char* __restrict__ data, std::size_t per_pass,
                          std::size_t chunks, unsigned* sink, unsigned* sm_of_block) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char stage[];  // [kBulkStages][kBulkChunk]
  __shared__ __align__(8) unsigned long long full[kBulkStages];
  const unsigned full0 = static_cast<unsigned>(__cvta_generic_to_shared(&full[0]));
  const unsigned stage0 = static_cast<unsigned>(__cvta_generic_to_shared(stage));
  if (threadIdx.x == 0) {
    for (int s = 0; s < kBulkStages; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(full0 + 8 * s));
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  const auto issue = [&](int s, std::size_t c) {
    const unsigned char* src = data + (c % per_pass) * kBulkChunk;
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(full0 + 8 * s),
                 "r"(kBulkChunk)
                 : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
            "r"(stage0 + s * kBulkChunk),
        "l"(src), "r"(kBulkChunk), "r"(full0 + 8 * s)
        : "memory");
  };
  if (threadIdx.x == 0) {
    for (int s = 0; s < kBulkStages; ++s) {
      const std::size_t c = blockIdx.x + std::size_t(s) * gridDim.x;
      if (c < chunks) issue(s, c);
    }
  }
  unsigned acc = 0;
  for (std::size_t i = 0;; ++i) {
    const std::size_t c = blockIdx.x + i * gridDim.x;
    if (c >= chunks) break;
    const int s = static_cast<int>(i % kBulkStages);
    const unsigned parity = static_cast<unsigned>((i / kBulkStages) & 1);
    unsigned done = 0;
    while (!done) {
      asm volatile(
          "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, "
          "0, p; }"
          : "=r"(done)
          : "r"(full0 + 8 * s), "r"(parity)
          : "memory");
    }
    if constexpr (kConsume) {
      const uint4* piece = reinterpret_cast<const uint4*>(stage + s * kBulkChunk);
      for (int j = threadIdx.x; j < kBulkChunk / 16; j += blockDim.x) {
        const uint4 v = piece[j];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
      }
    }
    __syncthreads();  // every thread is done with stage s before it is filled again
    const std::size_t next = c + std::size_t(kBulkStages) * gridDim.x;
    if (threadIdx.x == 0 && next < chunks) {
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      issue(s, next);
    }
  }
  if (acc == 0x9E3779B9u) sink[0] = acc;  // almost never: keeps the reads live
  if (threadIdx.x == 0 && blockIdx.x < kMaxBlocks) sm_of_block[blockIdx.x] = smid();
#endif
}

// Busy without memory: spins on the clock for `cycles`.
__global__ void spin(long long cycles, unsigned* sm_of_block) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
  if (threadIdx.x == 0 && blockIdx.x < kMaxBlocks) sm_of_block[blockIdx.x] = smid();
}

// Busy with arithmetic: dependent FMA chains for `iterations`.
__global__ void fma_loop(int iterations, float* sink, unsigned* sm_of_block) {
  float a = threadIdx.x * 1e-3f, b = 1.0001f, c = 0.9999f, d = blockIdx.x * 1e-3f;
  for (int i = 0; i < iterations; ++i) {
    a = fmaf(a, b, c);
    d = fmaf(d, c, b);
    b = fmaf(b, a, -d) * 1e-7f + 1.0001f;
    c = fmaf(c, d, -a) * 1e-7f + 0.9999f;
  }
  if (a + b + c + d == 1.2345f) sink[0] = a;
  if (threadIdx.x == 0 && blockIdx.x < kMaxBlocks) sm_of_block[blockIdx.x] = smid();
}

// Resident and asleep for `nanoseconds` (what a block waiting on its predecessor looks like).
__global__ void sleep_resident(unsigned long long nanoseconds, unsigned* sm_of_block) {
  unsigned long long start;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  for (;;) {
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    if (now - start >= nanoseconds) break;
    __nanosleep(1000);
  }
  if (threadIdx.x == 0 && blockIdx.x < kMaxBlocks) sm_of_block[blockIdx.x] = smid();
}

__global__ void empty_kernel() {}

}  // namespace

cudaError_t allow_shared_bytes(int bytes) {
  const cudaError_t status =
      cudaFuncSetAttribute(read_stream<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (status != cudaSuccess) return status;
  return cudaFuncSetAttribute(spin, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

cudaError_t allow_bulk_stages() {
  const int bytes = kBulkStages * kBulkChunk;
  const cudaError_t status =
      cudaFuncSetAttribute(read_bulk<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (status != cudaSuccess) return status;
  return cudaFuncSetAttribute(read_bulk<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

void launch_read_bulk(const void* data, std::size_t bytes, int repeats, bool consume, int blocks,
                      unsigned* sink, unsigned* sm_of_block, cudaStream_t stream) {
  const auto* d = static_cast<const unsigned char*>(data);
  const std::size_t per_pass = bytes / kBulkChunk, chunks = per_pass * repeats;
  const int shared = kBulkStages * kBulkChunk;
  if (consume) {
    read_bulk<true><<<blocks, 256, shared, stream>>>(d, per_pass, chunks, sink, sm_of_block);
  } else {
    read_bulk<false><<<blocks, 256, shared, stream>>>(d, per_pass, chunks, sink, sm_of_block);
  }
}

void launch_fill_random(void* data, std::size_t bytes, int blocks, cudaStream_t stream) {
  fill_random<<<blocks, 256, 0, stream>>>(static_cast<uint4*>(data), bytes / 16);
}

void launch_read_stream(const void* data, std::size_t bytes, Grid grid, unsigned* sink,
                        unsigned* sm_of_block, cudaStream_t stream) {
  const auto* d = static_cast<const uint4*>(data);
  if (grid.shared_bytes > 0) {
    read_stream<8><<<grid.blocks, grid.threads, grid.shared_bytes, stream>>>(d, bytes / 16, sink,
                                                                             sm_of_block);
  } else {
    read_stream<4><<<grid.blocks, grid.threads, 0, stream>>>(d, bytes / 16, sink, sm_of_block);
  }
}

void launch_read_resident(const void* data, std::size_t bytes, int repeats, Grid grid,
                          unsigned* sink, unsigned* sm_of_block, cudaStream_t stream) {
  read_resident<<<grid.blocks, grid.threads, 0, stream>>>(static_cast<const uint4*>(data),
                                                          bytes / 16, repeats, sink, sm_of_block);
}

void launch_read_dot(const void* data, std::size_t bytes, bool tensor_cores, Grid grid,
                     unsigned* sink, unsigned* sm_of_block, cudaStream_t stream) {
  const auto* d = static_cast<const uint4*>(data);
  if (tensor_cores) {
    read_dot<DotOn::kTensorCores>
        <<<grid.blocks, grid.threads, 0, stream>>>(d, bytes / 16, sink, sm_of_block);
  } else {
    read_dot<DotOn::kCudaCores>
        <<<grid.blocks, grid.threads, 0, stream>>>(d, bytes / 16, sink, sm_of_block);
  }
}

void launch_spin(long long cycles, Grid grid, unsigned* sm_of_block, cudaStream_t stream) {
  spin<<<grid.blocks, grid.threads, grid.shared_bytes, stream>>>(cycles, sm_of_block);
}

void launch_fma_loop(int iterations, Grid grid, float* sink, unsigned* sm_of_block,
                     cudaStream_t stream) {
  fma_loop<<<grid.blocks, grid.threads, 0, stream>>>(iterations, sink, sm_of_block);
}

void launch_sleep_resident(unsigned long long nanoseconds, Grid grid, unsigned* sm_of_block,
                           cudaStream_t stream) {
  sleep_resident<<<grid.blocks, grid.threads, 0, stream>>>(nanoseconds, sm_of_block);
}

void launch_empty(Grid grid, cudaStream_t stream) {
  empty_kernel<<<grid.blocks, grid.threads, 0, stream>>>();
}

}  // namespace eaq::probe
