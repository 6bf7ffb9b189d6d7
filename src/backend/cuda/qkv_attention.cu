// A batch-1 decode step's LayerNorm, QKV projection and attention over the KV cache in one
// kernel, one thread-block cluster per head (Hopper). References: the ops it replaces, gemv.cu's
// row kernel (LayerNorm + GEMV) and attention.cu's decode kernel, whose arithmetic it repeats
// (the projection sums in the same order, so q, k and v are the same bits), and through them the
// CPU backend.
//
// Why: op by op, the first half of a layer is two kernels, and the attention kernel splits the
// cache over blocks that meet again through global memory (a fence, an arrival count, a second
// read of the partials). Here the 8 blocks of a head's cluster share q, k and v and their partial
// softmax results through distributed shared memory, with cluster barriers between the phases.
//
// Block r of head h's cluster computes rows [24 r, 24 r + 24) of the head's 192 projection rows
// (q, k and v, 64 each; six per warp, every lane holding three 16-byte pieces of each row, loaded
// before the kernel waits for the previous one), sends them to every block of the cluster, then
// attends over cache rows [r chunk, (r + 1) chunk) and sends block 0 its softmax partial, which
// block 0 merges into the head's output.
//
// The quantized precisions' 8-bit weights (int8, fp8, int8-wo) run here too: each warp quantizes
// its normalized x itself and computes its rows as quantized_gemv.cu's row kernel does.
//
// After a feed-forward block that left its sum pending (mlp_pending.cu, opt-in), x is x + that
// sum: block g of the grid stores piece g of the finished row for the attention projection and
// zeroes its piece of the other sum (pending_residual.cuh).
//
// With the attention projection folded in (kFold, float weights), every block of the cluster, not
// block 0 alone, merges the head's softmax partials; block r then multiplies the head's output by
// rows [r E/8, (r + 1) E/8) of W_p restricted to the head's 64 columns (loaded before the wait)
// and adds each share into a pending sum that the next kernel (c_fc's LayerNorm) finishes. That
// saves the projection's kernel, ~2.4 us of a ~14 us layer on an H200 (kernel trace,
// docs/results.md). Opt-in (EAQ_ATTENTION_PENDING=1, cuda_backend.cpp): measured slower on H200s
// (the eighteenth session). This kernel then costs ~8.6 us instead of ~6.4 (the merge in every
// block ~0.9 us, the projection and its atomics ~1.3 us, with W_p in registers or in shared
// memory alike) and c_fc's ~3.7 instead of ~2.9 (it reads the 6 KB sum, and it now waits for the
// long kernel, not for the short projection, so its weights have less time to load).
//
// Where its time goes (EAQ_QKV_TIMELINE=1; H200, fp16, GPT-2 124M, cache 384; docs/results.md, the
// nineteenth session): ~6 us after the wait: x from L2 and its LayerNorm 1.4 (read once a block
// or by every warp alike), the QKV rows and their sends 1.7, the first cluster barrier 0.7, the
// attention 1.3 (1.4 with the block's reductions), the second barrier 0.4, block 0's merge 0.35.
#include <cooperative_groups.h>

#include <cstdint>
#include <type_traits>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/device_query.hpp"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/mma_copy.cuh"
#include "backend/cuda/pending_residual.cuh"
#include "backend/cuda/quant_row.cuh"
#include "backend/cuda/warp_layer_norm.cuh"
#include "backend/cuda/weight_load.cuh"

namespace eaq::cuda {
namespace {

constexpr int kClusterBlocks = 8;  // the portable cluster size
constexpr int kHeadDim = 64;
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kHeadRows = 3 * kHeadDim;                    // a head's q, k and v rows
constexpr int kRowsPerBlock = kHeadRows / kClusterBlocks;  // 24
constexpr int kRowsPerWarp = kRowsPerBlock / kWarps;       // 6
constexpr int kSumRows = 8;  // a warp's rows padded to a power of two for warp_sum_many
constexpr int kPerVec = 8;   // halves in 16 bytes
constexpr int kXVecs = 3;    // 16-byte pieces of x per lane
constexpr int kTeam = kHeadDim / kPerVec;       // threads per cache row: 8
constexpr int kKeysPerPass = kThreads / kTeam;  // 16
constexpr int kPreloadPasses = 3;               // cache rows a block loads before the wait: 48 keys
// The folded projection: a team of kTeam threads per row of W_p, 16 rows a pass, E/8 <= 96 rows a
// block.
constexpr int kProjRowsPerPass = kThreads / kTeam;
constexpr int kMaxProjRows = kXVecs * 32 * kPerVec / kClusterBlocks;
constexpr int kProjPasses = kMaxProjRows / kProjRowsPerPass;

template <class T>
__device__ __forceinline__ void unpack(const uint4& raw, float (&out)[kPerVec]) {
  const T* t = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int e = 0; e < kPerVec; ++e) out[e] = to_f32(t[e]);
}

// kW: the weights' kind. Float: T; the 8-bit kinds: one byte a weight, 8 weights a piece, and
// the projection of quantized_gemv.cu's row kernel (quant_row.cuh).
// kFold: the attention projection folded in (see above).
// stage_x: the block reads x from L2 once (block_load_row), not every warp.
// warp_softmax: each warp keeps a running softmax of its keys (see the attention below).
// shared_shuffles: the rows' sums share their shuffles (warp_sum_many; the same bits).
template <class T, WeightKind kW, bool kFold>
__global__ void __launch_bounds__(kThreads)
    qkv_attention_kernel(QkvAttentionArgs a, int chunk, bool stage_x, bool warp_softmax,
                         bool shared_shuffles) {
  static_assert(!kFold || kW == WeightKind::Float, "the folded projection reads float weights");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  extern __shared__ float scores[];                      // [chunk]
  __shared__ float head[kHeadRows];                      // q, k, v of this head (T-rounded)
  __shared__ float partial[kKeysPerPass][kHeadDim];      // P V of each key group
  __shared__ float chunk_out[kClusterBlocks][kHeadDim];  // block 0 (kFold: all): every P V
  __shared__ float chunk_max[kClusterBlocks], chunk_sum[kClusterBlocks];
  __shared__ float reduce[kWarps];
  __shared__ float head_out[kHeadDim];  // kFold: the head's output, rounded to T
  // kFold: the block's rows of W_p restricted to the head's columns, copied in before the wait
  // (not in registers: the kernel holds ~235 without them; both forms measured the same).
  __shared__ alignas(16) T proj_stage[kFold ? kMaxProjRows * kHeadDim : 8];

  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const std::int64_t h = blockIdx.y, hidden = a.hidden;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int vectors = static_cast<int>(hidden / kPerVec);
  // EAQ_QKV_TIMELINE: the cycles since the previous mark into slot `slot` (head 0's block 0,
  // thread 0: what it waited for at a block barrier counts in its phase).
  const bool timed = a.timeline != nullptr && h == 0 && rank == 0 && threadIdx.x == 0;
  long long last_mark = timed ? clock64() : 0;
  const auto mark = [&](int slot) {
    if (!timed) return;
    const long long now = clock64();
    atomicAdd(a.timeline + slot, static_cast<unsigned long long>(now - last_mark));
    last_mark = now;
  };
  // Every block must have started before any writes into its shared memory: arrive now, wait
  // just before the first remote write.
  cluster.barrier_arrive();

  // Weights, LayerNorm parameters, older cache rows, the key mask and the slot do not come from
  // the previous kernel (the slot and mask from the step's first kernels): they load while it
  // finishes.
  static_assert(kPerVec == kQuantRowPerVec, "a piece of x meets one piece of any weight kind");
  using Piece = std::conditional_t<kW == WeightKind::Float, uint4, uint2>;
  constexpr std::int64_t kWeightBytes = kW == WeightKind::Float ? sizeof(T) : 1;
  Piece wv[kRowsPerWarp][kXVecs];
  float w_scale[kRowsPerWarp];
  std::int64_t feature[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = rank * kRowsPerBlock + warp * kRowsPerWarp + r;  // row of the head's 192
    feature[r] = (t / kHeadDim) * hidden + h * kHeadDim + t % kHeadDim;
    if constexpr (kW != WeightKind::Float) w_scale[r] = a.w_scales[feature[r]];
    const auto* row = reinterpret_cast<const Piece*>(static_cast<const unsigned char*>(a.w) +
                                                     feature[r] * hidden * kWeightBytes);
#pragma unroll
    for (int u = 0; u < kXVecs; ++u) {
      if (lane + 32 * u < vectors) wv[r][u] = load_weight(row + lane + 32 * u);
    }
  }
  // The row whose sum this lane ends with under shared shuffles, and its bias and weight scale
  // (constant: loaded now).
  const int my_row = warp_sum_many_index<kSumRows>(lane);
  float my_bias = 0.0f, my_w_scale = 0.0f;
  if (my_row < kRowsPerWarp) {
    const int t = rank * kRowsPerBlock + warp * kRowsPerWarp + my_row;
    const std::int64_t f = (t / kHeadDim) * hidden + h * kHeadDim + t % kHeadDim;
    if constexpr (kW == WeightKind::Float) {
      if (a.bias != nullptr) my_bias = to_f32(static_cast<const T*>(a.bias)[f]);
    } else {
      my_bias = quantized_bias<T>(a.bias, a.bias_act, f);
      my_w_scale = a.w_scales[f];
    }
  }
  float gv[kXVecs][kPerVec], bv[kXVecs][kPerVec];
  load_layer_norm_params<kXVecs, kPerVec>(a.ln_gamma, a.ln_beta, vectors, gv, bv);
  const std::int64_t slot = *a.slot;
  const std::int64_t row_stride = 2 * hidden;
  const std::int64_t j0 = static_cast<std::int64_t>(rank) * chunk;
  const std::int64_t j1 = j0 + chunk < a.capacity ? j0 + chunk : a.capacity;
  const int piece = threadIdx.x % kTeam, key_group = threadIdx.x / kTeam;
  T* cache = static_cast<T*>(a.cache);
  const T* k_base = cache + h * kHeadDim + piece * kPerVec;
  const T* v_base = k_base + hidden;
  // kFold: this thread copies its piece of each of its rows of W_p (row p 16 + key_group of the
  // block's) into proj_stage.
  const int proj_rows = static_cast<int>(hidden / kClusterBlocks);
  if constexpr (kFold) {
    const T* w_p = static_cast<const T*>(a.proj_w) + h * kHeadDim + piece * kPerVec;
    const unsigned long long policy = evict_first_policy();
#pragma unroll
    for (int p = 0; p < kProjPasses; ++p) {
      const int row = p * kProjRowsPerPass + key_group;
      if (row < proj_rows) {
        copy16_evict_first(shared_address(&proj_stage[row * kHeadDim + piece * kPerVec]),
                           w_p + (static_cast<std::int64_t>(rank) * proj_rows + row) * hidden,
                           policy);
      }
    }
    commit();
  }
  // The first kPreloadPasses passes' key and value rows (a cache of up to 384 rows whole).
  uint4 k_pre[kPreloadPasses], v_pre[kPreloadPasses];
  bool visible_pre[kPreloadPasses];
#pragma unroll
  for (int p = 0; p < kPreloadPasses; ++p) {
    const std::int64_t j = j0 + p * kKeysPerPass + key_group;
    k_pre[p] = v_pre[p] = make_uint4(0, 0, 0, 0);
    visible_pre[p] = false;
    if (j < j1 && j != slot) {
      k_pre[p] = *reinterpret_cast<const uint4*>(k_base + j * row_stride);
      v_pre[p] = *reinterpret_cast<const uint4*>(v_base + j * row_stride);
      visible_pre[p] = a.key_mask[j] != 0;
    }
  }
  mark(0);
  wait_then_allow_dependents(a.early_dependents);  // x comes from the kernel before
  mark(1);

  // LayerNorm of x in every warp, as the GEMV row kernel does it (two passes, shuffles only).
  float xv[kXVecs][kPerVec];
  if (a.pending != nullptr) {
    warp_load_row_pending<T>(a.x, a.pending, vectors, xv);
  } else if (stage_x) {
    __shared__ uint4 x_stage[kXVecs * 32];
    block_load_row<T>(a.x, vectors, x_stage, xv);
  } else {
    warp_load_row<T>(a.x, nullptr, vectors, xv);
  }
  // The grid has one block per 16-byte piece of x (heads x 8 blocks, 8 values a piece): block g
  // stores piece g of the finished x, and zeroes its 8 sums of the MLP's pending residual.
  const int g = static_cast<int>(h) * kClusterBlocks + rank;
  if (warp == 0 && lane == g % 32 && g < vectors) {
#pragma unroll
    for (int u = 0; u < kXVecs; ++u) {
      if (u != g / 32 || a.x_out == nullptr) continue;
      alignas(16) T finished[kPerVec];
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) finished[e] = from_f32<T>(xv[u][e]);
      static_cast<uint4*>(a.x_out)[g] = *reinterpret_cast<const uint4*>(finished);
    }
    if (a.pending_zero != nullptr) {
      auto* zero = reinterpret_cast<longlong2*>(a.pending_zero + std::int64_t{g} * kPerVec);
#pragma unroll
      for (int q = 0; q < kPerVec / 2; ++q) zero[q] = make_longlong2(0, 0);
      if (g == 0) a.pending_zero[hidden] = 0;
    }
  }
  warp_layer_norm_row<T>(xv, gv, bv, vectors, hidden, a.ln_eps, nullptr);
  int xq[kXVecs][2];  // int8: the quantized row
  const float x_scale =
      warp_quantize_row<kW, kXVecs>(xv, xq, vectors, a.static_inverse, a.static_scale);
  mark(2);

  // This warp's six rows. The block that computes a row of k or v also stores it in the cache at
  // the slot.
  cluster.barrier_wait();
  const bool slot_in_cache = slot >= 0 && slot < a.capacity;
  const auto store_cache = [&](int t, T rounded) {
    const int part = t / kHeadDim;  // 1: k, 2: v
    cache[slot * row_stride + (part - 1) * hidden + h * kHeadDim + t % kHeadDim] = rounded;
  };
  // This lane's share of row r's dot product (QuantAcc: int for int8, else float).
  using Acc = QuantAcc<kW>;
  const auto row_share = [&](int r) {
    Acc acc = 0;
#pragma unroll
    for (int u = 0; u < kXVecs; ++u) {
      if (lane + 32 * u >= vectors) break;
      if constexpr (kW == WeightKind::Float) {
        const T* wt = reinterpret_cast<const T*>(&wv[r][u]);
#pragma unroll
        for (int e = 0; e < kPerVec; ++e) acc += xv[u][e] * to_f32(wt[e]);
      } else {
        dot_piece<kW>(acc, wv[r][u], xv[u], xq[u]);
      }
    }
    return acc;
  };
  if (shared_shuffles) {
    // The six sums share their shuffles (warp_sum_many, two rows of zeros): lane l ends with
    // row my_row's total, and each of the row's four lanes sends it to two blocks.
    Acc acc[kSumRows] = {};
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = row_share(r);
    const Acc total = warp_sum_many<kSumRows>(acc);
    if (my_row < kRowsPerWarp) {
      float value;
      if constexpr (kW == WeightKind::Float) {
        value = total + my_bias;
      } else {
        value = dequantize_dot_plus(static_cast<float>(total), x_scale, my_w_scale, my_bias);
      }
      const T rounded = from_f32<T>(value);
      const int t = rank * kRowsPerBlock + warp * kRowsPerWarp + my_row;
      const int quarter = lane % (32 / kSumRows);
      static_assert(kClusterBlocks == 2 * (32 / kSumRows), "two blocks a lane");
      *cluster.map_shared_rank(&head[t], 2 * quarter) = to_f32(rounded);
      *cluster.map_shared_rank(&head[t], 2 * quarter + 1) = to_f32(rounded);
      if (quarter == 0 && t >= kHeadDim && slot_in_cache) store_cache(t, rounded);
    }
  } else {
    // One row at a time (EAQ_SHARED_SHUFFLES=0): lane c < 8 sends each value to block c.
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const Acc acc = row_share(r);
      float value;
      if constexpr (kW == WeightKind::Float) {
        const T* bias = static_cast<const T*>(a.bias);
        value = warp_sum(acc) + (bias ? to_f32(bias[feature[r]]) : 0.0f);
      } else {
        value = dequantize_dot<T>(warp_dot_total<kW>(acc), x_scale, w_scale[r], a.bias, a.bias_act,
                                  feature[r]);
      }
      const T rounded = from_f32<T>(value);
      const int t = rank * kRowsPerBlock + warp * kRowsPerWarp + r;
      if (lane < kClusterBlocks) *cluster.map_shared_rank(&head[t], lane) = to_f32(rounded);
      if (lane == kClusterBlocks && t >= kHeadDim && slot_in_cache) store_cache(t, rounded);
    }
  }
  mark(3);
  cluster.sync();  // head[] is complete in every block
  mark(4);

  // Attention over this block's cache rows: a team of 8 threads per key row, 16 rows per pass; the
  // slot's key and value come from head[]. With warp_softmax (the default; EAQ_WARP_SOFTMAX=0:
  // the block form, attention.cu's decode kernel's order of sums), each team keeps a running
  // softmax and the block meets once; the outputs agree to the rounding of the sums' order.
  float q_piece[kPerVec];
#pragma unroll
  for (int e = 0; e < kPerVec; ++e) q_piece[e] = head[piece * kPerVec + e] * a.scale;
  const std::int64_t passes = j1 > j0 ? (j1 - j0 + kKeysPerPass - 1) / kKeysPerPass : 0;
  // The key (part 1) or value (part 2) piece of cache row j < j1: the slot's from head[], else
  // `preloaded` when the row was loaded before the wait, else a load now.
  const auto row_piece = [&](std::int64_t j, int part, bool has_preloaded, const uint4& preloaded,
                             float(&out)[kPerVec]) {
    if (j == slot) {
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) out[e] = head[part * kHeadDim + piece * kPerVec + e];
    } else {
      const T* base = part == 1 ? k_base : v_base;
      unpack<T>(has_preloaded ? preloaded : *reinterpret_cast<const uint4*>(base + j * row_stride),
                out);
    }
  };
  const uint4 none = make_uint4(0, 0, 0, 0);
  // The scaled score of this team's key in pass `pass` (every thread of a team runs the same
  // passes, so the shuffles are uniform); `visible`: the key is in the chunk and not masked.
  const auto key_score = [&](std::int64_t pass, bool has_preloaded, const uint4& preloaded,
                             bool preloaded_visible, bool& visible) {
    const std::int64_t j = j0 + pass * kKeysPerPass + key_group;
    float k_piece[kPerVec] = {};
    visible = false;
    if (j < j1) {
      row_piece(j, 1, has_preloaded, preloaded, k_piece);
      visible = has_preloaded && j != slot ? preloaded_visible : a.key_mask[j] != 0;
    }
    float dot = 0.0f;
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) dot += q_piece[e] * k_piece[e];
    for (int offset = kTeam / 2; offset > 0; offset /= 2) {
      dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    }
    return dot;
  };
  // This block's partial: the largest score, the sum of exp(score - it), and P V for dimension
  // threadIdx.x < 64.
  float block_max = -INFINITY, block_sum = 0.0f, pv = 0.0f;
  if (warp_softmax) {
    // Each team keeps a running softmax of its keys (max m, sum l, P V o of its lane's 8
    // dimensions); the warp's four teams merge theirs with shuffles, then the block's four warps
    // through shared memory: one block barrier, where the form below takes four.
    __shared__ float warp_o[kWarps][kHeadDim], warp_m[kWarps], warp_l[kWarps];
    float m = -INFINITY, l = 0.0f, o[kPerVec] = {};
    const auto attend_key = [&](std::int64_t pass, bool has_preloaded, const uint4& k_preloaded,
                                const uint4& v_preloaded, bool preloaded_visible) {
      bool visible;
      const float dot = key_score(pass, has_preloaded, k_preloaded, preloaded_visible, visible);
      if (!visible) return;
      const std::int64_t j = j0 + pass * kKeysPerPass + key_group;
      float v_piece[kPerVec];
      row_piece(j, 2, has_preloaded, v_preloaded, v_piece);
      const float m_new = fmaxf(m, dot);
      const float kept = __expf(m - m_new), p = __expf(dot - m_new);  // m = -inf: kept 0
      l = fmaf(l, kept, p);
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) o[e] = fmaf(o[e], kept, p * v_piece[e]);
      m = m_new;
    };
#pragma unroll
    for (int p = 0; p < kPreloadPasses; ++p) {
      if (p >= passes) break;
      attend_key(p, true, k_pre[p], v_pre[p], visible_pre[p]);
    }
#pragma unroll 2
    for (std::int64_t pass = kPreloadPasses; pass < passes; ++pass) {
      attend_key(pass, false, none, none, false);
    }
    // Lanes kTeam apart hold the same dimensions of other keys.
    for (int offset = kTeam; offset < 32; offset *= 2) {
      const float m_other = __shfl_xor_sync(0xffffffffu, m, offset);
      const float l_other = __shfl_xor_sync(0xffffffffu, l, offset);
      const float m_new = fmaxf(m, m_other);
      const float c = m == -INFINITY ? 0.0f : __expf(m - m_new);
      const float c_other = m_other == -INFINITY ? 0.0f : __expf(m_other - m_new);
      l = l * c + l_other * c_other;
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) {
        const float o_other = __shfl_xor_sync(0xffffffffu, o[e], offset);
        o[e] = o[e] * c + o_other * c_other;
      }
      m = m_new;
    }
    if (lane < kTeam) {
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) warp_o[warp][lane * kPerVec + e] = o[e];
    }
    if (lane == 0) {
      warp_m[warp] = m;
      warp_l[warp] = l;
    }
    __syncthreads();
    for (int w = 0; w < kWarps; ++w) block_max = fmaxf(block_max, warp_m[w]);
    for (int w = 0; w < kWarps; ++w) {
      const float c = warp_m[w] == -INFINITY ? 0.0f : __expf(warp_m[w] - block_max);
      block_sum += c * warp_l[w];
      if (threadIdx.x < kHeadDim) pv += c * warp_o[w][threadIdx.x];
    }
  } else {
    float local_max = -INFINITY;
    const auto score = [&](std::int64_t pass, bool has_preloaded, const uint4& preloaded,
                           bool preloaded_visible) {
      bool visible;
      const float dot = key_score(pass, has_preloaded, preloaded, preloaded_visible, visible);
      const std::int64_t j = j0 + pass * kKeysPerPass + key_group;
      if (j < j1 && piece == 0) scores[j - j0] = visible ? dot : -INFINITY;
      if (visible) local_max = fmaxf(local_max, dot);
    };
#pragma unroll
    for (int p = 0; p < kPreloadPasses; ++p) {
      if (p >= passes) break;
      score(p, true, k_pre[p], visible_pre[p]);
    }
#pragma unroll 4
    for (std::int64_t pass = kPreloadPasses; pass < passes; ++pass) score(pass, false, none, false);
    local_max = warp_max(local_max);
    if (lane == 0) reduce[warp] = local_max;
    __syncthreads();
    block_max = -INFINITY;
    for (int w = 0; w < kWarps; ++w) block_max = fmaxf(block_max, reduce[w]);
    __syncthreads();  // reduce[] is reused for the sums
    float local_sum = 0.0f;
    for (std::int64_t j = threadIdx.x; j < j1 - j0; j += kThreads) {
      const float p = scores[j] == -INFINITY ? 0.0f : __expf(scores[j] - block_max);
      scores[j] = p;
      local_sum += p;
    }
    local_sum = warp_sum(local_sum);
    if (lane == 0) reduce[warp] = local_sum;
    __syncthreads();
    block_sum = 0.0f;
    for (int w = 0; w < kWarps; ++w) block_sum += reduce[w];

    float acc[kPerVec] = {};
    const auto add_value = [&](std::int64_t j, bool has_preloaded, const uint4& preloaded) {
      if (j >= j1 || scores[j - j0] == 0.0f) return;
      float v_piece[kPerVec];
      row_piece(j, 2, has_preloaded, preloaded, v_piece);
      const float p = scores[j - j0];
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) acc[e] += p * v_piece[e];
    };
#pragma unroll
    for (int p = 0; p < kPreloadPasses; ++p)
      add_value(j0 + p * kKeysPerPass + key_group, true, v_pre[p]);
#pragma unroll 4
    for (std::int64_t j = j0 + kPreloadPasses * kKeysPerPass + key_group; j < j1;
         j += kKeysPerPass) {
      add_value(j, false, none);
    }
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) partial[key_group][piece * kPerVec + e] = acc[e];
    __syncthreads();
    if (threadIdx.x < kHeadDim) {
      for (int g = 0; g < kKeysPerPass; ++g) pv += partial[g][threadIdx.x];
    }
  }
  // This block's partial (max, sum, P V) into block 0 (kFold: into every block).
  constexpr int kReceivers = kFold ? kClusterBlocks : 1;
  if (threadIdx.x < kHeadDim) {
#pragma unroll
    for (int to = 0; to < kReceivers; ++to) {
      *cluster.map_shared_rank(&chunk_out[rank][threadIdx.x], to) = pv;
    }
  }
  if (threadIdx.x < kReceivers) {
    *cluster.map_shared_rank(&chunk_max[rank], threadIdx.x) = block_max;
    *cluster.map_shared_rank(&chunk_sum[rank], threadIdx.x) = block_sum;
  }
  mark(5);
  cluster.sync();  // block 0 (kFold: every block) has every partial; the others may leave
  mark(6);
  if (!kFold && rank != 0) return;
  if (threadIdx.x < kHeadDim) {
    float m = -INFINITY;
    for (int c = 0; c < kClusterBlocks; ++c) m = fmaxf(m, chunk_max[c]);
    float total = 0.0f, out = 0.0f;
    for (int c = 0; c < kClusterBlocks; ++c) {
      const float w = chunk_max[c] == -INFINITY ? 0.0f : __expf(chunk_max[c] - m);
      total += w * chunk_sum[c];
      out += w * chunk_out[c][threadIdx.x];
    }
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;  // every key hidden: zeros
    const T rounded = from_f32<T>(out * inv);
    if (rank == 0) static_cast<T*>(a.out)[h * kHeadDim + threadIdx.x] = rounded;
    head_out[threadIdx.x] = to_f32(rounded);
  }
  mark(7);
  if (timed) atomicAdd(a.timeline + kQkvTimelineSlots - 1, 1ull);
  if constexpr (kFold) {
    // The block's rows of W_p times the head's output, as the projection's GEMV would read the
    // output (rounded to T); each row's share (with the bias in head 0's) into the pending sum.
    wait_pending<0>();  // this thread's copies have landed; the barrier publishes everyone's
    __syncthreads();
    float o[kPerVec];
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) o[e] = head_out[piece * kPerVec + e];
    const T* proj_bias = static_cast<const T*>(a.proj_bias);
#pragma unroll
    for (int p = 0; p < kProjPasses; ++p) {
      const int row = p * kProjRowsPerPass + key_group;
      float dot = 0.0f;
      if (row < proj_rows) {
        const uint4 w =
            *reinterpret_cast<const uint4*>(&proj_stage[row * kHeadDim + piece * kPerVec]);
        const T* wt = reinterpret_cast<const T*>(&w);
#pragma unroll
        for (int e = 0; e < kPerVec; ++e) dot += o[e] * to_f32(wt[e]);
      }
      for (int offset = kTeam / 2; offset > 0; offset /= 2) {
        dot += __shfl_xor_sync(0xffffffffu, dot, offset);
      }
      if (row < proj_rows && piece == 0) {
        const std::int64_t feature = static_cast<std::int64_t>(rank) * proj_rows + row;
        if (h == 0 && proj_bias != nullptr) dot += to_f32(proj_bias[feature]);
        pending_add(a.proj_pending, feature, hidden, dot);
      }
    }
  }
#endif
}

template <class T, WeightKind kW, bool kFold>
void launch_typed(const QkvAttentionArgs& a, cudaStream_t stream) {
  const int chunk = static_cast<int>((a.capacity + kClusterBlocks - 1) / kClusterBlocks);
  launch_dependent_clusters(qkv_attention_kernel<T, kW, kFold>,
                            dim3(kClusterBlocks, static_cast<unsigned>(a.heads)), dim3(kThreads),
                            kClusterBlocks, static_cast<std::size_t>(chunk) * sizeof(float), stream,
                            a, chunk, !env_is("EAQ_STAGE_X", "0"),  // read at every launch
                            !env_is("EAQ_WARP_SOFTMAX", "0"), shared_shuffles_enabled());
}

template <class T>
void launch_kind(const QkvAttentionArgs& a, cudaStream_t stream) {
  switch (a.weights) {
    case WeightKind::Float:
      if (a.proj_pending != nullptr) {
        launch_typed<T, WeightKind::Float, true>(a, stream);
      } else {
        launch_typed<T, WeightKind::Float, false>(a, stream);
      }
      break;
    case WeightKind::Int8:
      launch_typed<T, WeightKind::Int8, false>(a, stream);
      break;
    case WeightKind::E4M3:
      launch_typed<T, WeightKind::E4M3, false>(a, stream);
      break;
    case WeightKind::Int8WeightOnly:
      launch_typed<T, WeightKind::Int8WeightOnly, false>(a, stream);
      break;
  }
}

}  // namespace

const char* qkv_timeline_phase_name(int slot) {
  static const char* const names[kQkvTimelineSlots - 1] = {
      "start -> wait (loads issued)",  "wait for the kernel before", "x + LayerNorm",
      "QKV rows, sent to the cluster", "cluster barrier: q, k, v",   "attention, partial sent",
      "cluster barrier: partials",     "merge + store (block 0)"};
  return slot >= 0 && slot < kQkvTimelineSlots - 1 ? names[slot] : "?";
}

bool qkv_attention_eligible(DType act, const QkvAttentionArgs& a) {
  // Scores of one block's rows live in shared memory next to ~9 KB of static arrays.
  constexpr std::int64_t kMaxCapacity = kClusterBlocks * 8 * 1024;
  return (act == DType::F16 || act == DType::BF16) && thread_block_clusters_supported() &&
         a.heads * kHeadDim == a.hidden && a.hidden / kPerVec <= 32 * kXVecs && a.capacity >= 1 &&
         a.capacity <= kMaxCapacity && a.ln_gamma != nullptr && a.ln_beta != nullptr &&
         a.key_mask != nullptr && a.slot != nullptr && aligned16(a.x) && aligned16(a.w) &&
         aligned16(a.cache) && aligned16(a.ln_gamma) && aligned16(a.ln_beta) &&
         aligned16(a.pending) && aligned16(a.x_out) && aligned16(a.pending_zero) &&
         (a.weights == WeightKind::Float || a.w_scales != nullptr) &&
         (a.proj_pending == nullptr ||
          (a.weights == WeightKind::Float && a.pending == nullptr && a.proj_w != nullptr &&
           aligned16(a.proj_w) && a.out != nullptr));
}

void launch_qkv_attention(DType act, const QkvAttentionArgs& a, cudaStream_t stream) {
  if (act == DType::F16)
    launch_kind<__half>(a, stream);
  else if (act == DType::BF16)
    launch_kind<__nv_bfloat16>(a, stream);
}

}  // namespace eaq::cuda
