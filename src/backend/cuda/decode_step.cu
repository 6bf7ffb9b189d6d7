// A whole GPT-2 decode step at batch 1 in one launch: a measured variant, off by default
// (EAQ_FUSED_DECODE=1 turns it on). Op by op, a step is ~65 dependent kernels of 2-6 us each
// (docs/results.md), while the weights it reads (250 MB in f16) would take ~75 us at the H100's
// bandwidth: the kernels' latency, not the reads, set the time per token. Here one block per
// multiprocessor stays resident for the whole step and the phases are separated by a grid barrier
// instead of kernel boundaries:
//
//   per block: LayerNorm 1 + QKV (K and V written into the cache at the slot)  | barrier
//              attention over ranges of the cache, one block per (head, range) | barrier
//              the ranges merged, attention output projection + residual       | barrier
//              LayerNorm 2 + MLP in + activation                               | barrier
//              MLP out + residual                                               | barrier
//   then ln_f + LM head.
//
// A Linear phase is the GEMV of gemv.cu spread over every warp of the grid: each warp takes
// features warp * blocks + block, + blocks * warps, ... (so a layer of 768 features still reaches
// every multiprocessor), reads its weight rows in 16-byte pieces and x from shared memory, where
// every block stages (and, for ln_1/ln_2/ln_f, normalizes) the whole input vector. What the next
// phase reads and the step does not write is loaded before the barrier: weight rows into
// registers, LayerNorm parameters and older cache rows into shared memory (cp.async).
//
// Why it is not the default: it takes ~0.44-0.47 ms per step on an H100 and an H200 against
// ~0.33 ms op by op. EAQ_DECODE_TIMELINE=1 shows where (docs/results.md): every phase costs a
// barrier (~2 us with its stragglers) and a stage that reads a vector every block reads at once
// from L2 (~1-2 us); 61 phases of that outweigh the ~5 us launch of each kernel they replace.
//
// The rounding is the op-by-op path's: every intermediate the unfused ops store (normalized rows,
// q/k/v, the attention output, the MLP activation, the residual stream) is rounded to the
// activation dtype here too. Data written earlier in the launch by other blocks is read with
// __ldcg or cp.async.cg (L2, which is coherent; L1 is not).
#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/decode_step.hpp"
#include "backend/cuda/device_query.hpp"
#include "backend/cuda/mma_copy.cuh"

namespace eaq::cuda {
namespace {

constexpr int kWarps = 16;
constexpr int kThreads = 32 * kWarps;
constexpr int kVecsPerLane = 12;              // 16-byte pieces of a weight row in flight per lane
constexpr int kHeadDim = 64;                  // the attention phase gives each lane two dimensions
constexpr int kPartialStride = kHeadDim + 2;  // a warp's o[64], max, sum in shared memory
constexpr int kMaxHidden = 4096, kMaxInner = 8192;  // shared memory: tiles + x + LayerNorm

template <class T>
constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Every block waits here until all have arrived. Thread 0 of each block reads the generation
// before it arrives (it cannot move until this block has arrived) and arrives with an acq_rel
// add, which releases what its block wrote (the __syncthreads before it orders the block's
// writes); the last block to arrive resets the count and publishes the next generation with a
// release store, which the others' acquire loads see. Writes made before the barrier are then
// visible in L2 to every block.
__device__ void grid_barrier(GridBarrierState* state) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned generation = load_acquire(&state->generation);
    if (arrive_acq_rel(&state->count) == gridDim.x - 1) {
      asm volatile("st.relaxed.gpu.u32 [%0], 0;" ::"l"(&state->count) : "memory");
      asm volatile("st.release.gpu.u32 [%0], %1;" ::"l"(&state->generation), "r"(generation + 1)
                   : "memory");
    } else {
      while (load_acquire(&state->generation) == generation) {
      }
    }
  }
  __syncthreads();
}

// With a timeline, the last block (one that does no attention) adds the cycles since its previous
// mark to slot `slot` (after a block barrier, so a mark closes the phase for the whole block).
__device__ __forceinline__ void mark(unsigned long long* timeline, int slot, long long& last) {
  if (timeline == nullptr) return;
  __syncthreads();
  if (blockIdx.x == gridDim.x - 1 && threadIdx.x == 0) {
    const long long now = clock64();
    timeline[slot] += static_cast<unsigned long long>(now - last);
    last = now;
  }
}

// Where a block's shared memory goes (the host sizes it with the same function).
struct SharedLayout {
  std::size_t k_tile = 0, v_tile = 0;  // [kTileKeys][64] of T each: a pass of the attention
  std::size_t xs = 0;                  // f32 [max(E, I)]: the staged input vector
  std::size_t ln = 0;                  // f32 [2E]: the next LayerNorm's gamma, then beta
  std::size_t q = 0, partial = 0;      // f32 [64], [kWarps][kPartialStride]
  std::size_t layers = 0;              // the layer table, copied from a.layers
  std::size_t bytes = 0;
};

constexpr int kTileKeys = kWarps * 32;  // one key per lane
static_assert(sizeof(DecodeStepLayer) % 8 == 0, "the layer table is copied in 8-byte words");

__host__ __device__ inline SharedLayout shared_layout(int hidden_size, int inner, int element_bytes,
                                                      int layer_count) {
  SharedLayout l;
  const std::size_t tile = static_cast<std::size_t>(kTileKeys) * kHeadDim * element_bytes;
  l.k_tile = 0;
  l.v_tile = tile;
  l.xs = 2 * tile;
  l.ln = l.xs + static_cast<std::size_t>(hidden_size > inner ? hidden_size : inner) * 4;
  l.q = l.ln + 2 * static_cast<std::size_t>(hidden_size) * 4;
  l.partial = l.q + kHeadDim * 4;
  l.layers = l.partial + static_cast<std::size_t>(kWarps) * kPartialStride * 4;
  l.bytes = l.layers + static_cast<std::size_t>(layer_count) * sizeof(DecodeStepLayer);
  return l;
}

__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) total += scratch[w];
  __syncthreads();  // scratch is reused by the next sum
  return total;
}

// Starts copying a LayerNorm's gamma and beta (F32 [e]) into shared memory; stage_input waits.
// Issued before a grid barrier, the copies overlap it.
__device__ __forceinline__ void prefetch_layer_norm(float* ln, const float* gamma,
                                                    const float* beta, int e) {
  for (int i = threadIdx.x; i < e / 4; i += kThreads) {
    copy16(shared_address(ln + 4 * i), gamma + 4 * i, true);
    copy16(shared_address(ln + e + 4 * i), beta + 4 * i, true);
  }
  commit();
}

// xs[c] = load(c) for c < k; with `normalize`, then LayerNorm(xs) * gamma + beta rounded to T, as
// the LayerNorm op stores it (two-pass variance, f32), gamma and beta from `ln` (copied there by
// prefetch_layer_norm).
template <class T, class Load>
__device__ void stage_input(float* xs, int k, const Load& load, bool normalize, const float* ln,
                            float eps, float* scratch) {
  float sum = 0.0f;
  for (int c = threadIdx.x; c < k; c += kThreads) {
    const float v = load(c);
    xs[c] = v;
    sum += v;
  }
  if (!normalize) {
    __syncthreads();
    return;
  }
  wait_pending<0>();  // this thread's copies of gamma and beta; block_sum's barrier: everyone's
  const float mean = block_sum(sum, scratch) / static_cast<float>(k);
  float var = 0.0f;
  for (int c = threadIdx.x; c < k; c += kThreads) {  // each thread reads back what it wrote
    const float d = xs[c] - mean;
    var += d * d;
  }
  const float rstd = rsqrtf(block_sum(var, scratch) / static_cast<float>(k) + eps);
  for (int c = threadIdx.x; c < k; c += kThreads) {
    xs[c] = to_f32(from_f32<T>((xs[c] - mean) * rstd * ln[c] + ln[k + c]));
  }
  __syncthreads();
}

__device__ __forceinline__ int first_feature() {
  return static_cast<int>((threadIdx.x / 32) * gridDim.x + blockIdx.x);
}

__device__ __forceinline__ int feature_stride() {
  return static_cast<int>(gridDim.x) * kWarps;
}

// --- Linear phases ------------------------------------------------------------------------------
// A row of k elements is ceil(k / 8 / 32) 16-byte pieces per lane. When that is at most kVpl
// (3, 6 or 12), a warp keeps kVecsPerLane / kVpl of its rows in registers at once (GPT-2 small:
// four rows of 768, so the QKV and MLP-in phases, two rows per warp, are loaded whole before the
// barrier); longer rows go one row at a time in chunks of kVecsPerLane pieces.
template <class T>
__device__ __forceinline__ int row_bucket(int k) {
  const int per_lane = (k / kPerVec<T> + 31) / 32;
  return per_lane <= 3 ? 3 : per_lane <= 6 ? 6 : per_lane <= 12 ? 12 : 0;
}

// Rows feature + r * stride (r < kVecsPerLane / kVpl), pieces lane + 32 p (p < kVpl), into
// wv[r * kVpl + p].
template <class T, int kVpl>
__device__ __forceinline__ void load_rows(uint4 (&wv)[kVecsPerLane], const T* w, int n, int k,
                                          int feature, int lane) {
  constexpr int kRows = kVecsPerLane / kVpl;
  const int vectors = k / kPerVec<T>, stride = feature_stride();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int f = feature + r * stride;
    if (f >= n) break;
    const uint4* row = reinterpret_cast<const uint4*>(w + static_cast<std::int64_t>(f) * k);
#pragma unroll
    for (int p = 0; p < kVpl; ++p) {
      const int v = lane + 32 * p;
      if (v < vectors) wv[r * kVpl + p] = __ldg(row + v);
    }
  }
}

template <class T, int kVpl, class Epilogue>
__device__ void linear_rows(const T* w, int n, int k, const float* xs, uint4 (&wv)[kVecsPerLane],
                            const Epilogue& epilogue) {
  constexpr int kRows = kVecsPerLane / kVpl;
  const int lane = threadIdx.x % 32, vectors = k / kPerVec<T>, stride = feature_stride();
  for (int feature = first_feature(); feature < n; feature += kRows * stride) {
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      acc[r] = 0.0f;
#pragma unroll
      for (int p = 0; p < kVpl; ++p) {
        const int v = lane + 32 * p;
        if (v >= vectors) break;
        const T* wt = reinterpret_cast<const T*>(&wv[r * kVpl + p]);
        const float* xv = xs + v * kPerVec<T>;
#pragma unroll
        for (int i = 0; i < kPerVec<T>; ++i) acc[r] += xv[i] * to_f32(wt[i]);
      }
    }
    const int next = feature + kRows * stride;
    if (next < n) load_rows<T, kVpl>(wv, w, n, k, next, lane);  // in flight during the sums
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float dot = warp_sum(acc[r]);
      if (lane == 0 && feature + r * stride < n) epilogue(feature + r * stride, dot);
    }
  }
}

// This lane's pieces [base + lane + 32 u] of W row `feature` (rows longer than 12 pieces a lane).
template <class T>
__device__ __forceinline__ void load_chunk(uint4 (&wv)[kVecsPerLane], const T* w, int k,
                                           int feature, int base, int lane) {
  const int vectors = k / kPerVec<T>;
  const uint4* row = reinterpret_cast<const uint4*>(w + static_cast<std::int64_t>(feature) * k);
#pragma unroll
  for (int u = 0; u < kVecsPerLane; ++u) {
    const int v = base + lane + 32 * u;
    if (v < vectors) wv[u] = __ldg(row + v);
  }
}

template <class T, class Epilogue>
__device__ void linear_chunks(const T* w, int n, int k, const float* xs, uint4 (&wv)[kVecsPerLane],
                              const Epilogue& epilogue) {
  const int lane = threadIdx.x % 32, vectors = k / kPerVec<T>, stride = feature_stride();
  for (int feature = first_feature(); feature < n;) {
    float acc = 0.0f;
    for (int base = 0;;) {
#pragma unroll
      for (int u = 0; u < kVecsPerLane; ++u) {
        const int v = base + lane + 32 * u;
        if (v >= vectors) break;
        const T* wt = reinterpret_cast<const T*>(&wv[u]);
        const float* xv = xs + v * kPerVec<T>;
#pragma unroll
        for (int i = 0; i < kPerVec<T>; ++i) acc += xv[i] * to_f32(wt[i]);
      }
      base += 32 * kVecsPerLane;
      if (base >= vectors) break;
      load_chunk(wv, w, k, feature, base, lane);
    }
    const int next = feature + stride;
    if (next < n) load_chunk(wv, w, k, next, 0, lane);
    acc = warp_sum(acc);
    if (lane == 0) epilogue(feature, acc);
    feature = next;
  }
}

// Loads this warp's first rows of a Linear phase (before the barrier that precedes it).
template <class T>
__device__ __forceinline__ void prefetch_rows(uint4 (&wv)[kVecsPerLane], const void* weight, int n,
                                              int k) {
  const T* w = static_cast<const T*>(weight);
  const int feature = first_feature(), lane = threadIdx.x % 32;
  if (feature >= n) return;
  switch (row_bucket<T>(k)) {
    case 3:
      load_rows<T, 3>(wv, w, n, k, feature, lane);
      break;
    case 6:
      load_rows<T, 6>(wv, w, n, k, feature, lane);
      break;
    case 12:
      load_rows<T, 12>(wv, w, n, k, feature, lane);
      break;
    default:
      load_chunk(wv, w, k, feature, 0, lane);
  }
}

// y features [0, n) of x W^T over every warp of the grid, x (k values) staged in xs, wv as
// prefetch_rows left it; epilogue(feature, dot) runs on lane 0 of the feature's warp.
template <class T, class Epilogue>
__device__ void linear_phase(const void* weight, int n, int k, const float* xs,
                             uint4 (&wv)[kVecsPerLane], const Epilogue& epilogue) {
  const T* w = static_cast<const T*>(weight);
  switch (row_bucket<T>(k)) {
    case 3:
      linear_rows<T, 3>(w, n, k, xs, wv, epilogue);
      break;
    case 6:
      linear_rows<T, 6>(w, n, k, xs, wv, epilogue);
      break;
    case 12:
      linear_rows<T, 12>(w, n, k, xs, wv, epilogue);
      break;
    default:
      linear_chunks<T>(w, n, k, xs, wv, epilogue);
  }
}

// --- attention ----------------------------------------------------------------------------------
// The cache positions [0, slot] of each head are cut into `splits` ranges of at least
// kMinSplitKeys keys, one block each (block b takes head b / splits, range b % splits), so that
// the cache is read by many multiprocessors at once. Within a block a pass covers kTileKeys keys,
// one per lane: the lane copies its key's K and V rows into the block's tiles (cp.async, through
// L2), scores its key, and its warp keeps an online softmax; for P V each lane owns two of the 64
// dimensions. The block merges its warps and leaves (max, sum, unnormalized o[64]) in
// a.partials; the attention output projection's stage merges the ranges of each head. Positions
// after the slot are never attended (the session keeps their mask 0); masked ones are skipped, as
// the decode attention kernel does.
constexpr int kMinSplitKeys = 64;

struct KeyRanges {
  int keys = 0, splits = 1, chunk = 0;  // chunk: keys per range (a multiple of 32)
};

__device__ __forceinline__ KeyRanges key_ranges(const DecodeStepArgs& a, int slot) {
  KeyRanges r;
  r.keys = min(slot + 1, a.capacity);
  const int most = max(1, static_cast<int>(gridDim.x) / a.heads);
  r.splits = max(1, min(most, (r.keys + kMinSplitKeys - 1) / kMinSplitKeys));
  r.chunk = ((r.keys + r.splits - 1) / r.splits + 31) / 32 * 32;
  return r;
}

// Copies the K and V rows of key j (head h) into tile row `row`.
template <class T>
__device__ __forceinline__ void copy_key(T* k_tile, T* v_tile, int row, const T* kv, int e, int h,
                                         int j) {
  const T* k_src = kv + static_cast<std::int64_t>(j) * 2 * e + h * kHeadDim;
#pragma unroll
  for (int u = 0; u < kHeadDim / kPerVec<T>; ++u) {
    copy16(shared_address(k_tile + row * kHeadDim + u * kPerVec<T>), k_src + u * kPerVec<T>, true);
    copy16(shared_address(v_tile + row * kHeadDim + u * kPerVec<T>), k_src + e + u * kPerVec<T>,
           true);
  }
}

// Before the barrier that follows the QKV phase: the first pass's cache rows of this block's
// first range, all but the slot's (this step's, written by the QKV phase), and their mask bits.
// Returns whether this lane's key is visible.
template <class T>
__device__ bool prefetch_attention(const DecodeStepArgs& a, const DecodeStepLayer& layer, int slot,
                                   char* smem, const SharedLayout& l) {
  const KeyRanges r = key_ranges(a, slot);
  const int item = static_cast<int>(blockIdx.x);
  if (item >= a.heads * r.splits) return false;
  const int h = item / r.splits, j0 = (item % r.splits) * r.chunk;
  const int j1 = min(r.keys, j0 + r.chunk);
  const int row = threadIdx.x, j = j0 + row;  // pass 0
  if (j >= j1) return false;
  if (j == slot) return true;  // its mask bit is set by this launch
  copy_key(reinterpret_cast<T*>(smem + l.k_tile), reinterpret_cast<T*>(smem + l.v_tile), row,
           static_cast<const T*>(layer.kv_cache), a.hidden_size, h, j);
  commit();
  return __ldcg(a.key_mask + j) != 0;
}

template <class T>
__device__ void attention_phase(const DecodeStepArgs& a, const DecodeStepLayer& layer, int slot,
                                bool first_visible, char* smem, const SharedLayout& l) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int e = a.hidden_size;
  const KeyRanges r = key_ranges(a, slot);
  const T* kv = static_cast<const T*>(layer.kv_cache);
  const T* query = static_cast<const T*>(a.query);
  T* k_tile = reinterpret_cast<T*>(smem + l.k_tile);
  T* v_tile = reinterpret_cast<T*>(smem + l.v_tile);
  float* q = reinterpret_cast<float*>(smem + l.q);              // [64], scaled
  float* partial = reinterpret_cast<float*>(smem + l.partial);  // [kWarps][kPartialStride]
  const int row = threadIdx.x;                                  // this lane's tile row
  for (int item = static_cast<int>(blockIdx.x); item < a.heads * r.splits;
       item += static_cast<int>(gridDim.x)) {
    const bool first_item = item == static_cast<int>(blockIdx.x);
    const int h = item / r.splits, j0 = (item % r.splits) * r.chunk;
    const int j1 = min(r.keys, j0 + r.chunk);
    if (threadIdx.x < kHeadDim) {
      q[threadIdx.x] = to_f32(__ldcg(query + h * kHeadDim + threadIdx.x)) * layer.attention_scale;
    }
    float m = -INFINITY, sum = 0.0f, o0 = 0.0f, o1 = 0.0f;
    for (int pass = 0; j0 + pass * kTileKeys < j1; ++pass) {
      const int base = j0 + pass * kTileKeys, j = base + row;
      bool visible = false;
      if (j < j1) {
        const bool first = pass == 0 && first_item;
        if (!first || j == slot) copy_key(k_tile, v_tile, row, kv, e, h, j);
        visible = first ? first_visible : __ldcg(a.key_mask + j) != 0;
      }
      commit();
      wait_pending<0>();
      __syncthreads();  // the tiles of this warp, and q (first pass)
      float s = -INFINITY;
      if (visible) {
        // Lane l reads piece (u + l) % 8 of its row at step u: the 8 lanes of a quarter-warp hit
        // different banks.
        const uint4* k_row = reinterpret_cast<const uint4*>(k_tile + row * kHeadDim);
        float dot = 0.0f;
#pragma unroll
        for (int u = 0; u < kHeadDim / kPerVec<T>; ++u) {
          const int piece = (u + lane) % (kHeadDim / kPerVec<T>);
          const uint4 raw = k_row[piece];
          const T* kt = reinterpret_cast<const T*>(&raw);
#pragma unroll
          for (int i = 0; i < kPerVec<T>; ++i) dot += q[piece * kPerVec<T> + i] * to_f32(kt[i]);
        }
        s = dot;
      }
      const float chunk_max = warp_max(s);
      if (chunk_max != -INFINITY) {  // warp-uniform
        const float new_m = fmaxf(m, chunk_max);
        const float correction = m == -INFINITY ? 0.0f : __expf(m - new_m);
        const float p = s == -INFINITY ? 0.0f : __expf(s - new_m);
        sum = sum * correction + warp_sum(p);
        o0 *= correction;
        o1 *= correction;
        const int count = min(32, j1 - (base + warp * 32));
        const T* v_rows = v_tile + warp * 32 * kHeadDim + 2 * lane;
        for (int t = 0; t < count; ++t) {
          const float pt = __shfl_sync(0xffffffffu, p, t);
          o0 += pt * to_f32(v_rows[t * kHeadDim]);
          o1 += pt * to_f32(v_rows[t * kHeadDim + 1]);
        }
        m = new_m;
      }
      __syncthreads();  // the tiles are refilled by the next pass
    }
    float* mine = partial + warp * kPartialStride;
    mine[2 * lane] = o0;
    mine[2 * lane + 1] = o1;
    if (lane == 0) {
      mine[kHeadDim] = m;
      mine[kHeadDim + 1] = sum;
    }
    __syncthreads();
    // The block's (max, sum, o) over its range, o not yet divided by the sum.
    float* out = a.partials + static_cast<std::int64_t>(item) * kPartialStride;
    if (threadIdx.x < kHeadDim) {
      float top = -INFINITY;
      for (int w = 0; w < kWarps; ++w) top = fmaxf(top, partial[w * kPartialStride + kHeadDim]);
      float total = 0.0f, acc = 0.0f;
      for (int w = 0; w < kWarps; ++w) {
        const float mw = partial[w * kPartialStride + kHeadDim];
        if (mw == -INFINITY) continue;  // a warp with no visible key
        const float c = __expf(mw - top);
        total += partial[w * kPartialStride + kHeadDim + 1] * c;
        acc += partial[w * kPartialStride + threadIdx.x] * c;
      }
      out[threadIdx.x] = acc;
      if (threadIdx.x == 0) {
        out[kHeadDim] = top;
        out[kHeadDim + 1] = total;
      }
    }
    __syncthreads();  // q and partial are rewritten for the next item
  }
}

// Element c of the attention output: head c / 64's ranges merged, rounded to T as the attention
// op stores it.
template <class T>
__device__ __forceinline__ float attention_output(const DecodeStepArgs& a, const KeyRanges& r,
                                                  int c) {
  const int h = c / kHeadDim, d = c % kHeadDim;
  const float* p = a.partials + static_cast<std::int64_t>(h) * r.splits * kPartialStride;
  float top = -INFINITY;
  for (int s = 0; s < r.splits; ++s) top = fmaxf(top, __ldcg(p + s * kPartialStride + kHeadDim));
  float total = 0.0f, acc = 0.0f;
  for (int s = 0; s < r.splits; ++s) {
    const float ms = __ldcg(p + s * kPartialStride + kHeadDim);
    if (ms == -INFINITY) continue;  // a range with no visible key
    const float w = __expf(ms - top);
    total += __ldcg(p + s * kPartialStride + kHeadDim + 1) * w;
    acc += __ldcg(p + s * kPartialStride + d) * w;
  }
  return to_f32(from_f32<T>(total > 0.0f ? acc / total : 0.0f));
}

// --- the step -----------------------------------------------------------------------------------
// The step is a sequence of phases, five per layer and the LM head, run by one loop so that each
// piece of code (a stage, a Linear phase, the attention) exists once: the kernel's instructions
// then stay in the multiprocessor's instruction cache from layer to layer.

enum class PhaseKind { Qkv, Attention, AttnOut, MlpIn, MlpOut, LmHead };

struct Phase {
  PhaseKind kind = PhaseKind::Qkv;
  int layer = 0;
  const void *weight = nullptr, *bias = nullptr;  // Linear phases: [n, k], [n]
  int n = 0, k = 0;
  const float *gamma = nullptr, *beta = nullptr;  // the LayerNorm before it, if any
};

__device__ __forceinline__ Phase describe_phase(const DecodeStepArgs& a,
                                                const DecodeStepLayer* layers, int index) {
  Phase p;
  if (index == 5 * a.layer_count) {
    p.kind = PhaseKind::LmHead;
    p.weight = a.lm_head_weight;
    p.bias = a.lm_head_bias;
    p.n = a.vocab;
    p.k = a.hidden_size;
    p.gamma = a.ln_f_weight;
    p.beta = a.ln_f_bias;
    return p;
  }
  p.layer = index / 5;
  const DecodeStepLayer& l = layers[p.layer];
  const int e = a.hidden_size;
  switch (index % 5) {
    case 0:
      p = {PhaseKind::Qkv, p.layer, l.qkv_weight, l.qkv_bias, 3 * e, e, l.ln_1_weight, l.ln_1_bias};
      break;
    case 1:
      p.kind = PhaseKind::Attention;
      break;
    case 2:
      p = {PhaseKind::AttnOut, p.layer, l.attn_out_weight, l.attn_out_bias, e, e, nullptr, nullptr};
      break;
    case 3:
      p = {PhaseKind::MlpIn, p.layer, l.mlp_in_weight, l.mlp_in_bias,
           a.inner,          e,       l.ln_2_weight,   l.ln_2_bias};
      break;
    default:
      p = {PhaseKind::MlpOut, p.layer, l.mlp_out_weight, l.mlp_out_bias, e,
           a.inner,           nullptr, nullptr};
  }
  return p;
}

// What a Linear phase does with feature f's dot product (on lane 0 of its warp).
template <class T>
struct Epilogue {
  PhaseKind kind;
  const T* bias;
  T* out;     // query (Qkv), hidden (residual phases), ffn, logits
  T* kv_row;  // Qkv: the slot's cache row, or null when the slot is outside the cache
  int hidden_size;
  Activation activation;

  __device__ __forceinline__ void operator()(int f, float dot) const {
    const float v = dot + (bias ? to_f32(bias[f]) : 0.0f);
    switch (kind) {
      case PhaseKind::Qkv:
        if (f < hidden_size)
          out[f] = from_f32<T>(v);
        else if (kv_row)
          kv_row[f - hidden_size] = from_f32<T>(v);
        break;
      case PhaseKind::AttnOut:
      case PhaseKind::MlpOut:
        out[f] = from_f32<T>(v + to_f32(__ldcg(out + f)));  // the residual stream
        break;
      case PhaseKind::MlpIn:
        out[f] = from_f32<T>(apply_activation(v, activation));
        break;
      default:
        out[f] = from_f32<T>(v);
    }
  }
};

// Timeline slots per phase kind: the stage, the phase's work, the barrier after it.
__device__ __forceinline__ int timeline_slot(PhaseKind kind, int part) {
  switch (kind) {
    case PhaseKind::Qkv:
      return part;
    case PhaseKind::Attention:
      return part == 0 ? 3 : 4;
    case PhaseKind::AttnOut:
      return 5 + part;
    case PhaseKind::MlpIn:
      return 8 + part;
    case PhaseKind::MlpOut:
      return 11 + part;
    default:
      return 14 + (part > 1 ? 1 : part);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads, 1) decode_step_kernel(DecodeStepArgs a) {
  extern __shared__ __align__(16) char smem[];
  __shared__ float scratch[kWarps];
  const int e = a.hidden_size;
  const SharedLayout l = shared_layout(e, a.inner, static_cast<int>(sizeof(T)), a.layer_count);
  // The layer table in shared memory: every phase reads its pointers from it.
  auto* layers = reinterpret_cast<DecodeStepLayer*>(smem + l.layers);
  {
    const auto* src = reinterpret_cast<const unsigned long long*>(a.layers);
    auto* dst = reinterpret_cast<unsigned long long*>(layers);
    const int words = a.layer_count * static_cast<int>(sizeof(DecodeStepLayer) / 8);
    for (int i = threadIdx.x; i < words; i += kThreads) dst[i] = __ldg(src + i);
    __syncthreads();
  }
  float* xs = reinterpret_cast<float*>(smem + l.xs);
  float* ln = reinterpret_cast<float*>(smem + l.ln);
  const int slot = __ldcg(a.slot), position = __ldcg(a.positions), id = __ldcg(a.ids);
  T* hidden = static_cast<T*>(a.hidden);
  const T* word = static_cast<const T*>(a.word_table) + static_cast<std::int64_t>(id) * e;
  const T* pos = static_cast<const T*>(a.position_table) + static_cast<std::int64_t>(position) * e;
  // A slot outside the cache writes nothing (as the op-by-op path); decode_step never passes one.
  const bool in_cache = slot >= 0 && slot < a.capacity;
  if (blockIdx.x == 0 && threadIdx.x == 0 && in_cache) {
    a.key_mask[slot] = 1;
    a.tokens[slot] = id;
  }
  unsigned long long* timeline = a.timeline;
  long long last = clock64();

  uint4 wv[kVecsPerLane];
  Phase phase = describe_phase(a, layers, 0);
  prefetch_rows<T>(wv, phase.weight, phase.n, phase.k);
  prefetch_layer_norm(ln, phase.gamma, phase.beta, e);
  bool first_visible = false;
  const int phases = 5 * a.layer_count + 1;
  for (int index = 0; index < phases; ++index) {
    if (phase.kind == PhaseKind::Attention) {
      attention_phase<T>(a, layers[phase.layer], slot, first_visible, smem, l);
      mark(timeline, timeline_slot(phase.kind, 0), last);
    } else {
      // Stage the input vector (normalized when a LayerNorm comes first).
      const T* input = phase.kind == PhaseKind::MlpOut ? static_cast<const T*>(a.ffn) : hidden;
      const bool embed = index == 0, attention = phase.kind == PhaseKind::AttnOut;
      const KeyRanges ranges = key_ranges(a, slot);
      stage_input<T>(
          xs, phase.k,
          [&](int c) {
            if (attention) return attention_output<T>(a, ranges, c);
            if (!embed) return to_f32(__ldcg(input + c));
            const T v = from_f32<T>(to_f32(word[c]) + to_f32(pos[c]));
            if (blockIdx.x == 0) hidden[c] = v;
            return to_f32(v);
          },
          phase.gamma != nullptr, ln, a.layer_norm_eps, scratch);
      mark(timeline, timeline_slot(phase.kind, 0), last);
      Epilogue<T> epilogue{phase.kind,
                           static_cast<const T*>(phase.bias),
                           phase.kind == PhaseKind::Qkv      ? static_cast<T*>(a.query)
                           : phase.kind == PhaseKind::MlpIn  ? static_cast<T*>(a.ffn)
                           : phase.kind == PhaseKind::LmHead ? static_cast<T*>(a.logits)
                                                             : hidden,
                           nullptr,
                           e,
                           a.activation};
      if (phase.kind == PhaseKind::Qkv && in_cache) {
        epilogue.kv_row =
            static_cast<T*>(layers[phase.layer].kv_cache) + static_cast<std::int64_t>(slot) * 2 * e;
      }
      linear_phase<T>(phase.weight, phase.n, phase.k, xs, wv, epilogue);
    }
    if (index + 1 == phases) {
      mark(timeline, timeline_slot(phase.kind, 1), last);
      break;
    }
    // What the next phase reads and nothing in this step writes: its weights, its LayerNorm's
    // parameters, the older cache rows. It loads while this phase's stragglers finish.
    const Phase next = describe_phase(a, layers, index + 1);
    if (next.kind == PhaseKind::Attention) {
      first_visible = prefetch_attention<T>(a, layers[next.layer], slot, smem, l);
      // The attention output projection's rows too: they stay in registers meanwhile.
      const Phase after = describe_phase(a, layers, index + 2);
      prefetch_rows<T>(wv, after.weight, after.n, after.k);
    } else if (phase.kind != PhaseKind::Attention) {
      prefetch_rows<T>(wv, next.weight, next.n, next.k);
    }
    if (next.gamma != nullptr) prefetch_layer_norm(ln, next.gamma, next.beta, e);
    if (phase.kind != PhaseKind::Attention) mark(timeline, timeline_slot(phase.kind, 1), last);
    grid_barrier(a.barrier);
    mark(timeline, timeline_slot(phase.kind, 2), last);
    phase = next;
  }
  if (timeline != nullptr && blockIdx.x == gridDim.x - 1 && threadIdx.x == 0) ++timeline[16];
}

// Blocks per multiprocessor the kernel can keep resident with `shared` bytes (asked once per
// device, kernel and size: the answer does not change).
template <class T>
int resident_blocks(std::size_t shared) {
  static std::mutex mutex;
  static std::map<std::pair<int, std::size_t>, int> known;
  int device = 0;
  EAQ_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(device, shared);
  if (const auto it = known.find(key); it != known.end()) return it->second;
  EAQ_CUDA_CHECK(cudaFuncSetAttribute(decode_step_kernel<T>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(shared)));
  int blocks = 0;
  EAQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, decode_step_kernel<T>,
                                                               kThreads, shared));
  known[key] = blocks;
  return blocks;
}

template <class T>
void launch(const DecodeStepArgs& a, cudaStream_t stream) {
  const std::size_t shared =
      shared_layout(a.hidden_size, a.inner, static_cast<int>(sizeof(T)), a.layer_count).bytes;
  EAQ_CHECK(resident_blocks<T>(shared) >= 1,
            "internal error: the fused decode step cannot keep a block on a multiprocessor");
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(multiprocessor_count()));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  // Cooperative: the launch fails rather than leave a block waiting for one that never runs.
  cudaLaunchAttribute attribute[1] = {};
  attribute[0].id = cudaLaunchAttributeCooperative;
  attribute[0].val.cooperative = 1;
  config.attrs = attribute;
  config.numAttrs = 1;
  EAQ_CUDA_CHECK(cudaLaunchKernelEx(&config, decode_step_kernel<T>, a));
}

}  // namespace

const char* decode_timeline_phase_name(int slot) {
  static const char* const names[kDecodeTimelineSlots] = {"embed/ln_1 stage",
                                                          "qkv linear",
                                                          "barrier after qkv",
                                                          "attention",
                                                          "barrier after attention",
                                                          "attn_out stage",
                                                          "attn_out linear",
                                                          "barrier after attn_out",
                                                          "ln_2 stage",
                                                          "mlp_in linear",
                                                          "barrier after mlp_in",
                                                          "mlp_out stage",
                                                          "mlp_out linear",
                                                          "barrier after mlp_out",
                                                          "ln_f stage",
                                                          "lm_head linear",
                                                          "launches"};
  return slot >= 0 && slot < kDecodeTimelineSlots ? names[slot] : "?";
}

std::int64_t decode_step_partial_floats(int heads) {
  // Ranges: heads * splits <= max(blocks, heads), one block (multiprocessor) per range.
  return static_cast<std::int64_t>(std::max(multiprocessor_count(), heads)) * kPartialStride;
}

bool decode_step_eligible(DType act, int hidden_size, int heads, int inner) {
  if (act != DType::F16 && act != DType::BF16) return false;
  if (heads <= 0 || hidden_size != heads * kHeadDim || hidden_size > kMaxHidden) return false;
  if (inner <= 0 || inner % 8 != 0 || inner > kMaxInner) return false;
  return cooperative_launch_supported();
}

void launch_decode_step(DType act, const DecodeStepArgs& args, cudaStream_t stream) {
  if (act == DType::F16) launch<__half>(args, stream);
  if (act == DType::BF16) launch<__nv_bfloat16>(args, stream);
}

}  // namespace eaq::cuda
