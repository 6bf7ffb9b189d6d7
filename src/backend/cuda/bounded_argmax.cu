// Greedy decoding's LM head at batch 1 in two kernels that read the int8 copy of every row and
// the f16 (bf16) row only of the few candidates: the method and its bound are in
// src/backend/argmax_bounds.hpp. At GPT-2's shape the head is 77 MB of f16, a third of a decode
// step's bytes; the int8 copy is 39 MB. The reference is the full head (gemv.cu's LayerNorm row
// kernel) followed by argmax_rows; the tests check that both pick the same token.
//
// scores: gemv.cu's LayerNorm row kernel on int8 rows: each warp normalizes x in its registers
//   (block 0 stores it to ln_out), takes ||x||, quantizes x to int8 (quant_row.cuh) and takes
//   ||x - s_x q_x||, and for each of its rows writes upper_i = A_i + bound_i, A_i from an int8 x
//   int8 dot product (dp4a; EAQ_SCORES_INT8=0: int8 weights times f32 x, quantized_gemv.cu's
//   int8-wo arithmetic, whose per-value conversions cost ~2.9 us of the kernel's ~14 on an H200:
//   docs/results.md, the eighteenth session); the block's largest A_i - bound_i goes to
//   one atomicMax. After a feed-forward block that left its sum pending (mlp_pending.cu), x is
//   x + that sum (pending_residual.cuh).
// select: every warp compares 32 rows' upper ends at a time with that maximum and computes the
//   f16 logit of each row that reaches it exactly as gemv.cu's row kernel does (same pieces, same
//   order, same rounding; ln_out read with the first such row); the last block to arrive picks
//   the best of the blocks' bests, writes the token, zeroes the state for the next step and, in a
//   decode step, advances the step's counters (what the step's last kernel did before).
#include <cstdint>
#include <type_traits>

#include "backend/cuda/argmax_device.cuh"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/gemv_stage.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/pending_residual.cuh"
#include "backend/cuda/quant_row.cuh"
#include "backend/cuda/warp_layer_norm.cuh"
#include "backend/cuda/weight_load.cuh"
#include "core/error.hpp"

namespace eaq::cuda {
namespace {

constexpr int kVecs = 3;    // pieces of 8 values per lane: k <= 768
constexpr int kPerVec = 8;  // values per piece: 16 bytes of T, 8 bytes of int8
constexpr int kMaxSelectBlocks = 1024;

// Device state between the two kernels (and zeroed for the next launch by the last block).
struct State {
  unsigned lower_key;  // ordered_key of the largest lower end seen; 0: none yet
  unsigned all_rows;   // nonzero: the bounds cannot be trusted, every row is a candidate
  unsigned arrivals;   // select blocks done
  unsigned unused;
  float2 best[kMaxSelectBlocks];  // each select block's (value, index as bits)
};

// Floats as unsigned integers in the same order (for atomicMax); 0 is below every number.
__device__ __forceinline__ unsigned ordered_key(float f) {
  const unsigned b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float ordered_value(unsigned key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

// The largest finite T: a bound at or past it could hide a logit rounded to infinity.
template <class T>
__device__ __forceinline__ float max_finite() {
  if constexpr (std::is_same_v<T, __half>) {
    return 65504.0f;
  } else {
    return 3.38953139e38f;
  }
}

// Rows of int8 a warp holds in registers ahead of use: four (where the f16 head's kernel holds
// two), so that as many bytes are in flight as there.
constexpr int kScoresAhead = 4;

// kRotate: the loop over a warp's rows is unrolled kScoresAhead times, so row r's registers take
// the row kScoresAhead on as soon as r is used, and no registers move. The first form shifted
// wv[1..3] down after each row, and a move of a register that a load has yet to fill waits for
// that load: only about one row was in flight a warp, and the 39 MB streamed at ~2 TB/s against
// the f16 head's ~2.8 (kernel trace, docs/results.md). EAQ_SCORES_ROTATE=0 keeps the shifting
// form, to measure what this buys.
// kInt8Dot: x quantized, dp4a (see the top of the file). At most 128 registers: four blocks a
// multiprocessor, as many rows in flight as that allows.
// stage_x: the block reads x from L2 once (block_load_row), not every warp.
// shared_shuffles: with kRotate, the kScoresAhead rows' sums share their shuffles.
template <class T, bool kRotate, bool kInt8Dot>
__global__ void __launch_bounds__(kGemvThreads, 4)
    bounded_argmax_scores_kernel(BoundedArgmaxArgs a, bool stage_x, bool shared_shuffles) {
  static_assert(kRotate || !kInt8Dot, "the int8 x int8 form has the rotating loop only");
  constexpr int kAhead = kScoresAhead;
  const int lane = threadIdx.x % 32;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kGemvWarps;
  std::int64_t feature = static_cast<std::int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  const int vectors = static_cast<int>(a.k / kPerVec);
  // A row's int8 pieces, and its (scale, radius) and quant_norm in the lane that finishes it
  // (lane 0, or with shared shuffles the first of slot r's lanes), load together ahead of use.
  const auto load_row = [&](std::int64_t f, uint2(&w)[kVecs], float2& sr, float& qn, int slot) {
    const auto* w_row = reinterpret_cast<const uint2*>(a.q + f * a.k);
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (lane + 32 * u < vectors) w[u] = load_weight(w_row + lane + 32 * u);
    }
    if (lane == (kRotate && shared_shuffles ? slot * (32 / kAhead) : 0)) {
      sr = a.scale_radius[f];
      if constexpr (kInt8Dot) qn = a.quant_norm[f];
    }
  };
  uint2 wv[kAhead][kVecs];
  float2 sr[kAhead] = {};
  float qn[kAhead] = {};
#pragma unroll
  for (int r = 0; r < kAhead; ++r) {
    if (feature + r * stride < a.n) load_row(feature + r * stride, wv[r], sr[r], qn[r], r);
  }
  float gv[kVecs][kPerVec], bv[kVecs][kPerVec];
  load_layer_norm_params<kVecs, kPerVec>(a.ln_gamma, a.ln_beta, vectors, gv, bv);
  // The int8 rows are constant: they load while the last kernel ends.
  wait_then_allow_dependents(a.early_dependents);

  float xv[kVecs][kPerVec];
  if (a.pending != nullptr) {
    warp_load_row_pending<T>(a.x, a.pending, vectors, xv);
  } else if (stage_x) {
    __shared__ uint4 x_stage[kVecs * 32];
    block_load_row<T>(a.x, vectors, x_stage, xv);
  } else {
    warp_load_row<T>(a.x, nullptr, vectors, xv);
  }
  warp_layer_norm_row<T>(xv, gv, bv, vectors, a.k, a.ln_eps, a.ln_out);
  float squares = 0.0f;
#pragma unroll
  for (int u = 0; u < kVecs; ++u) {
    if (lane + 32 * u >= vectors) break;
#pragma unroll
    for (int e = 0; e < kPerVec; ++e) squares += xv[u][e] * xv[u][e];
  }
  const float norm = sqrtf(warp_sum(squares)) * (1.0f + 1e-4f);
  bool all_rows = !(norm <= 3.0e38f);  // NaN or infinity in x
  float lower_max = -INFINITY;
  // kInt8Dot: x as int8 (scale x_scale), and ||x - x_scale q_x|| widened for its f32 rounding
  // (argmax_bounds.hpp); the f32 form's pass takes x as it is.
  int xq[kVecs][2] = {};
  float x_scale = 1.0f, x_residual = 0.0f;
  if constexpr (kInt8Dot) {
    x_scale = warp_quantize_row<WeightKind::Int8, kVecs>(xv, xq, vectors, 0.0f, 0.0f);
    float residual_squares = 0.0f;
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (lane + 32 * u >= vectors) break;
#pragma unroll
      for (int e = 0; e < kPerVec; ++e) {
        const int q = static_cast<signed char>((xq[u][e / 4] >> (8 * (e % 4))) & 0xFF);
        const float d = xv[u][e] - x_scale * static_cast<float>(q);
        residual_squares = fmaf(d, d, residual_squares);
      }
    }
    x_residual = sqrtf(warp_sum(residual_squares)) * (1.0f + 1e-4f) + 3e-7f * norm;
  }
  // The pass's arithmetic: quant_row.cuh's int8 (x quantized) or int8-wo (x in f32).
  constexpr WeightKind kPass = kInt8Dot ? WeightKind::Int8 : WeightKind::Int8WeightOnly;
  using Acc = QuantAcc<kPass>;
  const auto dot = [&](const uint2(&w)[kVecs]) {
    Acc acc = 0;
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (lane + 32 * u >= vectors) break;
      dot_piece<kPass>(acc, w[u], xv[u], xq[u]);
    }
    return acc;
  };
  // Row f's upper end from its dot product, and this lane's largest lower end so far.
  const auto finish_total = [&](std::int64_t f, float total, float2 row_sr, float row_qn) {
    // kInt8Dot: |total| <= k 127^2 < 2^24, exact as f32.
    const float approx = kInt8Dot ? total * row_sr.x * x_scale : total * row_sr.x;
    const float bound = kInt8Dot ? fmaf(row_qn, x_residual, fmaf(norm, row_sr.y, a.slack))
                                 : fmaf(norm, row_sr.y, a.slack);
    // Room for the f32 rounding of approx +- bound and of their comparison.
    const float margin = bound + (fabsf(approx) + bound) * 2.5e-7f;
    const float upper = approx + margin;
    a.upper[f] = upper;
    all_rows = all_rows || !(upper < max_finite<T>());  // also NaN
    lower_max = fmaxf(lower_max, approx - margin);
  };
  // One row's sum over the warp; lane 0 finishes it.
  const auto finish = [&](std::int64_t f, Acc acc, float2 row_sr, float row_qn) {
    const float total = warp_dot_total<kPass>(acc);
    if (lane == 0) finish_total(f, total, row_sr, row_qn);
  };
  if (kRotate && shared_shuffles) {
    // The kAhead rows' sums share their shuffles (warp_sum_many; the same totals): lane
    // (32 / kAhead) r ends with row r's, holds its scale and radius, and finishes it.
    for (; feature < a.n; feature += kAhead * stride) {
      Acc acc[kAhead];
      float2 row_sr[kAhead];
      float row_qn[kAhead];
#pragma unroll
      for (int r = 0; r < kAhead; ++r) {
        const std::int64_t f = feature + r * stride;
        acc[r] = f < a.n ? dot(wv[r]) : Acc(0);
        row_sr[r] = sr[r];
        row_qn[r] = qn[r];
        const std::int64_t later = f + kAhead * stride;
        if (later < a.n) load_row(later, wv[r], sr[r], qn[r], r);  // before the sums: in flight
      }
      const Acc total = warp_sum_many<kAhead>(acc);
      const int r = warp_sum_many_index<kAhead>(lane);
      const std::int64_t f = feature + r * stride;
      if (lane % (32 / kAhead) == 0 && f < a.n) {
        float2 mine_sr = row_sr[0];
        float mine_qn = row_qn[0];
#pragma unroll
        for (int q = 1; q < kAhead; ++q) {
          if (q == r) {
            mine_sr = row_sr[q];
            mine_qn = row_qn[q];
          }
        }
        finish_total(f, static_cast<float>(total), mine_sr, mine_qn);
      }
    }
  } else if constexpr (kRotate) {
    for (; feature < a.n; feature += kAhead * stride) {
#pragma unroll
      for (int r = 0; r < kAhead; ++r) {
        const std::int64_t f = feature + r * stride;
        if (f >= a.n) break;
        const Acc acc = dot(wv[r]);
        const float2 row_sr = sr[r];
        const float row_qn = qn[r];
        const std::int64_t later = f + kAhead * stride;
        if (later < a.n)
          load_row(later, wv[r], sr[r], qn[r], r);  // before the reduction: in flight
        finish(f, acc, row_sr, row_qn);
      }
    }
  } else {
    for (; feature < a.n; feature += stride) {
      const Acc acc = dot(wv[0]);
      const float2 row_sr = sr[0];
#pragma unroll
      for (int r = 0; r + 1 < kAhead; ++r) {
#pragma unroll
        for (int u = 0; u < kVecs; ++u) wv[r][u] = wv[r + 1][u];
        sr[r] = sr[r + 1];
      }
      const std::int64_t later = feature + kAhead * stride;
      if (later < a.n) load_row(later, wv[kAhead - 1], sr[kAhead - 1], qn[kAhead - 1], 0);
      finish(feature, acc, row_sr, 0.0f);
    }
  }
  // The warp's largest lower end and its flag (lanes other than 0 finished rows above).
  lower_max = warp_max(lower_max);
  all_rows = __any_sync(0xffffffffu, all_rows);
  // One atomic per block: the block's largest lower end.
  __shared__ float block_lower[kGemvWarps];
  __shared__ int block_all;
  if (threadIdx.x == 0) block_all = 0;
  __syncthreads();
  if (lane == 0) {
    block_lower[threadIdx.x / 32] = lower_max;
    if (all_rows) block_all = 1;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = block_lower[0];
    for (int w = 1; w < kGemvWarps; ++w) m = fmaxf(m, block_lower[w]);
    auto* state = static_cast<State*>(a.state);
    if (block_all) atomicOr(&state->all_rows, 1u);
    if (m > -INFINITY) atomicMax(&state->lower_key, ordered_key(m));
  }
}

// lazy_x: a warp reads x (ln_out) only once it has a candidate, together with that row (most
// warps have none: ~2.4 MB of L2 reads a GPT-2 step saved); EAQ_SELECT_LAZY_X=0 reads it first.
// acq_rel_arrival: a block counts its arrival with a release-acquire atomic instead of a fence and
// a relaxed one (EAQ_SELECT_ACQ_REL=0).
template <class T>
__global__ void __launch_bounds__(kGemvThreads)
    bounded_argmax_select_kernel(BoundedArgmaxArgs a, bool lazy_x, bool acq_rel_arrival) {
  __shared__ bool last;
  auto* state = static_cast<State*>(a.state);
  const int lane = threadIdx.x % 32;
  const int vectors = static_cast<int>(a.k / kPerVec);
  // ln_out, upper and the state come from the scores kernel.
  wait_then_allow_dependents(a.early_dependents);

  float xv[kVecs][kPerVec];
  bool have_x = !lazy_x;
  if (have_x) warp_load_row<T>(a.ln_out, nullptr, vectors, xv);
  const unsigned key = __ldcg(&state->lower_key);
  const bool all_rows = key == 0 || __ldcg(&state->all_rows) != 0;
  const float threshold = all_rows ? -INFINITY : ordered_value(key);

  float value = -INFINITY;
  int index = static_cast<int>(a.n);  // loses every comparison until a real row is seen
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kGemvWarps;
  const std::int64_t warp = static_cast<std::int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  for (std::int64_t base = warp * 32; base < a.n; base += warps * 32) {
    const std::int64_t i = base + lane;
    const bool candidate = i < a.n && (all_rows || !(__ldcg(a.upper + i) < threshold));
    for (unsigned mask = __ballot_sync(0xffffffffu, candidate); mask != 0; mask &= mask - 1) {
      const std::int64_t row = base + __ffs(static_cast<int>(mask)) - 1;
      // The logit as gemv.cu's LayerNorm row kernel computes it.
      const auto* w_row = reinterpret_cast<const uint4*>(static_cast<const T*>(a.w) + row * a.k);
      uint4 wv[kVecs];
#pragma unroll
      for (int u = 0; u < kVecs; ++u) {
        if (lane + 32 * u < vectors) wv[u] = load_weight(w_row + lane + 32 * u);
      }
      if (!have_x) {  // the same in every lane (mask is)
        warp_load_row<T>(a.ln_out, nullptr, vectors, xv);
        have_x = true;
      }
      float acc = 0.0f;
#pragma unroll
      for (int u = 0; u < kVecs; ++u) {
        if (lane + 32 * u >= vectors) break;
        const T* wt = reinterpret_cast<const T*>(&wv[u]);
#pragma unroll
        for (int e = 0; e < kPerVec; ++e) acc += xv[u][e] * to_f32(wt[e]);
      }
      const float logit = to_f32(from_f32<T>(warp_sum(acc) + 0.0f));  // same bits in every lane
      keep_better(value, index, logit, static_cast<int>(row));
    }
  }
  block_keep_best(value, index);
  if (threadIdx.x == 0) {
    state->best[blockIdx.x] = make_float2(value, __int_as_float(index));
    if (acq_rel_arrival) {
      // The arrival releases the block's best and acquires those of the blocks before it (the
      // other threads read them after the barrier below): no fence, which waits for every write
      // of the thread to be acknowledged, on the path of the last block.
      last = arrive_acq_rel(&state->arrivals) == gridDim.x - 1;
    } else {
      __threadfence();  // the block's best is visible before its arrival is counted
      last = atomicAdd(&state->arrivals, 1u) == gridDim.x - 1;
    }
  }
  __syncthreads();
  if (!last) return;
  if (!acq_rel_arrival) __threadfence();
  value = -INFINITY;
  index = static_cast<int>(a.n);
  for (unsigned b = threadIdx.x; b < gridDim.x; b += blockDim.x) {
    const float2 best = __ldcg(&state->best[b]);
    keep_better(value, index, best.x, __float_as_int(best.y));
  }
  block_keep_best(value, index);
  if (threadIdx.x == 0) {
    *a.out = index < a.n ? index : 0;  // no number at all: row 0, as argmax_rows
    state->lower_key = 0;
    state->all_rows = 0;
    state->arrivals = 0;
    // Every kernel before this one has ended (the wait above), and this block is the kernel's
    // last: nothing of the step reads the counters any more.
    for (std::int64_t i = 0; i < a.increment_count; ++i) a.increment[i] += 1;
  }
}

template <class T>
void launch_typed(const BoundedArgmaxArgs& a, cudaStream_t stream) {
  // Read at every launch (tests flip them).
  const bool rotate = !env_is("EAQ_SCORES_ROTATE", "0");
  const bool int8_dot = rotate && !env_is("EAQ_SCORES_INT8", "0") && a.quant_norm != nullptr;
  const auto scores = int8_dot ? bounded_argmax_scores_kernel<T, true, true>
                      : rotate ? bounded_argmax_scores_kernel<T, true, false>
                               : bounded_argmax_scores_kernel<T, false, false>;
  launch_dependent(
      scores,
      dim3(gemv_grid(reinterpret_cast<const void*>(scores), 0, a.n, row_features_per_warp(a.n))),
      dim3(kGemvThreads), 0, stream, a, !env_is("EAQ_STAGE_X", "0"), shared_shuffles_enabled());
  const auto select = bounded_argmax_select_kernel<T>;
  const std::int64_t warps_needed = (a.n + 31) / 32;
  const std::int64_t fit = gemv_grid(reinterpret_cast<const void*>(select), 0, warps_needed);
  const std::int64_t blocks = fit < kMaxSelectBlocks ? fit : kMaxSelectBlocks;
  launch_dependent(select, dim3(static_cast<unsigned>(blocks)), dim3(kGemvThreads), 0, stream, a,
                   !env_is("EAQ_SELECT_LAZY_X", "0"), !env_is("EAQ_SELECT_ACQ_REL", "0"));
}

}  // namespace

std::size_t bounded_argmax_state_bytes() {
  return sizeof(State);
}

bool bounded_argmax_eligible(DType act, const BoundedArgmaxArgs& a) {
  return (act == DType::F16 || act == DType::BF16) && a.k > 0 && a.k % kPerVec == 0 &&
         a.k / kPerVec <= 32 * kVecs && a.n > 0 && a.n < (std::int64_t{1} << 31) &&
         aligned16(a.x) && aligned16(a.w) && aligned16(a.ln_out) && aligned16(a.ln_gamma) &&
         aligned16(a.ln_beta) && aligned16(a.pending);
}

void launch_bounded_argmax(DType act, const BoundedArgmaxArgs& args, cudaStream_t stream) {
  EAQ_CHECK(bounded_argmax_eligible(act, args) && args.q != nullptr &&
                args.scale_radius != nullptr && args.upper != nullptr && args.state != nullptr &&
                args.out != nullptr,
            "bounded argmax: a head of {} x {} in {} that the kernels do not take", args.n, args.k,
            dtype_name(act));
  if (act == DType::F16) {
    launch_typed<__half>(args, stream);
  } else {
    launch_typed<__nv_bfloat16>(args, stream);
  }
}

}  // namespace eaq::cuda
