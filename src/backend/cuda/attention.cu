// Scaled dot-product attention; reference: cpu_kernels.cpp attention_f32.
//
// Six kernels, chosen per call by launch_attention():
// - mma (F16/BF16, head_dim 64, >= 16 queries): attention_prefill_mma.cu, a block of four warps
//   per 16 queries with S, P and O in registers. Prompts and encoder batches.
// - prefill (F16/BF16, head_dim 32/64/128, >= 16 queries, few query tiles, every visible key row
//   fitting in shared memory): one block of four warps per (16 queries, head, batch), K and V
//   staged whole, the warps splitting S = Q K^T by keys and O = P V by columns. Prompts at small
//   batch sizes (see the kernel's comment).
// - tensor core (F16/BF16, head_dim 32/64/128, >= 16 queries): one block per (16 x warps queries,
//   head, batch). S = Q K^T with WMMA into shared memory, an exact softmax per row (two threads
//   per row, the key mask staged in shared memory), then O = P V with WMMA. Sequences here are
//   short (<= 1024), so the whole score tile fits in shared memory and no online rescaling is
//   needed.
// - grouped (any dtype, head_dim <= 128, >= 16 queries): eight threads per query, 32 queries per
//   block, keys and values staged in shared memory 32 at a time, online softmax, f32 math on CUDA
//   cores. The f32 path (fp32 must not use TF32) and odd head sizes.
// - decode (< 16 queries, e.g. a decode step): rows read in 16-byte pieces by teams of threads
//   when aligned, the cache split over several blocks per (query, head, batch) when those are too
//   few to fill the GPU, this step's K/V appended inline (AttentionArgs::append_*); else one
//   block per (query, head, batch) with a thread per key for the scores and a thread per
//   (dimension, key group) for P V.
// - simple: one block per (query, head, batch), a thread per key. The fallback (head sizes past
//   128, caches too long for the decode kernel's shared memory) and the tests' second opinion.
#include <cuda_pipeline.h>
#include <mma.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/decoder_kernels.hpp"
#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/kernels.hpp"

namespace eaq::cuda {
namespace {

__device__ __forceinline__ bool key_visible(const AttentionArgs& a, std::int64_t b, std::int64_t i,
                                            std::int64_t j) {
  return j < a.kv_len && (!a.key_mask || a.key_mask[b * a.mask_batch_stride + j] != 0) &&
         !(a.causal && j > a.q_position_offset + i);
}

// ------------------------------------------------------------------------------------------------
// Simple kernel.

template <class T>
__global__ void attention_simple_kernel(AttentionArgs a) {
  extern __shared__ float shared[];
  float* q = shared;                    // [head_dim]
  float* scores = shared + a.head_dim;  // [kv_len]
  __shared__ float reduce[32];

  const std::int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const T* qi =
      static_cast<const T*>(a.q) + b * a.q_batch_stride + i * a.q_row_stride + h * a.head_dim;
  const T* kb = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * a.head_dim;
  const T* vb = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * a.head_dim;
  T* oi = static_cast<T*>(a.out) + b * a.out_batch_stride + i * a.out_row_stride + h * a.head_dim;

  for (std::int64_t d = threadIdx.x; d < a.head_dim; d += blockDim.x) q[d] = to_f32(qi[d]);
  __syncthreads();

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  float local_max = -FLT_MAX;
  for (std::int64_t j = threadIdx.x; j < a.kv_len; j += blockDim.x) {
    float s = -INFINITY;
    if (key_visible(a, b, i, j)) {
      const T* kj = kb + j * a.kv_row_stride;
      float dot = 0.0f;
      for (std::int64_t d = 0; d < a.head_dim; ++d) dot += q[d] * to_f32(kj[d]);
      s = dot * a.scale;
      local_max = fmaxf(local_max, s);
    }
    scores[j] = s;
  }
  local_max = warp_max(local_max);
  if (lane == 0) reduce[warp] = local_max;
  __syncthreads();
  float row_max = -FLT_MAX;
  for (int w = 0; w < warps; ++w) row_max = fmaxf(row_max, reduce[w]);
  __syncthreads();

  float local_sum = 0.0f;
  for (std::int64_t j = threadIdx.x; j < a.kv_len; j += blockDim.x) {
    const float p = scores[j] == -INFINITY ? 0.0f : __expf(scores[j] - row_max);
    scores[j] = p;
    local_sum += p;
  }
  local_sum = warp_sum(local_sum);
  if (lane == 0) reduce[warp] = local_sum;
  __syncthreads();
  float denom = 0.0f;
  for (int w = 0; w < warps; ++w) denom += reduce[w];
  // Every key masked (a fully padded row): zeros rather than NaN, as the CPU reference.
  const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;

  for (std::int64_t d = threadIdx.x; d < a.head_dim; d += blockDim.x) {
    float acc = 0.0f;
    for (std::int64_t j = 0; j < a.kv_len; ++j) {
      const float p = scores[j];
      if (p != 0.0f) acc += p * to_f32(vb[j * a.kv_row_stride + d]);
    }
    oi[d] = from_f32<T>(acc * inv);
  }
}

// ------------------------------------------------------------------------------------------------
// Decode kernel: few queries (a decode step) against a long cache. One block per (query, head,
// batch). Scores: a thread per key, so every key row's loads are in flight at once (a warp per key
// would serialize on each dot product's shuffles). P V: a thread per (dimension, key group), the
// groups' partial sums added at the end.

constexpr int kDecodeThreads = 256;

template <class T>
__global__ void attention_decode_kernel(AttentionArgs a) {
  extern __shared__ float decode_smem[];
  const int dh = static_cast<int>(a.head_dim);
  float* q = decode_smem;              // [head_dim]
  float* scores = q + dh;              // [kv_len]
  float* partial = scores + a.kv_len;  // [groups][head_dim]
  __shared__ float reduce[kDecodeThreads / 32];
  const std::int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const T* q_row = static_cast<const T*>(a.q) + b * a.q_batch_stride + i * a.q_row_stride + h * dh;
  const T* k_base = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * dh;
  const T* v_base = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * dh;
  for (int d = threadIdx.x; d < dh; d += blockDim.x) q[d] = to_f32(q_row[d]) * a.scale;
  __syncthreads();

  float local_max = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < a.kv_len; j += blockDim.x) {
    float s = -INFINITY;
    if (key_visible(a, b, i, j)) {
      const T* kj = k_base + j * a.kv_row_stride;
      float dot = 0.0f;
#pragma unroll 8
      for (int d = 0; d < dh; ++d) dot += q[d] * to_f32(kj[d]);
      s = dot;
    }
    scores[j] = s;
    local_max = fmaxf(local_max, s);
  }
  local_max = warp_max(local_max);
  if (lane == 0) reduce[warp] = local_max;
  __syncthreads();
  float row_max = -INFINITY;
  for (int w = 0; w < kDecodeThreads / 32; ++w) row_max = fmaxf(row_max, reduce[w]);
  __syncthreads();  // everyone has read reduce[] before it is reused for sums
  float local_sum = 0.0f;
  for (std::int64_t j = threadIdx.x; j < a.kv_len; j += blockDim.x) {
    const float p = scores[j] == -INFINITY ? 0.0f : __expf(scores[j] - row_max);
    scores[j] = p;
    local_sum += p;
  }
  local_sum = warp_sum(local_sum);
  if (lane == 0) reduce[warp] = local_sum;
  __syncthreads();
  float denom = 0.0f;
  for (int w = 0; w < kDecodeThreads / 32; ++w) denom += reduce[w];
  const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;  // fully masked rows give zeros

  const int groups = kDecodeThreads / dh;  // head_dim <= 128: at least two groups
  const int d = threadIdx.x % dh, group = threadIdx.x / dh;
  if (group < groups) {
    float acc = 0.0f;
#pragma unroll 4
    for (std::int64_t j = group; j < a.kv_len; j += groups) {
      acc += scores[j] * to_f32(v_base[j * a.kv_row_stride + d]);
    }
    partial[group * dh + d] = acc;
  }
  __syncthreads();
  T* out = static_cast<T*>(a.out) + b * a.out_batch_stride + i * a.out_row_stride + h * dh;
  for (int dd = threadIdx.x; dd < dh; dd += blockDim.x) {
    float sum = 0.0f;
    for (int g = 0; g < groups; ++g) sum += partial[g * dh + dd];
    out[dd] = from_f32<T>(sum * inv);
  }
}

// The vectorized decode kernel: every key and value row is read in 16-byte pieces. Scores: a team
// of C = head_dim / kVec threads per key, each taking one piece of the dot product, reduced with
// shuffles, so 256 / C keys are in flight per pass. P V: thread t accumulates piece (t % C) over
// the keys of group (t / C); the groups' partial sums are added at the end. The scalar kernel
// above read a key row element by element in one thread and summed P V along ~kv_len / 4
// dependent steps: latency bound at batch 1 (30 us per call at 192 keys).
//
// Split-K ("flash decoding"): at batch 1 there are only `heads` (query, head) pairs, too few
// blocks for the GPU, so the cache is cut into `splits` chunks, one block each (blockIdx.x = query
// * splits + split). Each block leaves its chunk's max score, sum of exponentials and unnormalized
// P V in `partials`; the last block of a (query, head) to finish rescales and adds them.
//
// With append_slot set, the key and value at that position are read from append_k/append_v (this
// step's new rows) and the block whose chunk holds the slot (query 0) copies them into the cache.
template <class T>
constexpr int kDecodeVec = 16 / static_cast<int>(sizeof(T));
constexpr int kMaxDecodeSplits = 32;
constexpr std::int64_t kMinKeysPerSplit = 32;

struct DecodeSplit {
  float* partials = nullptr;     // [batch, heads, q_len, splits, head_dim + 2]
  unsigned* counters = nullptr;  // [batch, heads, q_len]
  int splits = 1;
  std::int64_t chunk = 0;  // keys per split
};

template <class T>
__global__ void attention_decode_vec_kernel(AttentionArgs a, DecodeSplit split) {
  constexpr int kVec = kDecodeVec<T>;
  extern __shared__ float decode_smem[];
  const int dh = static_cast<int>(a.head_dim);
  const int team = dh / kVec;               // threads per key row (a power of two <= 32)
  const int teams = kDecodeThreads / team;  // keys per pass, and key groups for P V
  float* scores = decode_smem;              // [chunk]
  float* partial = scores + split.chunk;    // [teams][head_dim]
  __shared__ float reduce[kDecodeThreads / 32];
  __shared__ float weights[kMaxDecodeSplits];
  __shared__ float total_weight;
  __shared__ bool last;
  const std::int64_t i = blockIdx.x / split.splits, h = blockIdx.y, b = blockIdx.z;
  const int s = static_cast<int>(blockIdx.x % split.splits);
  const std::int64_t j0 = s * split.chunk;
  const std::int64_t j1 = j0 + split.chunk < a.kv_len ? j0 + split.chunk : a.kv_len;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int piece = threadIdx.x % team, key_group = threadIdx.x / team;
  const std::int64_t slot = a.append_slot ? *a.append_slot : -1;
  const T* q_row = static_cast<const T*>(a.q) + b * a.q_batch_stride + i * a.q_row_stride + h * dh;
  const T* k_base = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * dh + piece * kVec;
  const T* v_base = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * dh + piece * kVec;
  const std::int64_t new_offset = b * a.append_batch_stride + h * dh + piece * kVec;
  const T* k_new = a.append_k ? static_cast<const T*>(a.append_k) + new_offset : nullptr;
  const T* v_new = a.append_v ? static_cast<const T*>(a.append_v) + new_offset : nullptr;
  // With an append, the other cache rows and the mask predate the op before this one (see
  // AttentionArgs): the first pass's key and value rows load while that op finishes.
  const std::int64_t j_first = j0 + key_group;
  const bool prefetch = a.append_slot != nullptr && j_first < j1 && j_first != slot;
  uint4 k_first = make_uint4(0, 0, 0, 0), v_first = make_uint4(0, 0, 0, 0);
  bool first_visible = false;
  if (prefetch) {
    k_first = *reinterpret_cast<const uint4*>(k_base + j_first * a.kv_row_stride);
    v_first = *reinterpret_cast<const uint4*>(v_base + j_first * a.kv_row_stride);
    first_visible = key_visible(a, b, i, j_first);
  }
  wait_for_previous_kernel();  // q and the new rows come from the kernel before
  allow_dependent_launch();
  // Each thread reads its own piece of q (a team's threads share the 16 bytes through L1).
  float q_piece[kVec];
  {
    alignas(16) T q_raw[kVec];
    *reinterpret_cast<uint4*>(q_raw) = *reinterpret_cast<const uint4*>(q_row + piece * kVec);
#pragma unroll
    for (int e = 0; e < kVec; ++e) q_piece[e] = to_f32(q_raw[e]) * a.scale;
  }

  float local_max = -INFINITY;
  // Every thread of a team runs the same number of passes, so the shuffles below are uniform.
  const std::int64_t passes = j1 > j0 ? (j1 - j0 + teams - 1) / teams : 0;
#pragma unroll 4
  for (std::int64_t pass = 0; pass < passes; ++pass) {
    const std::int64_t j = j0 + pass * teams + key_group;
    const bool prefetched = pass == 0 && prefetch;
    // The key row is read whether or not the mask hides it (every cache row is allocated), so
    // the mask's load and the row's are in flight together; a hidden row's dot is dropped.
    float dot = 0.0f;
    if (j < j1) {
      alignas(16) T k_piece[kVec];
      *reinterpret_cast<uint4*>(k_piece) =
          prefetched
              ? k_first
              : *reinterpret_cast<const uint4*>(j == slot ? k_new : k_base + j * a.kv_row_stride);
#pragma unroll
      for (int e = 0; e < kVec; ++e) dot += q_piece[e] * to_f32(k_piece[e]);
    }
    const bool visible = prefetched ? first_visible : j < j1 && key_visible(a, b, i, j);
    for (int offset = team / 2; offset > 0; offset /= 2) {
      dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    }
    if (j < j1 && piece == 0) scores[j - j0] = visible ? dot : -INFINITY;
    if (visible) local_max = fmaxf(local_max, dot);
  }
  local_max = warp_max(local_max);
  if (lane == 0) reduce[warp] = local_max;
  __syncthreads();
  float chunk_max = -INFINITY;
  for (int w = 0; w < kDecodeThreads / 32; ++w) chunk_max = fmaxf(chunk_max, reduce[w]);
  __syncthreads();  // everyone has read reduce[] before it is reused for sums
  float local_sum = 0.0f;
  for (std::int64_t j = threadIdx.x; j < j1 - j0; j += blockDim.x) {
    const float p = scores[j] == -INFINITY ? 0.0f : __expf(scores[j] - chunk_max);
    scores[j] = p;
    local_sum += p;
  }
  local_sum = warp_sum(local_sum);
  if (lane == 0) reduce[warp] = local_sum;
  __syncthreads();
  float chunk_sum = 0.0f;
  for (int w = 0; w < kDecodeThreads / 32; ++w) chunk_sum += reduce[w];

  float acc[kVec] = {};
#pragma unroll 4
  for (std::int64_t j = j_first; j < j1; j += teams) {
    const float p = scores[j - j0];
    if (p == 0.0f) continue;
    alignas(16) T v_piece[kVec];
    *reinterpret_cast<uint4*>(v_piece) =
        j == j_first && prefetch
            ? v_first
            : *reinterpret_cast<const uint4*>(j == slot ? v_new : v_base + j * a.kv_row_stride);
#pragma unroll
    for (int e = 0; e < kVec; ++e) acc[e] += p * to_f32(v_piece[e]);
  }
#pragma unroll
  for (int e = 0; e < kVec; ++e) partial[key_group * dh + piece * kVec + e] = acc[e];
  __syncthreads();
  T* out = static_cast<T*>(a.out) + b * a.out_batch_stride + i * a.out_row_stride + h * dh;

  if (split.splits == 1) {
    const float inv = chunk_sum > 0.0f ? 1.0f / chunk_sum : 0.0f;  // fully masked rows: zeros
    for (int dd = threadIdx.x; dd < dh; dd += blockDim.x) {
      float sum = 0.0f;
      for (int g = 0; g < teams; ++g) sum += partial[g * dh + dd];
      out[dd] = from_f32<T>(sum * inv);
    }
  } else {
    const std::int64_t row = (b * a.heads + h) * a.q_len + i;
    float* parts = split.partials + row * split.splits * (dh + 2);
    float* mine = parts + s * (dh + 2);
    if (threadIdx.x == 0) {
      mine[0] = chunk_max;
      mine[1] = chunk_sum;
    }
    for (int dd = threadIdx.x; dd < dh; dd += blockDim.x) {
      float sum = 0.0f;
      for (int g = 0; g < teams; ++g) sum += partial[g * dh + dd];
      mine[2 + dd] = sum;
    }
    __threadfence();  // this block's partial is visible before its arrival is counted
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&split.counters[row], 1u) == split.splits - 1u;
    __syncthreads();
    if (last) {
      __threadfence();
      if (warp == 0) {  // lane t rescales split t (kMaxDecodeSplits is one warp)
        const bool mine_t = lane < split.splits;
        const float mt = mine_t ? __ldcg(parts + lane * (dh + 2)) : -INFINITY;
        const float lt = mine_t ? __ldcg(parts + lane * (dh + 2) + 1) : 0.0f;
        const float m = warp_max(mt);
        const float w = mt == -INFINITY ? 0.0f : __expf(mt - m);
        if (mine_t) weights[lane] = w;
        const float total = warp_sum(w * lt);
        if (lane == 0) {
          total_weight = total;
          split.counters[row] = 0;
        }
      }
      __syncthreads();
      const float inv = total_weight > 0.0f ? 1.0f / total_weight : 0.0f;
      for (int dd = threadIdx.x; dd < dh; dd += blockDim.x) {
        float sum = 0.0f;
        for (int t = 0; t < split.splits; ++t)
          sum += weights[t] * __ldcg(parts + t * (dh + 2) + 2 + dd);
        out[dd] = from_f32<T>(sum * inv);
      }
    }
  }

  // The new key and value rows into the cache: only this block reads the cache at `slot` for this
  // (batch, head), and it read them from append_k/append_v instead.
  if (k_new != nullptr && i == 0 && slot >= j0 && slot < j1) {
    const T* k_src = static_cast<const T*>(a.append_k) + b * a.append_batch_stride + h * dh;
    const T* v_src = static_cast<const T*>(a.append_v) + b * a.append_batch_stride + h * dh;
    T* k_dst = const_cast<T*>(static_cast<const T*>(a.k)) + b * a.kv_batch_stride +
               slot * a.kv_row_stride + h * dh;
    T* v_dst = const_cast<T*>(static_cast<const T*>(a.v)) + b * a.kv_batch_stride +
               slot * a.kv_row_stride + h * dh;
    for (int d = threadIdx.x; d < dh; d += blockDim.x) {
      k_dst[d] = k_src[d];
      v_dst[d] = v_src[d];
    }
  }
}

// The vectorized kernel needs 16-byte aligned rows (q, k, v and the appended ones) and a head
// split into a power-of-two number (<= 32) of 16-byte pieces.
template <class T>
bool decode_vec_eligible(const AttentionArgs& a) {
  constexpr int kVec = kDecodeVec<T>;
  if (a.head_dim % kVec != 0) return false;
  const std::int64_t team = a.head_dim / kVec;
  if (team > 32 || (team & (team - 1)) != 0) return false;
  const bool append_ok =
      a.append_slot == nullptr ||
      (a.append_batch_stride % kVec == 0 && aligned16(a.append_k) && aligned16(a.append_v));
  return append_ok && a.kv_row_stride % kVec == 0 && a.kv_batch_stride % kVec == 0 &&
         a.q_row_stride % kVec == 0 && a.q_batch_stride % kVec == 0 && aligned16(a.q) &&
         aligned16(a.k) && aligned16(a.v);
}

// How many chunks to cut the cache into: enough blocks for two per multiprocessor, at least
// kMinKeysPerSplit keys each.
DecodeSplit plan_decode_split(const AttentionArgs& a) {
  DecodeSplit split;
  split.chunk = a.kv_len;
  const std::int64_t pairs = a.q_len * a.heads * a.batch;
  const std::int64_t wanted = (2 * multiprocessor_count() + pairs - 1) / pairs;
  const std::int64_t most = (a.kv_len + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
  const std::int64_t splits = std::max<std::int64_t>(
      1, std::min<std::int64_t>({wanted, most, static_cast<std::int64_t>(kMaxDecodeSplits)}));
  if (splits > 1) {
    split.chunk = (a.kv_len + splits - 1) / splits;
    split.splits = static_cast<int>((a.kv_len + split.chunk - 1) / split.chunk);
  }
  return split;
}

SplitNeed decode_split_need(const DecodeSplit& split, const AttentionArgs& a) {
  if (split.splits == 1) return {};
  const std::int64_t pairs = a.q_len * a.heads * a.batch;
  return {pairs * split.splits * (a.head_dim + 2), pairs};
}

// Copies this step's key and value rows into the cache (for kernels that do not do it inline).
template <class T>
__global__ void append_kv_kernel(AttentionArgs a) {
  const std::int64_t b = blockIdx.x, slot = *a.append_slot, hidden = a.heads * a.head_dim;
  if (slot < 0 || slot >= a.kv_len) return;
  const T* k_src = static_cast<const T*>(a.append_k) + b * a.append_batch_stride;
  const T* v_src = static_cast<const T*>(a.append_v) + b * a.append_batch_stride;
  T* k_dst =
      const_cast<T*>(static_cast<const T*>(a.k)) + b * a.kv_batch_stride + slot * a.kv_row_stride;
  T* v_dst =
      const_cast<T*>(static_cast<const T*>(a.v)) + b * a.kv_batch_stride + slot * a.kv_row_stride;
  for (std::int64_t d = threadIdx.x; d < hidden; d += blockDim.x) {
    k_dst[d] = k_src[d];
    v_dst[d] = v_src[d];
  }
}

template <class T>
void launch_decode(const AttentionArgs& a, const SplitScratch& scratch, cudaStream_t stream) {
  if (decode_vec_eligible<T>(a)) {
    DecodeSplit split = plan_decode_split(a);
    const SplitNeed need = decode_split_need(split, a);
    if (need.partial_floats > scratch.partial_floats || need.counters > scratch.counter_count) {
      split = DecodeSplit{};  // no room: one block per (query, head)
      split.chunk = a.kv_len;
    }
    split.partials = scratch.partials;
    split.counters = scratch.counters;
    const dim3 grid(static_cast<unsigned>(a.q_len * split.splits), static_cast<unsigned>(a.heads),
                    static_cast<unsigned>(a.batch));
    const std::int64_t teams = kDecodeThreads / (a.head_dim / kDecodeVec<T>);
    const std::size_t shared =
        static_cast<std::size_t>(split.chunk + teams * a.head_dim) * sizeof(float);
    launch_dependent(attention_decode_vec_kernel<T>, grid, dim3(kDecodeThreads), shared, stream, a,
                     split);
    return;
  }
  const dim3 grid(static_cast<unsigned>(a.q_len), static_cast<unsigned>(a.heads),
                  static_cast<unsigned>(a.batch));
  const std::int64_t groups = kDecodeThreads / a.head_dim;
  const std::size_t shared =
      static_cast<std::size_t>(a.head_dim + a.kv_len + groups * a.head_dim) * sizeof(float);
  attention_decode_kernel<T><<<grid, kDecodeThreads, shared, stream>>>(a);
}

// ------------------------------------------------------------------------------------------------
// Grouped kernel: 8 threads per query, online softmax over key blocks of 32.

constexpr int kGroup = 8;            // threads per query
constexpr int kGroupedQueries = 32;  // queries per block (256 threads)
constexpr int kGroupedKeys = 32;     // keys staged per step
constexpr int kMaxGroupedHeadDim = 128;

// kDims: head dimensions per thread (head_dim <= 8 * kDims); dimension d = lane_in_group + 8 * k.
// Rows of head_dim + 1 floats: the threads of a group read different keys at the same dimension,
// which the extra float spreads over the banks.
inline std::size_t grouped_shared_bytes(std::int64_t head_dim) {
  return static_cast<std::size_t>(kGroupedQueries + 2 * kGroupedKeys) * (head_dim + 1) *
         sizeof(float);
}

template <class T, int kDims>
__global__ void attention_grouped_kernel(AttentionArgs a) {
  extern __shared__ float grouped_smem[];
  const int dh = static_cast<int>(a.head_dim);
  const int ld = dh + 1;
  float* q_s = grouped_smem;                // [kGroupedQueries][ld]
  float* k_s = q_s + kGroupedQueries * ld;  // [kGroupedKeys][ld]
  float* v_s = k_s + kGroupedKeys * ld;     // [kGroupedKeys][ld]
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * kGroupedQueries;
  const int query = threadIdx.x / kGroup, sub = threadIdx.x % kGroup;
  const std::int64_t i = i0 + query;
  const T* q_base = static_cast<const T*>(a.q) + b * a.q_batch_stride + h * dh;
  const T* k_base = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * dh;
  const T* v_base = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * dh;

  for (int idx = threadIdx.x; idx < kGroupedQueries * dh; idx += blockDim.x) {
    const int r = idx / dh, d = idx % dh;
    q_s[r * ld + d] =
        i0 + r < a.q_len ? to_f32(q_base[(i0 + r) * a.q_row_stride + d]) * a.scale : 0.0f;
  }
  float o[kDims];
#pragma unroll
  for (int k = 0; k < kDims; ++k) o[k] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  // Causal: no query of this block sees keys past its last query's position.
  std::int64_t kv_end = a.kv_len;
  if (a.causal) kv_end = min(kv_end, a.q_position_offset + min(i0 + kGroupedQueries, a.q_len));

  for (std::int64_t j0 = 0; j0 < kv_end; j0 += kGroupedKeys) {
    __syncthreads();  // the previous block's keys are no longer read (and q_s is written)
    for (int idx = threadIdx.x; idx < kGroupedKeys * dh; idx += blockDim.x) {
      const int r = idx / dh, d = idx % dh;
      const bool in = j0 + r < a.kv_len;
      k_s[r * ld + d] = in ? to_f32(k_base[(j0 + r) * a.kv_row_stride + d]) : 0.0f;
      v_s[r * ld + d] = in ? to_f32(v_base[(j0 + r) * a.kv_row_stride + d]) : 0.0f;
    }
    __syncthreads();
    // Scores of keys j0 + sub * 4 + {0..3}.
    float s[4];
    float block_max = -INFINITY;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const int r = sub * 4 + t;
      float dot = 0.0f;
      for (int d = 0; d < dh; ++d) dot += q_s[query * ld + d] * k_s[r * ld + d];
      s[t] = key_visible(a, b, i, j0 + r) && i < a.q_len ? dot : -INFINITY;
      block_max = fmaxf(block_max, s[t]);
    }
    for (int offset = 1; offset < kGroup; offset <<= 1) {
      block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, offset));
    }
    // No early exit here: every lane must reach the shuffles below. With nothing visible yet,
    // m_new is -inf, every p is 0 and o and l stay 0.
    const float m_new = fmaxf(m, block_max);
    const float alpha = m == -INFINITY ? 0.0f : __expf(m - m_new);
    float block_sum = 0.0f;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      s[t] = s[t] == -INFINITY ? 0.0f : __expf(s[t] - m_new);
      block_sum += s[t];
    }
    for (int offset = 1; offset < kGroup; offset <<= 1) {
      block_sum += __shfl_xor_sync(0xffffffffu, block_sum, offset);
    }
    l = l * alpha + block_sum;
    m = m_new;
#pragma unroll
    for (int k = 0; k < kDims; ++k) o[k] *= alpha;
    const int group_base = (threadIdx.x % 32) & ~(kGroup - 1);
#pragma unroll
    for (int r = 0; r < kGroupedKeys; ++r) {
      const float p = __shfl_sync(0xffffffffu, s[r % 4], group_base + r / 4);
#pragma unroll
      for (int k = 0; k < kDims; ++k) {
        const int d = sub + kGroup * k;
        if (d < dh) o[k] += p * v_s[r * ld + d];
      }
    }
  }
  if (i >= a.q_len) return;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  T* out = static_cast<T*>(a.out) + b * a.out_batch_stride + i * a.out_row_stride + h * dh;
#pragma unroll
  for (int k = 0; k < kDims; ++k) {
    const int d = sub + kGroup * k;
    if (d < dh) out[d] = from_f32<T>(o[k] * inv);
  }
}

// ------------------------------------------------------------------------------------------------
// Tensor-core kernel.

namespace wmma = nvcuda::wmma;

constexpr int kKeyBlock = 64;  // keys (and values) staged in shared memory at a time

struct TileSizes {
  int query_tile;  // queries per block: 16 per warp
  int kv_padded;   // kv_len rounded up to kKeyBlock
  std::size_t shared_bytes;
};

// Row stride of the f32 score tile: 4 floats past a multiple of 32 banks, so the two threads of
// each row and the 16 rows of a warp spread over the banks.
__host__ __device__ inline int score_stride(int kv_padded, int head_dim) {
  return (kv_padded > head_dim ? kv_padded : head_dim) + 4;
}

template <class T>
std::size_t tile_shared_bytes(int query_tile, int kv_padded, int head_dim) {
  const std::size_t q = static_cast<std::size_t>(query_tile) * head_dim * sizeof(T);
  const std::size_t kv = static_cast<std::size_t>(kKeyBlock) * head_dim * sizeof(T);
  const std::size_t s =
      static_cast<std::size_t>(query_tile) * score_stride(kv_padded, head_dim) * sizeof(float);
  const std::size_t p = static_cast<std::size_t>(query_tile) * kv_padded * sizeof(T);
  const std::size_t mask = static_cast<std::size_t>(kv_padded) * sizeof(float);
  return q + kv + s + p + mask;
}

constexpr std::size_t kSharedBudget = 200 * 1024;  // H100/A100 allow up to 227 KB per block

template <class T>
TileSizes choose_tiles(const AttentionArgs& a) {
  const int kv_padded = static_cast<int>((a.kv_len + kKeyBlock - 1) / kKeyBlock * kKeyBlock);
  // Large tiles share each staged key block among more queries; small ones spread a small batch
  // over more multiprocessors. Take the largest tile that still gives two blocks per SM.
  const std::int64_t want_blocks = 2 * static_cast<std::int64_t>(multiprocessor_count());
  TileSizes fallback{0, kv_padded, 0};
  for (int query_tile : {64, 32, 16}) {
    const std::size_t bytes =
        tile_shared_bytes<T>(query_tile, kv_padded, static_cast<int>(a.head_dim));
    if (bytes > kSharedBudget) continue;
    fallback = {query_tile, kv_padded, bytes};
    const std::int64_t blocks = (a.q_len + query_tile - 1) / query_tile * a.heads * a.batch;
    if (blocks >= want_blocks) return fallback;
  }
  return fallback;  // the smallest tile that fits (or none)
}

// acc += A_0 B_0 + ... + A_{steps-1} B_{steps-1} over 16 x 16 tiles in shared memory: A_s at
// a + 16 s (row-major, leading dimension lda), B_s at b + s * b_step (layout BLayout, ldb).
template <class T, class BLayout>
__device__ __forceinline__ void mma_tiles(wmma::fragment<wmma::accumulator, 16, 16, 16, float>& acc,
                                          const T* a, int lda, const T* b, int ldb, int b_step,
                                          int steps) {
#pragma unroll
  for (int s = 0; s < steps; ++s) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a_frag;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, BLayout> b_frag;
    wmma::load_matrix_sync(a_frag, a + s * 16, lda);
    wmma::load_matrix_sync(b_frag, b + s * b_step, ldb);
    wmma::mma_sync(acc, a_frag, b_frag, acc);
  }
}

// Exact softmax of query row i over keys [0, keys), shared by kLanes neighbouring lanes (lane
// `part` takes keys part, part + kLanes, ...): scores (s_row, f32, overwritten) times the scale
// plus the key bias (0 or -inf per key), causal mask, then probabilities rounded to T into p_row.
// Fully masked rows (and rows past q_len) give zeros. Every lane of the warp must call it.
template <int kLanes, class T>
__device__ __forceinline__ void softmax_row(const AttentionArgs& a, std::int64_t i, int part,
                                            int keys, float* s_row, const float* key_bias,
                                            T* p_row) {
  const bool row_valid = i < a.q_len;
  float row_max = -INFINITY;
  for (int j = part; j < keys; j += kLanes) {
    const bool causal_masked = a.causal && j > a.q_position_offset + i;
    const float s = row_valid && !causal_masked ? s_row[j] * a.scale + key_bias[j] : -INFINITY;
    s_row[j] = s;
    row_max = fmaxf(row_max, s);
  }
#pragma unroll
  for (int offset = 1; offset < kLanes; offset <<= 1)
    row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, offset));
  float sum = 0.0f;
  for (int j = part; j < keys; j += kLanes) {
    const float p = s_row[j] == -INFINITY ? 0.0f : __expf(s_row[j] - row_max);
    s_row[j] = p;
    sum += p;
  }
#pragma unroll
  for (int offset = 1; offset < kLanes; offset <<= 1)
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int j = part; j < keys; j += kLanes) p_row[j] = from_f32<T>(s_row[j] * inv);
}

// Copies rows x head_dim elements (16-byte aligned rows) from global to shared memory, zero
// filling rows at or past `valid_rows`. Asynchronous copies (cp.async): every thread issues all
// its 16-byte copies before waiting, so a block with few threads is not serialized on memory
// latency. The caller then calls wait_tiles() and __syncthreads() before reading the tile.
template <class T, int kHeadDim>
__device__ void load_tile(T* dst, const T* src, std::int64_t src_row_stride, int rows,
                          std::int64_t valid_rows) {
  constexpr int kVecPerRow = kHeadDim * static_cast<int>(sizeof(T)) / 16;
  for (int idx = threadIdx.x; idx < rows * kVecPerRow; idx += blockDim.x) {
    const int r = idx / kVecPerRow, c = idx % kVecPerRow;
    uint4* target = reinterpret_cast<uint4*>(dst + r * kHeadDim) + c;
    if (r < valid_rows) {
      __pipeline_memcpy_async(target, reinterpret_cast<const uint4*>(src + r * src_row_stride) + c,
                              16);
    } else {
      *target = make_uint4(0, 0, 0, 0);
    }
  }
}

// Waits for this thread's outstanding load_tile() copies.
__device__ __forceinline__ void wait_tiles() {
  __pipeline_commit();
  __pipeline_wait_prior(0);
}

template <class T, int kHeadDim>
__global__ void attention_tensor_core_kernel(AttentionArgs a, int query_tile, int kv_padded) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int ld_s = score_stride(kv_padded, kHeadDim);
  T* q_tile = reinterpret_cast<T*>(smem);       // [query_tile][kHeadDim]
  T* kv_tile = q_tile + query_tile * kHeadDim;  // [kKeyBlock][kHeadDim]
  float* scores = reinterpret_cast<float*>(kv_tile + kKeyBlock * kHeadDim);  // [query_tile][ld_s]
  T* probs = reinterpret_cast<T*>(scores + query_tile * ld_s);  // [query_tile][kv_padded]
  float* key_bias = reinterpret_cast<float*>(probs + query_tile * kv_padded);  // [kv_padded]

  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * query_tile;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* q_base =
      static_cast<const T*>(a.q) + b * a.q_batch_stride + i0 * a.q_row_stride + h * kHeadDim;
  const T* k_base = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * kHeadDim;
  const T* v_base = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * kHeadDim;

  load_tile<T, kHeadDim>(q_tile, q_base, a.q_row_stride, query_tile, a.q_len - i0);
  // Padding and the key mask as an additive bias, read once per block.
  for (int j = threadIdx.x; j < kv_padded; j += blockDim.x) {
    const bool visible =
        j < a.kv_len && (!a.key_mask || a.key_mask[b * a.mask_batch_stride + j] != 0);
    key_bias[j] = visible ? 0.0f : -INFINITY;
  }

  // S = Q K^T, one key block at a time; each warp owns 16 query rows.
  for (int k0 = 0; k0 < kv_padded; k0 += kKeyBlock) {
    __syncthreads();  // the previous block's K is no longer read
    load_tile<T, kHeadDim>(kv_tile, k_base + k0 * a.kv_row_stride, a.kv_row_stride, kKeyBlock,
                           a.kv_len - k0);
    wait_tiles();  // with the first key block, also the query tile
    __syncthreads();
    for (int n = 0; n < kKeyBlock / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      // K stored [key][d] row-major is K^T in column-major order.
      mma_tiles<T, wmma::col_major>(acc, q_tile + warp * 16 * kHeadDim, kHeadDim,
                                    kv_tile + n * 16 * kHeadDim, kHeadDim, 16, kHeadDim / 16);
      wmma::store_matrix_sync(scores + warp * 16 * ld_s + k0 + n * 16, acc, ld_s,
                              wmma::mem_row_major);
    }
  }
  __syncwarp();

  // Exact softmax of this warp's 16 rows: two threads per row, each taking every other key.
  softmax_row<2>(a, i0 + warp * 16 + lane / 2, lane % 2, kv_padded,
                 scores + (warp * 16 + lane / 2) * ld_s, key_bias,
                 probs + (warp * 16 + lane / 2) * kv_padded);
  __syncwarp();

  // O = P V, accumulated in registers across value blocks.
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> out_acc[kHeadDim / 16];
#pragma unroll
  for (int d = 0; d < kHeadDim / 16; ++d) wmma::fill_fragment(out_acc[d], 0.0f);
  for (int k0 = 0; k0 < kv_padded; k0 += kKeyBlock) {
    __syncthreads();
    load_tile<T, kHeadDim>(kv_tile, v_base + k0 * a.kv_row_stride, a.kv_row_stride, kKeyBlock,
                           a.kv_len - k0);
    wait_tiles();
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kKeyBlock / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa;
      wmma::load_matrix_sync(pa, probs + warp * 16 * kv_padded + k0 + kk * 16, kv_padded);
#pragma unroll
      for (int d = 0; d < kHeadDim / 16; ++d) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vb;
        wmma::load_matrix_sync(vb, kv_tile + kk * 16 * kHeadDim + d * 16, kHeadDim);
        wmma::mma_sync(out_acc[d], pa, vb, out_acc[d]);
      }
    }
  }

  // Stage the f32 output through this warp's rows of the score buffer, then convert and store.
  float* staged = scores + warp * 16 * ld_s;
#pragma unroll
  for (int d = 0; d < kHeadDim / 16; ++d) {
    wmma::store_matrix_sync(staged + d * 16, out_acc[d], ld_s, wmma::mem_row_major);
  }
  __syncwarp();
  T* out_base = static_cast<T*>(a.out) + b * a.out_batch_stride + h * kHeadDim;
  for (int idx = lane; idx < 16 * kHeadDim; idx += 32) {
    const int r = idx / kHeadDim, c = idx % kHeadDim;
    const std::int64_t i = i0 + warp * 16 + r;
    if (i < a.q_len) out_base[i * a.out_row_stride + c] = from_f32<T>(staged[r * ld_s + c]);
  }
}

template <class T, int kHeadDim>
void launch_tensor_core(const AttentionArgs& a, cudaStream_t stream) {
  const TileSizes tiles = choose_tiles<T>(a);
  // Raise the shared-memory limit once per instantiation (a host-side attribute, done on the
  // first call, which comes before any graph capture).
  static const cudaError_t configured = cudaFuncSetAttribute(
      attention_tensor_core_kernel<T, kHeadDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(kSharedBudget));
  (void)configured;
  const dim3 grid(static_cast<unsigned>((a.q_len + tiles.query_tile - 1) / tiles.query_tile),
                  static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  attention_tensor_core_kernel<T, kHeadDim>
      <<<grid, tiles.query_tile * 2, tiles.shared_bytes, stream>>>(a, tiles.query_tile,
                                                                   tiles.kv_padded);
}

// ------------------------------------------------------------------------------------------------
// Prefill kernel: one block of four warps per (16 queries, head, batch), every visible key and
// value row staged in shared memory at once. A 128-token prompt at batch 1 is only 96 such tiles;
// the tensor-core kernel above gives each tile one warp, which then waits on every key block,
// softmax row and value block in turn (19 us per layer on an H200). Here the warps split the key
// tiles of S = Q K^T, eight threads share each softmax row, and the warps split the output
// columns of O = P V; with a causal mask a tile reads only the keys up to its last query.

constexpr int kPrefillQueries = 16;
constexpr int kPrefillThreads = 128;

template <class T>
std::size_t prefill_shared_bytes(std::int64_t kv_padded, std::int64_t head_dim) {
  const std::size_t q = static_cast<std::size_t>(kPrefillQueries) * head_dim * sizeof(T);
  const std::size_t kv = 2 * static_cast<std::size_t>(kv_padded) * head_dim * sizeof(T);
  const std::size_t s = static_cast<std::size_t>(kPrefillQueries) *
                        score_stride(static_cast<int>(kv_padded), static_cast<int>(head_dim)) *
                        sizeof(float);
  const std::size_t p = static_cast<std::size_t>(kPrefillQueries) * kv_padded * sizeof(T);
  const std::size_t bias = static_cast<std::size_t>(kv_padded) * sizeof(float);
  return q + kv + s + p + bias;
}

__host__ __device__ inline std::int64_t padded16(std::int64_t n) {
  return (n + 15) / 16 * 16;
}

template <class T, int kHeadDim>
__global__ void __launch_bounds__(kPrefillThreads)
    attention_prefill_kernel(AttentionArgs a, int kv_padded) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int ld_s = score_stride(kv_padded, kHeadDim);
  T* q_tile = reinterpret_cast<T*>(smem);                                   // [16][kHeadDim]
  T* k_rows = q_tile + kPrefillQueries * kHeadDim;                          // [kv_padded][kHeadDim]
  T* v_rows = k_rows + kv_padded * kHeadDim;                                // [kv_padded][kHeadDim]
  float* scores = reinterpret_cast<float*>(v_rows + kv_padded * kHeadDim);  // [16][ld_s]
  T* probs = reinterpret_cast<T*>(scores + kPrefillQueries * ld_s);         // [16][kv_padded]
  float* key_bias = reinterpret_cast<float*>(probs + kPrefillQueries * kv_padded);

  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * kPrefillQueries;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32;
  // Keys past the tile's last query are masked for every row of a causal tile: not read at all.
  std::int64_t key_end = a.kv_len;
  if (a.causal) {
    const std::int64_t last_query = min(i0 + kPrefillQueries, a.q_len) - 1;
    key_end = min(key_end, a.q_position_offset + last_query + 1);
    if (key_end < 0) key_end = 0;
  }
  const int tile_keys = static_cast<int>(padded16(key_end));

  const T* q_base =
      static_cast<const T*>(a.q) + b * a.q_batch_stride + i0 * a.q_row_stride + h * kHeadDim;
  const T* k_base = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * kHeadDim;
  const T* v_base = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * kHeadDim;
  wait_for_previous_kernel();  // q, k and v come from the previous kernel
  allow_dependent_launch();
  // Q and K in one group, V in a second one that lands while S and the softmax run.
  load_tile<T, kHeadDim>(q_tile, q_base, a.q_row_stride, kPrefillQueries, a.q_len - i0);
  load_tile<T, kHeadDim>(k_rows, k_base, a.kv_row_stride, tile_keys, key_end);
  __pipeline_commit();
  load_tile<T, kHeadDim>(v_rows, v_base, a.kv_row_stride, tile_keys, key_end);
  __pipeline_commit();
  for (int j = threadIdx.x; j < tile_keys; j += kPrefillThreads) {
    const bool visible =
        j < key_end && (!a.key_mask || a.key_mask[b * a.mask_batch_stride + j] != 0);
    key_bias[j] = visible ? 0.0f : -INFINITY;
  }
  __pipeline_wait_prior(1);
  __syncthreads();

  // S = Q K^T: the warps take turns over the 16-key tiles.
  for (int n = warp; n < tile_keys / 16; n += kPrefillThreads / 32) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    // K stored [key][d] row-major is K^T in column-major order.
    mma_tiles<T, wmma::col_major>(acc, q_tile, kHeadDim, k_rows + n * 16 * kHeadDim, kHeadDim, 16,
                                  kHeadDim / 16);
    wmma::store_matrix_sync(scores + n * 16, acc, ld_s, wmma::mem_row_major);
  }
  __syncthreads();

  // Exact softmax: eight neighbouring threads per row, each taking every eighth key.
  {
    const int row = threadIdx.x / 8;
    softmax_row<8>(a, i0 + row, threadIdx.x % 8, tile_keys, scores + row * ld_s, key_bias,
                   probs + row * kv_padded);
  }
  __pipeline_wait_prior(0);  // V
  __syncthreads();

  // With a store (a prefill into a KV cache, q_len == kv_len), each tile stores the key and value
  // rows of its own 16 positions from the staged copies.
  if (a.store_k != nullptr) {
    constexpr int kPieces = kHeadDim / 8;  // 16-byte pieces of a head's row
    const int rows =
        static_cast<int>(min(static_cast<std::int64_t>(kPrefillQueries), a.kv_len - i0));
    for (int idx = threadIdx.x; idx < rows * kPieces; idx += kPrefillThreads) {
      const std::int64_t j = i0 + idx / kPieces;
      const int col = (idx % kPieces) * 8;
      const std::int64_t dst =
          b * a.store_batch_stride + j * a.store_row_stride + h * kHeadDim + col;
      *reinterpret_cast<uint4*>(static_cast<T*>(a.store_k) + dst) =
          *reinterpret_cast<const uint4*>(k_rows + j * kHeadDim + col);
      *reinterpret_cast<uint4*>(static_cast<T*>(a.store_v) + dst) =
          *reinterpret_cast<const uint4*>(v_rows + j * kHeadDim + col);
    }
  }

  // O = P V: the warps take turns over the 16-column tiles of the output, staged as f32 in the
  // score rows (no longer read) before the conversion and store.
  for (int d = warp; d < kHeadDim / 16; d += kPrefillThreads / 32) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    mma_tiles<T, wmma::row_major>(acc, probs, kv_padded, v_rows + d * 16, kHeadDim, 16 * kHeadDim,
                                  tile_keys / 16);
    wmma::store_matrix_sync(scores + d * 16, acc, ld_s, wmma::mem_row_major);
  }
  __syncthreads();
  T* out_base = static_cast<T*>(a.out) + b * a.out_batch_stride + h * kHeadDim;
  for (int idx = threadIdx.x; idx < kPrefillQueries * kHeadDim; idx += kPrefillThreads) {
    const int r = idx / kHeadDim, c = idx % kHeadDim;
    const std::int64_t i = i0 + r;
    if (i < a.q_len) out_base[i * a.out_row_stride + c] = from_f32<T>(scores[r * ld_s + c]);
  }
}

template <class T, int kHeadDim>
void launch_prefill(const AttentionArgs& a, cudaStream_t stream) {
  const std::int64_t kv_padded = padded16(a.kv_len);
  static const cudaError_t configured = cudaFuncSetAttribute(
      attention_prefill_kernel<T, kHeadDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(kSharedBudget));
  (void)configured;
  const dim3 grid(static_cast<unsigned>((a.q_len + kPrefillQueries - 1) / kPrefillQueries),
                  static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  launch_dependent(attention_prefill_kernel<T, kHeadDim>, grid, dim3(kPrefillThreads),
                   prefill_shared_bytes<T>(kv_padded, kHeadDim), stream, a,
                   static_cast<int>(kv_padded));
}

template <class T, int kDims>
void launch_grouped_with(const AttentionArgs& a, cudaStream_t stream) {
  // Head sizes above 94 need more than the default 48 KB of shared memory: raised once per
  // instantiation, on the first call (before any graph capture).
  static const cudaError_t configured = cudaFuncSetAttribute(
      attention_grouped_kernel<T, kDims>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(grouped_shared_bytes(kMaxGroupedHeadDim)));
  (void)configured;
  const dim3 grid(static_cast<unsigned>((a.q_len + kGroupedQueries - 1) / kGroupedQueries),
                  static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  attention_grouped_kernel<T, kDims>
      <<<grid, kGroupedQueries * kGroup, grouped_shared_bytes(a.head_dim), stream>>>(a);
}

template <class T>
void launch_grouped(const AttentionArgs& a, cudaStream_t stream) {
  const std::int64_t dims = (a.head_dim + kGroup - 1) / kGroup;
  if (dims <= 1)
    launch_grouped_with<T, 1>(a, stream);
  else if (dims <= 2)
    launch_grouped_with<T, 2>(a, stream);
  else if (dims <= 4)
    launch_grouped_with<T, 4>(a, stream);
  else if (dims <= 8)
    launch_grouped_with<T, 8>(a, stream);
  else
    launch_grouped_with<T, 16>(a, stream);
}

}  // namespace

bool attention_tensor_core_eligible(DType act, const AttentionArgs& a) {
  if (act != DType::F16 && act != DType::BF16) return false;
  if (a.head_dim != 32 && a.head_dim != 64 && a.head_dim != 128) return false;
  if (a.q_len < 16) return false;  // decode steps: the simple kernel wastes less
  const std::int64_t elem = 2;
  const bool strides_ok = (a.q_row_stride * elem) % 16 == 0 && (a.kv_row_stride * elem) % 16 == 0 &&
                          (a.q_batch_stride * elem) % 16 == 0 &&
                          (a.kv_batch_stride * elem) % 16 == 0;
  if (!strides_ok || !aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v)) return false;
  return choose_tiles<__half>(a).query_tile > 0;
}

bool attention_prefill_eligible(DType act, const AttentionArgs& a) {
  if (!attention_tensor_core_eligible(act, a)) return false;  // same dtypes, heads and alignment
  return prefill_shared_bytes<__half>(padded16(a.kv_len), a.head_dim) <= kSharedBudget;
}

namespace {

// Whether the prefill kernel can store the key and value rows itself: every row is some tile's
// query row, and the cache rows take 16-byte stores.
// EAQ_PREFILL_KV_STORE=0 stores with a separate cache write (to measure what the fold buys).
bool prefill_store_eligible(DType act, const AttentionArgs& a) {
  static const bool disabled = env_is("EAQ_PREFILL_KV_STORE", "0");
  if (disabled) return false;
  const std::int64_t per_vec = 16 / static_cast<std::int64_t>(dtype_size(act));
  return a.q_position_offset == 0 && a.q_len == a.kv_len && aligned16(a.store_k) &&
         aligned16(a.store_v) && a.store_batch_stride % per_vec == 0 &&
         a.store_row_stride % per_vec == 0;
}

// The store as cache writes, for the kernels that do not store (one write when K and V are
// adjacent in both the source rows and the cache rows, as GPT-2's qkv rows and caches are).
void store_kv(DType act, const AttentionArgs& a, cudaStream_t stream) {
  const std::int64_t hidden = a.heads * a.head_dim;
  const std::size_t element = dtype_size(act);
  const bool adjacent =
      static_cast<const char*>(a.v) == static_cast<const char*>(a.k) + hidden * element &&
      static_cast<char*>(a.store_v) == static_cast<char*>(a.store_k) + hidden * element;
  CacheWrite w;
  w.src_batch_stride = a.kv_batch_stride;
  w.src_row_stride = a.kv_row_stride;
  w.cache_batch_stride = a.store_batch_stride;
  w.cache_row_stride = a.store_row_stride;
  w.capacity = a.kv_len;
  w.batch = a.batch;
  w.rows = a.kv_len;
  w.dtype = act;
  w.src = a.k;
  w.cache = a.store_k;
  w.cols = adjacent ? 2 * hidden : hidden;
  launch_write_cache(w, stream);
  if (adjacent) return;
  w.src = a.v;
  w.cache = a.store_v;
  launch_write_cache(w, stream);
}

}  // namespace

const char* attention_kernel_name(DType act, const AttentionArgs& a) {
  // Prompts and encoder batches with heads of 64: the register kernel, at every batch size
  // (eaq_gemm_bench: faster than the others at 1 to 128 rows of 128 tokens).
  if (a.q_len >= 16 && attention_prefill_mma_eligible(act, a)) return "mma";
  if (attention_prefill_eligible(act, a)) {
    // Few query tiles (a prompt or two): the prefill kernel. Many (an encoder batch): the
    // tensor-core kernel's larger tiles stage each key block once for up to 64 queries.
    const std::int64_t tiles =
        (a.q_len + kPrefillQueries - 1) / kPrefillQueries * a.heads * a.batch;
    if (tiles <= 8 * static_cast<std::int64_t>(multiprocessor_count())) return "prefill";
  }
  if (attention_tensor_core_eligible(act, a)) return "wmma";
  if (a.head_dim <= kMaxGroupedHeadDim) {
    if (a.q_len >= 16) return "grouped";
    // Decode: the scores of the whole cache must fit the shared memory beside the partial sums
    // (at most 256 threads x 8 values for the vectorized kernel).
    const std::int64_t floats = a.head_dim + a.kv_len + kDecodeThreads * 8;
    if (floats * static_cast<std::int64_t>(sizeof(float)) <= 48 * 1024) return "decode";
  }
  return "simple";
}

void launch_attention_simple(DType act, const AttentionArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.q_len == 0) return;
  const dim3 grid(static_cast<unsigned>(a.q_len), static_cast<unsigned>(a.heads),
                  static_cast<unsigned>(a.batch));
  const std::size_t shared = static_cast<std::size_t>(a.head_dim + a.kv_len) * sizeof(float);
  EAQ_DISPATCH_FLOAT(act, attention_simple_kernel<T><<<grid, 128, shared, stream>>>(a));
}

SplitNeed attention_split_need(DType act, const AttentionArgs& a) {
  if (a.batch == 0 || a.q_len == 0 || attention_kernel_name(act, a)[0] != 'd') return {};
  SplitNeed need;
  EAQ_DISPATCH_FLOAT(act, {
    if (decode_vec_eligible<T>(a)) need = decode_split_need(plan_decode_split(a), a);
  });
  return need;
}

void launch_attention(DType act, const AttentionArgs& args, const SplitScratch& scratch,
                      cudaStream_t stream) {
  launch_attention_kernel(act, args, scratch, attention_kernel_name(act, args), stream);
}

void launch_attention_kernel(DType act, const AttentionArgs& args, const SplitScratch& scratch,
                             const char* kernel, cudaStream_t stream) {
  if (args.batch == 0 || args.q_len == 0) return;
  bool inline_append = false;
  if (kernel[0] == 'd') EAQ_DISPATCH_FLOAT(act, inline_append = decode_vec_eligible<T>(args));
  AttentionArgs a = args;
  const bool stores = kernel[0] == 'p' || kernel[0] == 'm';  // the prefill kernels
  if (a.store_k != nullptr && !(stores && prefill_store_eligible(act, a))) {
    store_kv(act, a, stream);
    a.store_k = a.store_v = nullptr;
  }
  if (a.append_slot != nullptr && !inline_append) {
    EAQ_DISPATCH_FLOAT(act,
                       append_kv_kernel<T><<<static_cast<unsigned>(a.batch), 256, 0, stream>>>(a));
    a.append_slot = nullptr;
    a.append_k = a.append_v = nullptr;
  }
  if (kernel[0] == 's') {
    launch_attention_simple(act, a, stream);
    return;
  }
  if (kernel[0] == 'd') {
    EAQ_DISPATCH_FLOAT(act, launch_decode<T>(a, scratch, stream));
    return;
  }
  if (kernel[0] == 'g') {
    EAQ_DISPATCH_FLOAT(act, launch_grouped<T>(a, stream));
    return;
  }
  if (kernel[0] == 'm') {
    launch_attention_prefill_mma(act, a, stream);
    return;
  }
  const bool prefill = kernel[0] == 'p';
  const auto dispatch = [&](auto tag) {
    using T = decltype(tag);
    switch (a.head_dim) {
      case 32:
        prefill ? launch_prefill<T, 32>(a, stream) : launch_tensor_core<T, 32>(a, stream);
        break;
      case 64:
        prefill ? launch_prefill<T, 64>(a, stream) : launch_tensor_core<T, 64>(a, stream);
        break;
      case 128:
        prefill ? launch_prefill<T, 128>(a, stream) : launch_tensor_core<T, 128>(a, stream);
        break;
      default:
        break;
    }
  };
  if (act == DType::F16)
    dispatch(__half{});
  else
    dispatch(__nv_bfloat16{});
}

}  // namespace eaq::cuda
