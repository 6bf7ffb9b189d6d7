// Prefill attention for head_dim 64 in registers (mma.sync), one warp per 16 queries: the
// FlashAttention-2 arrangement. References: attention.cu's prefill kernel (WMMA through shared
// memory), which this replaces for prompts, and through it the CPU backend.
//
// Why: the WMMA kernel takes ~8.5 us a layer for GPT-2's 128-token prompt on an H200 (kernel
// trace, docs/results.md), most of it in the chain S -> shared memory -> softmax -> shared
// memory -> P V, each step a round trip through shared memory and a block barrier with only
// four warps on the multiprocessor to hide it. Here S stays in the warp's accumulators: its
// softmax runs on them (a row is spread over a quad of lanes), and the accumulator layout of
// S = Q K^T is the A-operand layout of O = P V, so P goes from registers to the tensor cores.
//
// Each block is one warp and one (16 queries, head, batch) tile. Keys and values are staged in
// chunks of 64 rows (two stages of cp.async into XOR-swizzled shared memory, gemm_tile.cuh's
// layout), read with ldmatrix (values transposed); the softmax is online over the chunks
// (running max and sum per row), so any prompt length runs in 32 KB of shared memory. With a
// causal mask a tile reads only the keys up to its last query.
//
// Rounding: S and O accumulate in f32; P is rounded to T before P V (as the WMMA kernel rounds
// its probabilities), unnormalized, and O is divided by the row's sum at the end.
#include <cstdint>
#include <type_traits>

#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/mma_copy.cuh"

namespace eaq::cuda {
namespace {

constexpr int kHeadDim = 64;                         // one 128-byte row of f16/bf16 per key
constexpr int kQueries = 16;                         // one m16 tile of queries per warp
constexpr int kChunkKeys = 64;                       // keys staged per chunk
constexpr int kRowBytes = 128;                       // kHeadDim * 2
constexpr int kChunkBytes = kChunkKeys * kRowBytes;  // 8 KB of K or V
constexpr int kKeyTiles = kChunkKeys / 8;            // n8 tiles of S per chunk
constexpr int kDimTiles = kHeadDim / 8;              // n8 tiles of O

// Byte offset of 16-byte piece `piece` (0..7) of row `row`: the 8 rows an ldmatrix reads at one
// piece land on 8 different bank groups (as gemm_tile.cuh's tiles).
__device__ __forceinline__ int swizzled(int row, int piece) {
  return row * kRowBytes + ((piece ^ (row & 7)) << 4);
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned address, unsigned (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// c += a . b, m16n8k16, f16 or bf16 in, f32 accumulate. Fragments (PTX ISA, g = lane / 4,
// t = lane % 4): a0 = A[g][2t, 2t+1], a1 = A[g+8][2t..], a2 = A[g][8+2t..], a3 = A[g+8][8+2t..];
// b0 = B[k = 2t, 2t+1][n = g], b1 = B[k = 8+2t..][n = g]; c0, c1 = C[g][2t, 2t+1],
// c2, c3 = C[g+8][2t, 2t+1].
template <class T>
__device__ __forceinline__ void mma16816(const unsigned (&a)[4], unsigned b0, unsigned b1,
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
__global__ void __launch_bounds__(32) attention_prefill_mma_kernel(AttentionArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ __align__(128) unsigned char k_stage[2][kChunkBytes];
  __shared__ __align__(128) unsigned char v_stage[2][kChunkBytes];
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
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
  const T* q_base =
      static_cast<const T*>(a.q) + b * a.q_batch_stride + i0 * a.q_row_stride + h * kHeadDim;
  const T* k_base = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * kHeadDim;
  const T* v_base = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * kHeadDim;
  const std::int32_t* mask = a.key_mask ? a.key_mask + b * a.mask_batch_stride : nullptr;

  wait_for_previous_kernel();  // q, k and v come from the previous kernel
  allow_dependent_launch();

  // Chunk c's key and value rows into stage c % 2 (rows at or past key_end zero-filled, so that
  // a masked probability of 0 never meets a stale value).
  const auto issue = [&](int c) {
    const int stage = c & 1;
    const std::int64_t k0 = static_cast<std::int64_t>(c) * kChunkKeys;
#pragma unroll 4
    for (int idx = lane; idx < kChunkKeys * 8; idx += 32) {
      const int row = idx / 8, piece = idx % 8;
      const std::int64_t key = k0 + row;
      const bool ok = key < key_end;
      const std::int64_t offset = ok ? key * a.kv_row_stride + piece * 8 : 0;
      copy16(shared_address(k_stage[stage] + swizzled(row, piece)), k_base + offset, ok);
      copy16(shared_address(v_stage[stage] + swizzled(row, piece)), v_base + offset, ok);
    }
    commit();
  };
  if (chunks > 0) issue(0);
  if (chunks > 1) issue(1);
  // The key mask of a chunk, one key of each half per lane (its keys k0 + lane and
  // k0 + 32 + lane), loaded a chunk ahead and shared by ballot: a load per key, used at once,
  // would make every lane wait for each load in turn.
  int mask_ahead[2];
  const auto load_mask = [&](int c) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const std::int64_t key = static_cast<std::int64_t>(c) * kChunkKeys + 32 * half + lane;
      const bool in = key < key_end;
      mask_ahead[half] = in ? (mask != nullptr ? mask[key] : 1) : 0;
    }
  };
  load_mask(0);

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

  for (int c = 0; c < chunks; ++c) {
    const std::int64_t k0 = static_cast<std::int64_t>(c) * kChunkKeys;
    // Bit x of visible[x / 32]: key k0 + x is in the prompt and not padding.
    const unsigned visible[2] = {__ballot_sync(0xffffffffu, mask_ahead[0] != 0),
                                 __ballot_sync(0xffffffffu, mask_ahead[1] != 0)};
    if (c + 1 < chunks) load_mask(c + 1);
    if (c + 1 < chunks) {
      wait_pending<1>();
    } else {
      wait_pending<0>();
    }
    __syncwarp();
    const unsigned char* ks_tile = k_stage[c & 1];
    const unsigned char* vs_tile = v_stage[c & 1];

    // S = Q K^T for the chunk's 64 keys: ldmatrix gives two n8 tiles' B fragments at a time.
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
        ldmatrix_x4(shared_address(ks_tile + swizzled(row, piece)), kb);
        mma16816<T>(qa[ks], kb[0], kb[1], s[jj]);
        mma16816<T>(qa[ks], kb[2], kb[3], s[jj + 1]);
      }
    }

    // Scale and mask; the running max of each of this lane's two rows (g and g + 8).
    float chunk_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e / 2;
        const std::int64_t key = k0 + 8 * j + 2 * t + (e % 2);
        // This lane's keys of the chunk are k0 + 8 j + 2 t + {0, 1}.
        const unsigned word = j < kKeyTiles / 2 ? visible[0] : visible[1];  // j is unrolled
        const bool key_visible = (word >> (8 * (j % 4) + 2 * t + e % 2)) & 1u;
        const bool valid =
            (r == 0 ? row_lo : row_hi) && key_visible && key <= (r == 0 ? limit_lo : limit_hi);
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
        ldmatrix_x4_trans(shared_address(vs_tile + swizzled(row, piece)), vb);
        mma16816<T>(pa, vb[0], vb[1], o[d]);
        mma16816<T>(pa, vb[2], vb[3], o[d + 1]);
      }
    }

    // With a store (a prefill into a KV cache, q_len == kv_len), the tile stores the key and
    // value rows of its own 16 positions from the chunk that holds them.
    if (a.store_k != nullptr && i0 >= k0 && i0 < k0 + kChunkKeys) {
      const int rows = static_cast<int>(min(static_cast<std::int64_t>(kQueries), a.kv_len - i0));
      for (int idx = lane; idx < rows * 8; idx += 32) {
        const int row = static_cast<int>(i0 - k0) + idx / 8, piece = idx % 8;
        const std::int64_t j = i0 + idx / 8;
        const std::int64_t dst =
            b * a.store_batch_stride + j * a.store_row_stride + h * kHeadDim + piece * 8;
        *reinterpret_cast<uint4*>(static_cast<T*>(a.store_k) + dst) =
            *reinterpret_cast<const uint4*>(ks_tile + swizzled(row, piece));
        *reinterpret_cast<uint4*>(static_cast<T*>(a.store_v) + dst) =
            *reinterpret_cast<const uint4*>(vs_tile + swizzled(row, piece));
      }
    }
    __syncwarp();  // every lane is done with this stage before it is refilled
    if (c + 2 < chunks) issue(c + 2);
  }

  // Rows with no visible key (and rows past q_len) give zeros, as the other kernels.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float total = quad_sum(row_sum[r]);
    inv[r] = total > 0.0f ? 1.0f / total : 0.0f;
  }
  T* out = static_cast<T*>(a.out) + b * a.out_batch_stride + i0 * a.out_row_stride + h * kHeadDim;
#pragma unroll
  for (int d = 0; d < kDimTiles; ++d) {
    const int col = 8 * d + 2 * t;
    if (row_lo) {
      *reinterpret_cast<unsigned*>(out + g * a.out_row_stride + col) =
          pack2<T>(o[d][0] * inv[0], o[d][1] * inv[0]);
    }
    if (row_hi) {
      *reinterpret_cast<unsigned*>(out + (g + 8) * a.out_row_stride + col) =
          pack2<T>(o[d][2] * inv[1], o[d][3] * inv[1]);
    }
  }
#endif
}

bool aligned4(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 4 == 0;
}

}  // namespace

bool attention_prefill_mma_eligible(DType act, const AttentionArgs& a) {
  if (env_is("EAQ_PREFILL_MMA", "0")) return false;  // read at every call (tests flip it)
  if (act != DType::F16 && act != DType::BF16) return false;
  if (a.head_dim != kHeadDim || a.q_len < 1 || a.kv_len < 1) return false;
  // 16-byte rows of K and V (cp.async), 4-byte pairs of q and out.
  return aligned16(a.k) && aligned16(a.v) && a.kv_row_stride % 8 == 0 &&
         a.kv_batch_stride % 8 == 0 && aligned4(a.q) && a.q_row_stride % 2 == 0 &&
         a.q_batch_stride % 2 == 0 && aligned4(a.out) && a.out_row_stride % 2 == 0 &&
         a.out_batch_stride % 2 == 0;
}

void launch_attention_prefill_mma(DType act, const AttentionArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.q_len + kQueries - 1) / kQueries),
                  static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  if (act == DType::F16) {
    launch_dependent(attention_prefill_mma_kernel<__half>, grid, dim3(32), 0, stream, a);
  } else {
    launch_dependent(attention_prefill_mma_kernel<__nv_bfloat16>, grid, dim3(32), 0, stream, a);
  }
}

}  // namespace eaq::cuda
