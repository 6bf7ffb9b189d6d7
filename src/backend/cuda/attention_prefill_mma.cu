// Prefill attention for head_dim 64 in registers (mma.sync): the FlashAttention-2 arrangement,
// with a tile's keys split over the warps of its block. References: attention.cu's prefill and
// tensor-core kernels (WMMA through shared memory), which this replaces for prompts and encoder
// batches with heads of 64, and through them the CPU backend.
//
// Why: the WMMA kernel takes ~8.5 us a layer for GPT-2's 128-token prompt on an H200 (kernel
// trace, docs/results.md), most of it in the chain S -> shared memory -> softmax -> shared
// memory -> P V, each step a round trip through shared memory and a block barrier with only
// four warps on the multiprocessor to hide it. Here S stays in the warps' accumulators: its
// softmax runs on them (a row is spread over a quad of lanes), and the accumulator layout of
// S = Q K^T is the A-operand layout of O = P V, so P goes from registers to the tensor cores.
//
// Each block is one (16 queries, head, batch) tile of four warps. The keys (with a causal mask,
// only those up to the tile's last query) are cut into chunks of 32; warp w takes chunks w,
// w + 4, ..., staged by cp.async into its own two XOR-swizzled stages (gemm_tile.cuh's layout)
// and read with ldmatrix (values transposed), with an online softmax over its chunks (a running
// max and sum per row). The four partial results (max, sum, unnormalized O) then merge through
// shared memory. A 128-token prompt's last tile is one chunk per warp.
//
// Rounding: S and O accumulate in f32; P is rounded to T before P V (as the WMMA kernel rounds
// its probabilities), unnormalized, and O is divided by the row's sum at the end.
#include <cstdint>
#include <type_traits>

#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/gemm_tile.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/mma_copy.cuh"

namespace eaq::cuda {
namespace {

constexpr int kHeadDim = 64;  // one 128-byte row of f16/bf16 per key
constexpr int kQueries = 16;  // one m16 tile of queries per block
constexpr int kWarps = 4;     // each takes every fourth chunk of keys
constexpr int kThreads = 32 * kWarps;
constexpr int kChunkKeys = 32;                       // keys a warp stages at a time
constexpr int kRowBytes = tile64::kRowBytes;         // kHeadDim * 2, swizzled as gemm_tile.cuh
constexpr int kChunkBytes = kChunkKeys * kRowBytes;  // 4 KB of K or V
constexpr int kStageBytes = 2 * kChunkBytes;         // K, then V
constexpr int kKeyTiles = kChunkKeys / 8;            // n8 tiles of S per chunk
constexpr int kDimTiles = kHeadDim / 8;              // n8 tiles of O
constexpr int kOPitch = kHeadDim + 4;                // a merged O row (floats)
// Two stages per warp; the merge reuses them afterwards.
constexpr int kSharedBytes = kWarps * 2 * kStageBytes;  // 64 KB
static_assert(kWarps * kQueries * (kOPitch + 2) * 4 <= kSharedBytes, "the merge fits the stages");
static_assert(kQueries * kHeadDim == kThreads * 8, "the merge writes 8 outputs a thread");

// Two floats rounded to T, as one 32-bit register (lo in the low half).
template <class T>
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&v);
  } else {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&v);
  }
}

// Reduces over the four lanes of a quad (the lanes that share a row of an accumulator).
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

template <class T>
__global__ void __launch_bounds__(kThreads) attention_prefill_mma_kernel(AttentionArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  extern __shared__ __align__(128) unsigned char shared[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  // This warp's two stages: K then V of a chunk each.
  unsigned char* stages = shared + warp * 2 * kStageBytes;
  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * kQueries;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  // Keys past the tile's last query are masked for every row of a causal tile: not read at all.
  std::int64_t key_end = a.kv_len;
  if (a.causal) {
    const std::int64_t last_query = min(i0 + kQueries, a.q_len) - 1;
    key_end = min(key_end, a.q_position_offset + last_query + 1);
    if (key_end < 0) key_end = 0;
  }
  const int chunks = static_cast<int>((key_end + kChunkKeys - 1) / kChunkKeys);
  // This warp's chunks: warp, warp + kWarps, ...
  const int my_chunks = chunks > warp ? (chunks - warp + kWarps - 1) / kWarps : 0;
  const T* q_base =
      static_cast<const T*>(a.q) + b * a.q_batch_stride + i0 * a.q_row_stride + h * kHeadDim;
  const T* k_base = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * kHeadDim;
  const T* v_base = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * kHeadDim;
  const std::int32_t* mask = a.key_mask ? a.key_mask + b * a.mask_batch_stride : nullptr;

  wait_for_previous_kernel();  // q, k and v come from the previous kernel
  allow_dependent_launch();

  // The warp's n-th chunk's key and value rows into stage n % 2 (rows at or past key_end
  // zero-filled, so that a masked probability of 0 never meets a stale value).
  const auto issue = [&](int n) {
    unsigned char* k_tile = stages + (n & 1) * kStageBytes;
    unsigned char* v_tile = k_tile + kChunkBytes;
    const std::int64_t k0 = static_cast<std::int64_t>(warp + n * kWarps) * kChunkKeys;
#pragma unroll
    for (int idx = lane; idx < kChunkKeys * 8; idx += 32) {
      const int row = idx / 8, piece = idx % 8;
      const std::int64_t key = k0 + row;
      const bool ok = key < key_end;
      const std::int64_t offset = ok ? key * a.kv_row_stride + piece * 8 : 0;
      copy16(shared_address(k_tile + tile64::swizzled(row, piece)), k_base + offset, ok);
      copy16(shared_address(v_tile + tile64::swizzled(row, piece)), v_base + offset, ok);
    }
    commit();
  };
  if (my_chunks > 0) issue(0);
  if (my_chunks > 1) issue(1);
  // The key mask of a chunk, one key per lane, loaded a chunk ahead and shared by ballot: a load
  // per key, used at once, would make every lane wait for each load in turn.
  int mask_ahead = 0;
  const auto load_mask = [&](int n) {
    const std::int64_t key = static_cast<std::int64_t>(warp + n * kWarps) * kChunkKeys + lane;
    mask_ahead = key < key_end ? (mask != nullptr ? mask[key] : 1) : 0;
  };
  if (my_chunks > 0) load_mask(0);

  // Q's A fragments for the four 16-wide steps over head_dim, straight from global memory.
  unsigned qa[4][4];
  const bool row_lo = i0 + g < a.q_len, row_hi = i0 + g + 8 < a.q_len;
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) {
    const int d = ks * 16 + 2 * t;
    const auto load = [&](bool ok, int row, int col) {
      return ok ? *reinterpret_cast<const unsigned*>(q_base + row * a.q_row_stride + col) : 0u;
    };
    qa[ks][0] = load(row_lo, g, d);
    qa[ks][1] = load(row_hi, g + 8, d);
    qa[ks][2] = load(row_lo, g, d + 8);
    qa[ks][3] = load(row_hi, g + 8, d + 8);
  }
  // The rows' last visible key (causal), as absolute key indices.
  const std::int64_t limit_lo = a.causal ? a.q_position_offset + i0 + g : key_end - 1;
  const std::int64_t limit_hi = a.causal ? a.q_position_offset + i0 + g + 8 : key_end - 1;

  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  float o[kDimTiles][4];
#pragma unroll
  for (int d = 0; d < kDimTiles; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;

  for (int n = 0; n < my_chunks; ++n) {
    const std::int64_t k0 = static_cast<std::int64_t>(warp + n * kWarps) * kChunkKeys;
    // Bit x: key k0 + x is in the prompt and not padding.
    const unsigned visible = __ballot_sync(0xffffffffu, mask_ahead != 0);
    if (n + 1 < my_chunks) load_mask(n + 1);
    if (n + 1 < my_chunks) {
      wait_pending<1>();
    } else {
      wait_pending<0>();
    }
    __syncwarp();
    const unsigned char* k_tile = stages + (n & 1) * kStageBytes;
    const unsigned char* v_tile = k_tile + kChunkBytes;

    // S = Q K^T for the chunk's keys: ldmatrix gives two n8 tiles' B fragments at a time.
    float s[kKeyTiles][4];
#pragma unroll
    for (int j = 0; j < kKeyTiles; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
#pragma unroll
      for (int jj = 0; jj < kKeyTiles; jj += 2) {
        // Matrices: keys 8jj..+7 x pieces 2ks / 2ks+1, keys 8jj+8..+15 x the same.
        const int row = 8 * jj + (lane % 8) + (lane / 16) * 8;
        const int piece = 2 * ks + (lane / 8) % 2;
        unsigned kb[4];
        ldmatrix_x4(shared_address(k_tile + tile64::swizzled(row, piece)), kb);
        mma_f16<T>(qa[ks], kb[0], kb[1], s[jj]);
        mma_f16<T>(qa[ks], kb[2], kb[3], s[jj + 1]);
      }
    }

    // Scale and mask (this lane's keys are k0 + 8 j + 2 t + {0, 1}, its rows g and g + 8); the
    // running max of each row.
    float chunk_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e / 2, x = 8 * j + 2 * t + e % 2;
        const bool valid = (r == 0 ? row_lo : row_hi) && ((visible >> x) & 1u) &&
                           k0 + x <= (r == 0 ? limit_lo : limit_hi);
        s[j][e] = valid ? s[j][e] * a.scale : -INFINITY;
        chunk_max[r] = fmaxf(chunk_max[r], s[j][e]);
      }
    }
    float rescale[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float new_max = fmaxf(row_max[r], quad_max(chunk_max[r]));
      // Nothing visible yet: nothing to rescale (and no inf - inf).
      rescale[r] = new_max == -INFINITY ? 1.0f : __expf(row_max[r] - new_max);
      row_max[r] = new_max;
      row_sum[r] *= rescale[r];
    }
#pragma unroll
    for (int d = 0; d < kDimTiles; ++d) {
      o[d][0] *= rescale[0];
      o[d][1] *= rescale[0];
      o[d][2] *= rescale[1];
      o[d][3] *= rescale[1];
    }
#pragma unroll
    for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e / 2;
        const float p = s[j][e] == -INFINITY ? 0.0f : __expf(s[j][e] - row_max[r]);
        s[j][e] = p;
        row_sum[r] += p;
      }
    }

    // O += P V: S's accumulators of two n8 key tiles are P's A fragment for 16 keys; V's B
    // fragments come transposed from ldmatrix, two n8 dimension tiles at a time.
#pragma unroll
    for (int kk = 0; kk < kChunkKeys / 16; ++kk) {
      unsigned pa[4];
      pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int d = 0; d < kDimTiles; d += 2) {
        // Matrices: keys 16kk..+7 / 16kk+8..+15 (lane bit 3) x pieces d / d+1 (lane bit 4).
        const int row = 16 * kk + (lane % 8) + ((lane / 8) % 2) * 8;
        const int piece = d + lane / 16;
        unsigned vb[4];
        ldmatrix_x4_trans(shared_address(v_tile + tile64::swizzled(row, piece)), vb);
        mma_f16<T>(pa, vb[0], vb[1], o[d]);
        mma_f16<T>(pa, vb[2], vb[3], o[d + 1]);
      }
    }

    // With a store (a prefill into a KV cache, q_len == kv_len), the warp whose chunk holds the
    // tile's own 16 positions stores their key and value rows.
    if (a.store_k != nullptr && i0 >= k0 && i0 < k0 + kChunkKeys) {
      const int rows = static_cast<int>(min(static_cast<std::int64_t>(kQueries), a.kv_len - i0));
      for (int idx = lane; idx < rows * 8; idx += 32) {
        const int row = static_cast<int>(i0 - k0) + idx / 8, piece = idx % 8;
        const std::int64_t j = i0 + idx / 8;
        const std::int64_t dst =
            b * a.store_batch_stride + j * a.store_row_stride + h * kHeadDim + piece * 8;
        *reinterpret_cast<uint4*>(static_cast<T*>(a.store_k) + dst) =
            *reinterpret_cast<const uint4*>(k_tile + tile64::swizzled(row, piece));
        *reinterpret_cast<uint4*>(static_cast<T*>(a.store_v) + dst) =
            *reinterpret_cast<const uint4*>(v_tile + tile64::swizzled(row, piece));
      }
    }
    __syncwarp();  // every lane is done with this stage before it is refilled
    if (n + 2 < my_chunks) issue(n + 2);
  }

  // The warps' partial results meet in shared memory (the stages are free once every warp is
  // past its loop): each warp's O (unnormalized), and each row's max and sum.
  __syncthreads();
  float* merged_o = reinterpret_cast<float*>(shared);          // [kWarps][kQueries][kOPitch]
  float* merged_max = merged_o + kWarps * kQueries * kOPitch;  // [kWarps][kQueries]
  float* merged_sum = merged_max + kWarps * kQueries;          // [kWarps][kQueries]
  float* my_o = merged_o + warp * kQueries * kOPitch;
#pragma unroll
  for (int d = 0; d < kDimTiles; ++d) {
    const int col = 8 * d + 2 * t;
    *reinterpret_cast<float2*>(my_o + g * kOPitch + col) = make_float2(o[d][0], o[d][1]);
    *reinterpret_cast<float2*>(my_o + (g + 8) * kOPitch + col) = make_float2(o[d][2], o[d][3]);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float total = quad_sum(row_sum[r]);
    if (t == 0) {
      merged_max[warp * kQueries + g + 8 * r] = row_max[r];
      merged_sum[warp * kQueries + g + 8 * r] = total;
    }
  }
  __syncthreads();

  // Each thread writes 8 outputs: row threadIdx.x / 8, columns 8 (threadIdx.x % 8) onwards.
  // Rows with no visible key give zeros, as the other kernels.
  const int row = threadIdx.x / 8, col = (threadIdx.x % 8) * 8;
  if (i0 + row >= a.q_len) return;
  float m = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) m = fmaxf(m, merged_max[w * kQueries + row]);
  float weight[kWarps], total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const float wm = merged_max[w * kQueries + row];
    weight[w] = wm == -INFINITY ? 0.0f : __expf(wm - m);
    total += weight[w] * merged_sum[w * kQueries + row];
  }
  const float inv = total > 0.0f ? 1.0f / total : 0.0f;
  float value[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      v += weight[w] * merged_o[(w * kQueries + row) * kOPitch + col + e];
    }
    value[e] = v * inv;
  }
  uint4 packed;
  packed.x = pack2<T>(value[0], value[1]);
  packed.y = pack2<T>(value[2], value[3]);
  packed.z = pack2<T>(value[4], value[5]);
  packed.w = pack2<T>(value[6], value[7]);
  T* out = static_cast<T*>(a.out) + b * a.out_batch_stride + (i0 + row) * a.out_row_stride +
           h * kHeadDim + col;
  *reinterpret_cast<uint4*>(out) = packed;
#endif
}

bool aligned4(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 4 == 0;
}

template <class T>
void launch_typed(const AttentionArgs& a, cudaStream_t stream) {
  // Past the default 48 KB of shared memory: raised once per instantiation, on the first call
  // (before any graph capture).
  static const cudaError_t configured = cudaFuncSetAttribute(
      attention_prefill_mma_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes);
  EAQ_CUDA_CHECK(configured);
  const dim3 grid(static_cast<unsigned>((a.q_len + kQueries - 1) / kQueries),
                  static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  launch_dependent(attention_prefill_mma_kernel<T>, grid, dim3(kThreads),
                   static_cast<std::size_t>(kSharedBytes), stream, a);
}

}  // namespace

bool attention_prefill_mma_eligible(DType act, const AttentionArgs& a) {
  if (env_is("EAQ_PREFILL_MMA", "0")) return false;  // read at every call (tests flip it)
  if (act != DType::F16 && act != DType::BF16) return false;
  if (a.head_dim != kHeadDim || a.q_len < 1 || a.kv_len < 1) return false;
  // 16-byte rows of K and V (cp.async) and of out, 4-byte pairs of q.
  return aligned16(a.k) && aligned16(a.v) && a.kv_row_stride % 8 == 0 &&
         a.kv_batch_stride % 8 == 0 && aligned4(a.q) && a.q_row_stride % 2 == 0 &&
         a.q_batch_stride % 2 == 0 && aligned16(a.out) && a.out_row_stride % 8 == 0 &&
         a.out_batch_stride % 8 == 0;
}

void launch_attention_prefill_mma(DType act, const AttentionArgs& a, cudaStream_t stream) {
  if (act == DType::F16) {
    launch_typed<__half>(a, stream);
  } else {
    launch_typed<__nv_bfloat16>(a, stream);
  }
}

}  // namespace eaq::cuda
