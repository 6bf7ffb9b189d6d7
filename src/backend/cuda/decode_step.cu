// A whole GPT-2 decode step at batch 1 in one launch. Op by op, a step is ~65 dependent kernels of
// 2-6 us each (docs/results.md), while the weights it reads (250 MB in f16) would take ~75 us at
// the H100's bandwidth: the kernels' latency, not the reads, set the time per token. Here one block
// per multiprocessor stays resident for the whole step and the phases are separated by a grid
// barrier instead of kernel boundaries:
//
//   per block: LayerNorm 1 + QKV (K and V written into the cache at the slot)  | barrier
//              attention over the cache, one block per head                    | barrier
//              attention output projection + residual                          | barrier
//              LayerNorm 2 + MLP in + activation                               | barrier
//              MLP out + residual                                               | barrier
//   then ln_f + LM head.
//
// A Linear phase is the GEMV of gemv.cu spread over every warp of the grid: each warp takes
// features warp * blocks + block, + blocks * warps, ... (so a layer of 768 features still reaches
// every multiprocessor), reads its weight row in 16-byte pieces and x from shared memory, where
// every block stages (and, for ln_1/ln_2/ln_f, normalizes) the whole input vector. Weights never
// change, so each warp loads its first row of the next phase before it waits at the barrier.
//
// The rounding is the op-by-op path's: every intermediate the unfused ops store (normalized rows,
// q/k/v, the attention output, the MLP activation, the residual stream) is rounded to the
// activation dtype here too. Data written earlier in the launch by other blocks is read with
// __ldcg (L2, which is coherent; L1 is not).
#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/decode_step.hpp"
#include "backend/cuda/device_query.hpp"

namespace eaq::cuda {
namespace {

constexpr int kWarps = 16;
constexpr int kThreads = 32 * kWarps;
constexpr int kVecsPerLane = 12;  // 16-byte pieces of a weight row in flight per lane
constexpr int kHeadDim = 64;      // the attention phase gives each lane two dimensions
constexpr int kPartialStride = kHeadDim + 2;  // a warp's o[64], max, sum in shared memory
constexpr int kMaxHidden = 4096, kMaxInner = 16384;

template <class T>
constexpr int kPerVec = 16 / static_cast<int>(sizeof(T));

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Every block waits here until all have arrived. Thread 0 of each block reads the generation
// before it arrives (it cannot move until this block has arrived), and the last block to arrive
// resets the count and moves the generation on. The writes made before the barrier are then
// visible in L2 to every block.
__device__ void grid_barrier(GridBarrierState* state) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned generation = load_acquire(&state->generation);
    __threadfence();
    if (atomicAdd(&state->count, 1u) == gridDim.x - 1) {
      atomicExch(&state->count, 0u);
      __threadfence();
      atomicAdd(&state->generation, 1u);
    } else {
      while (load_acquire(&state->generation) == generation) {
      }
    }
    __threadfence();
  }
  __syncthreads();
}

// With a timeline, block 0 adds the cycles since its previous mark to slot `slot` (after a block
// barrier, so a mark closes the phase for the whole block).
__device__ __forceinline__ void mark(unsigned long long* timeline, int slot, long long& last) {
  if (timeline == nullptr) return;
  __syncthreads();
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    const long long now = clock64();
    timeline[slot] += static_cast<unsigned long long>(now - last);
    last = now;
  }
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

// xs[c] = load(c) for c < k; with gamma, then LayerNorm(xs) * gamma + beta rounded to T, as the
// LayerNorm op stores it (two-pass variance, f32).
template <class T, class Load>
__device__ void stage_input(float* xs, int k, const Load& load, const float* gamma,
                            const float* beta, float eps, float* scratch) {
  float sum = 0.0f;
  for (int c = threadIdx.x; c < k; c += kThreads) {
    const float v = load(c);
    xs[c] = v;
    sum += v;
  }
  if (gamma == nullptr) {
    __syncthreads();
    return;
  }
  const float mean = block_sum(sum, scratch) / static_cast<float>(k);
  float var = 0.0f;
  for (int c = threadIdx.x; c < k; c += kThreads) {  // each thread reads back what it wrote
    const float d = xs[c] - mean;
    var += d * d;
  }
  const float rstd = rsqrtf(block_sum(var, scratch) / static_cast<float>(k) + eps);
  for (int c = threadIdx.x; c < k; c += kThreads) {
    xs[c] = to_f32(from_f32<T>((xs[c] - mean) * rstd * __ldg(gamma + c) + __ldg(beta + c)));
  }
  __syncthreads();
}

// This lane's pieces [base + lane + 32 u] of W row `feature`.
template <class T>
__device__ __forceinline__ void load_row(uint4 (&wv)[kVecsPerLane], const T* w, int k,
                                         int feature, int base, int lane) {
  const int vectors = k / kPerVec<T>;
  const uint4* row = reinterpret_cast<const uint4*>(w + static_cast<std::int64_t>(feature) * k);
#pragma unroll
  for (int u = 0; u < kVecsPerLane; ++u) {
    const int v = base + lane + 32 * u;
    if (v < vectors) wv[u] = __ldg(row + v);
  }
}

__device__ __forceinline__ int first_feature() {
  return static_cast<int>((threadIdx.x / 32) * gridDim.x + blockIdx.x);
}

// Loads the first piece of this warp's first row of the next Linear phase (before a barrier).
template <class T>
__device__ __forceinline__ void prefetch_first_row(uint4 (&wv)[kVecsPerLane], const void* w,
                                                   int n, int k) {
  const int feature = first_feature();
  if (feature < n) load_row(wv, static_cast<const T*>(w), k, feature, 0, threadIdx.x % 32);
}

// y features [0, n) of x W^T over every warp of the grid, x (k values) staged in xs; wv holds the
// first piece of this warp's first row (prefetch_first_row). epilogue(feature, dot) on lane 0.
template <class T, class Epilogue>
__device__ void linear_phase(const void* weight, int n, int k, const float* xs,
                             uint4 (&wv)[kVecsPerLane], const Epilogue& epilogue) {
  const T* w = static_cast<const T*>(weight);
  const int lane = threadIdx.x % 32;
  const int vectors = k / kPerVec<T>;
  const int stride = static_cast<int>(gridDim.x) * kWarps;
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
        for (int e = 0; e < kPerVec<T>; ++e) acc += xv[e] * to_f32(wt[e]);
      }
      base += 32 * kVecsPerLane;
      if (base >= vectors) break;
      load_row(wv, w, k, feature, base, lane);
    }
    const int next = feature + stride;
    if (next < n) load_row(wv, w, k, next, 0, lane);  // in flight during the reduction
    acc = warp_sum(acc);
    if (lane == 0) epilogue(feature, acc);
    feature = next;
  }
}

template <class T>
__device__ __forceinline__ float bias_at(const void* bias, int feature) {
  return bias ? to_f32(static_cast<const T*>(bias)[feature]) : 0.0f;
}

// Two adjacent elements of a row written earlier in this launch.
__device__ __forceinline__ float2 load_pair(const float* p) {
  return __ldcg(reinterpret_cast<const float2*>(p));
}
__device__ __forceinline__ float2 load_pair(const __half* p) {
  return __half22float2(__ldcg(reinterpret_cast<const __half2*>(p)));
}
__device__ __forceinline__ float2 load_pair(const __nv_bfloat16* p) {
  return __bfloat1622float2(__ldcg(reinterpret_cast<const __nv_bfloat162*>(p)));
}

// Attention of this step's query over cache positions [0, slot], one block per head: warp w takes
// keys w * 32 + lane, + 512, ... (a key per lane for the scores; for P V each lane owns two of
// the 64 dimensions), keeps an online softmax, and the warps' results are merged in shared
// memory. Positions after the slot are never attended (the session keeps their mask 0); masked
// ones are skipped, as the decode attention kernel does. Writes context[h * 64 + d].
template <class T>
__device__ void attention_phase(const DecodeStepArgs& a, const DecodeStepLayer& layer, int slot,
                                float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int e = a.hidden_size, keys = min(slot + 1, a.capacity);
  const std::int64_t row_stride = 2 * static_cast<std::int64_t>(e);
  const T* kv = static_cast<const T*>(layer.kv_cache);
  const T* query = static_cast<const T*>(a.query);
  T* context = static_cast<T*>(a.context);
  float* q = shared;                   // [64], scaled
  float* partial = shared + kHeadDim;  // [kWarps][kPartialStride]
  for (int h = static_cast<int>(blockIdx.x); h < a.heads; h += static_cast<int>(gridDim.x)) {
    if (threadIdx.x < kHeadDim) {
      q[threadIdx.x] = to_f32(__ldcg(query + h * kHeadDim + threadIdx.x)) * layer.attention_scale;
    }
    __syncthreads();
    float m = -INFINITY, l = 0.0f, o0 = 0.0f, o1 = 0.0f;
    for (int base = warp * 32; base < keys; base += kWarps * 32) {
      const int j = base + lane;
      float s = -INFINITY;
      if (j < keys && __ldcg(a.key_mask + j) != 0) {
        const uint4* k_row = reinterpret_cast<const uint4*>(kv + j * row_stride + h * kHeadDim);
        float dot = 0.0f;
#pragma unroll
        for (int u = 0; u < kHeadDim / kPerVec<T>; ++u) {
          const uint4 raw = __ldcg(k_row + u);
          const T* kt = reinterpret_cast<const T*>(&raw);
#pragma unroll
          for (int i = 0; i < kPerVec<T>; ++i) dot += q[u * kPerVec<T> + i] * to_f32(kt[i]);
        }
        s = dot;
      }
      const float chunk_max = warp_max(s);
      if (chunk_max == -INFINITY) continue;  // the whole chunk is masked (warp-uniform)
      const float new_m = fmaxf(m, chunk_max);
      const float correction = m == -INFINITY ? 0.0f : __expf(m - new_m);
      const float p = s == -INFINITY ? 0.0f : __expf(s - new_m);
      l = l * correction + warp_sum(p);
      o0 *= correction;
      o1 *= correction;
      const int count = min(32, keys - base);
      const T* v_col = kv + e + h * kHeadDim + 2 * lane;
#pragma unroll 8
      for (int t = 0; t < count; ++t) {
        const float pt = __shfl_sync(0xffffffffu, p, t);
        const float2 v = load_pair(v_col + (base + t) * row_stride);
        o0 += pt * v.x;
        o1 += pt * v.y;
      }
      m = new_m;
    }
    float* mine = partial + warp * kPartialStride;
    mine[2 * lane] = o0;
    mine[2 * lane + 1] = o1;
    if (lane == 0) {
      mine[kHeadDim] = m;
      mine[kHeadDim + 1] = l;
    }
    __syncthreads();
    if (threadIdx.x < kHeadDim) {
      float top = -INFINITY;
      for (int w = 0; w < kWarps; ++w) top = fmaxf(top, partial[w * kPartialStride + kHeadDim]);
      float total = 0.0f, out = 0.0f;
      for (int w = 0; w < kWarps; ++w) {
        const float mw = partial[w * kPartialStride + kHeadDim];
        if (mw == -INFINITY) continue;  // a warp with no visible key
        const float c = __expf(mw - top);
        total += partial[w * kPartialStride + kHeadDim + 1] * c;
        out += partial[w * kPartialStride + threadIdx.x] * c;
      }
      context[h * kHeadDim + threadIdx.x] = from_f32<T>(total > 0.0f ? out / total : 0.0f);
    }
    __syncthreads();  // q and partial are rewritten for the next head
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads, 1) decode_step_kernel(DecodeStepArgs a) {
  extern __shared__ float smem[];  // the staged input vector, or the attention's scratch
  __shared__ float scratch[kWarps];
  float* xs = smem;
  const int e = a.hidden_size, inner = a.inner;
  const int slot = __ldcg(a.slot), position = __ldcg(a.positions), id = __ldcg(a.ids);
  T* hidden = static_cast<T*>(a.hidden);
  T* query = static_cast<T*>(a.query);
  T* ffn = static_cast<T*>(a.ffn);
  T* logits = static_cast<T*>(a.logits);
  const T* context = static_cast<const T*>(a.context);
  const auto from_l2 = [](const T* p) { return [p](int c) { return to_f32(__ldcg(p + c)); }; };

  unsigned long long* timeline = a.timeline;
  long long last = clock64();
  uint4 wv[kVecsPerLane];
  prefetch_first_row<T>(wv, a.layers[0].qkv_weight, 3 * e, e);
  // A slot outside the cache writes nothing (as the op-by-op path); decode_step never passes one.
  const bool in_cache = slot >= 0 && slot < a.capacity;
  if (blockIdx.x == 0 && threadIdx.x == 0 && in_cache) {
    a.key_mask[slot] = 1;
    a.tokens[slot] = id;
  }
  const T* word = static_cast<const T*>(a.word_table) + static_cast<std::int64_t>(id) * e;
  const T* pos = static_cast<const T*>(a.position_table) + static_cast<std::int64_t>(position) * e;

  for (int i = 0; i < a.layer_count; ++i) {
    const DecodeStepLayer& layer = a.layers[i];
    // LayerNorm 1 and the QKV projection; K and V go straight into the cache row of the slot.
    if (i == 0) {
      const auto embed = [&](int c) {
        const T v = from_f32<T>(to_f32(word[c]) + to_f32(pos[c]));
        if (blockIdx.x == 0) hidden[c] = v;
        return to_f32(v);
      };
      stage_input<T>(xs, e, embed, layer.ln_1_weight, layer.ln_1_bias, a.layer_norm_eps, scratch);
    } else {
      stage_input<T>(xs, e, from_l2(hidden), layer.ln_1_weight, layer.ln_1_bias, a.layer_norm_eps,
                     scratch);
    }
    mark(timeline, 0, last);
    T* kv_row = static_cast<T*>(layer.kv_cache) + static_cast<std::int64_t>(slot) * 2 * e;
    linear_phase<T>(layer.qkv_weight, 3 * e, e, xs, wv, [&](int f, float dot) {
      const T v = from_f32<T>(dot + bias_at<T>(layer.qkv_bias, f));
      if (f < e)
        query[f] = v;
      else if (in_cache)
        kv_row[f - e] = v;
    });
    prefetch_first_row<T>(wv, layer.attn_out_weight, e, e);
    mark(timeline, 1, last);
    grid_barrier(a.barrier);
    mark(timeline, 2, last);

    attention_phase<T>(a, layer, slot, smem);
    mark(timeline, 3, last);
    grid_barrier(a.barrier);
    mark(timeline, 4, last);

    // Attention output projection + residual.
    stage_input<T>(xs, e, from_l2(context), nullptr, nullptr, 0.0f, scratch);
    mark(timeline, 5, last);
    linear_phase<T>(layer.attn_out_weight, e, e, xs, wv, [&](int f, float dot) {
      hidden[f] =
          from_f32<T>(dot + bias_at<T>(layer.attn_out_bias, f) + to_f32(__ldcg(hidden + f)));
    });
    prefetch_first_row<T>(wv, layer.mlp_in_weight, inner, e);
    mark(timeline, 6, last);
    grid_barrier(a.barrier);
    mark(timeline, 7, last);

    // LayerNorm 2, MLP in and its activation.
    stage_input<T>(xs, e, from_l2(hidden), layer.ln_2_weight, layer.ln_2_bias, a.layer_norm_eps,
                   scratch);
    mark(timeline, 8, last);
    linear_phase<T>(layer.mlp_in_weight, inner, e, xs, wv, [&](int f, float dot) {
      ffn[f] = from_f32<T>(apply_activation(dot + bias_at<T>(layer.mlp_in_bias, f), a.activation));
    });
    prefetch_first_row<T>(wv, layer.mlp_out_weight, e, inner);
    mark(timeline, 9, last);
    grid_barrier(a.barrier);
    mark(timeline, 10, last);

    // MLP out + residual.
    stage_input<T>(xs, inner, from_l2(ffn), nullptr, nullptr, 0.0f, scratch);
    mark(timeline, 11, last);
    linear_phase<T>(layer.mlp_out_weight, e, inner, xs, wv, [&](int f, float dot) {
      hidden[f] =
          from_f32<T>(dot + bias_at<T>(layer.mlp_out_bias, f) + to_f32(__ldcg(hidden + f)));
    });
    if (i + 1 < a.layer_count)
      prefetch_first_row<T>(wv, a.layers[i + 1].qkv_weight, 3 * e, e);
    else
      prefetch_first_row<T>(wv, a.lm_head_weight, a.vocab, e);
    mark(timeline, 12, last);
    grid_barrier(a.barrier);
    mark(timeline, 13, last);
  }

  // ln_f and the LM head.
  stage_input<T>(xs, e, from_l2(hidden), a.ln_f_weight, a.ln_f_bias, a.layer_norm_eps, scratch);
  mark(timeline, 14, last);
  linear_phase<T>(a.lm_head_weight, a.vocab, e, xs, wv, [&](int f, float dot) {
    logits[f] = from_f32<T>(dot + bias_at<T>(a.lm_head_bias, f));
  });
  mark(timeline, 15, last);
  if (timeline != nullptr && blockIdx.x == 0 && threadIdx.x == 0) ++timeline[16];
}

std::size_t shared_bytes(int hidden_size, int inner) {
  const int floats = std::max({hidden_size, inner, kHeadDim + kWarps * kPartialStride});
  return static_cast<std::size_t>(floats) * sizeof(float);
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
  const std::size_t shared = shared_bytes(a.hidden_size, a.inner);
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
  static const char* const names[kDecodeTimelineSlots] = {
      "embed/ln_1 stage",  "qkv linear",      "barrier after qkv", "attention",
      "barrier after attention", "attn_out stage", "attn_out linear", "barrier after attn_out",
      "ln_2 stage",        "mlp_in linear",   "barrier after mlp_in", "mlp_out stage",
      "mlp_out linear",    "barrier after mlp_out", "ln_f stage", "lm_head linear", "launches"};
  return slot >= 0 && slot < kDecodeTimelineSlots ? names[slot] : "?";
}

bool decode_step_eligible(DType act, int hidden_size, int heads, int inner) {
  if (act != DType::F32 && act != DType::F16 && act != DType::BF16) return false;
  if (heads <= 0 || hidden_size != heads * kHeadDim || hidden_size > kMaxHidden) return false;
  if (inner <= 0 || inner % 8 != 0 || inner > kMaxInner) return false;
  return cooperative_launch_supported();
}

void launch_decode_step(DType act, const DecodeStepArgs& args, cudaStream_t stream) {
  EAQ_DISPATCH_FLOAT(act, launch<T>(args, stream));
}

}  // namespace eaq::cuda
