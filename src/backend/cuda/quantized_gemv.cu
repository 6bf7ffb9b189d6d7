// Quantized Linear layers on a few rows (decode steps): int8, int8-static, fp8 and int8-wo
// weights read once, in one kernel per layer. On a decode step the GEMM path quantizes x in one
// kernel, runs a GEMM whose 128-row tiles hold one row, and (int8-wo) first writes the whole
// dequantized f16 weight: more bytes than the fp16 layer it is meant to beat. References:
// src/quant/activation_quant.cpp (x's quantization, bit for bit) and cpu_quantized_linear.cpp.
//
// The layout is gemv.cu's: one warp per output feature at a time, four warps per block, each lane
// loading its 16-byte pieces of the weight row before the kernel waits for the previous one. The
// block stages x in shared memory (after the LayerNorm, when asked), quantizes it there per token
// (or with the static scale), then each warp takes dot products of 16 weights per piece: dp4a on
// the int8 values, f32 products of the e4m3 values, or f32 products of x with the int8 values.
// One row of k <= 3072 (batch 1) runs a register variant, as gemv.cu's row kernel: without
// shared memory or block barriers for k <= 768, with x staged once per block for k 3072.
#include <cuda_fp8.h>

#include <cstdint>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/dependent_launch.cuh"
#include "backend/cuda/env_switch.hpp"
#include "backend/cuda/gemv_stage.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/quant_device.cuh"
#include "backend/cuda/quant_row.cuh"
#include "backend/cuda/warp_layer_norm.cuh"
#include "backend/cuda/weight_load.cuh"

namespace eaq::cuda {
namespace {

constexpr int kChunk = 8;  // 16-byte pieces of a weight row in flight per lane: 4 KiB a warp
constexpr int kMaxRowsPerLaunch = 4;
constexpr std::int64_t kSharedBytes = 48 * 1024;
constexpr std::int64_t kSharedBytesPerValue = 5;  // x as f32, and its int8 values

// Quantizes the staged rows as launch_quantize_rows does (xs holds them as stored, i.e. exact
// values of T): int8 values into xq; e4m3 values back into xs as f32. x_scale gets each row's
// scale.
template <int kRows, WeightKind kKind>
__device__ void quantize_staged(const QuantizedGemvArgs& a, float* xs, signed char* xq,
                                float (&x_scale)[kRows]) {
  constexpr QuantFormat format = kKind == WeightKind::E4M3 ? QuantFormat::E4M3 : QuantFormat::Int8;
  __shared__ float scratch[32];
  const std::int64_t k = a.k;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float* row = xs + r * k;
    float inverse = a.static_inverse;
    x_scale[r] = a.static_scale;
    if (a.static_inverse == 0.0f) {
      float amax = 0.0f;
      for (std::int64_t c = threadIdx.x; c < k; c += kGemvThreads)
        amax = fmaxf(amax, fabsf(row[c]));
      amax = block_max(amax, scratch);
      __syncthreads();  // every thread has read scratch[0] before the next row's block_max
      const float qmax = quant_max(format);
      inverse = amax > 0.0f ? qmax / amax : 0.0f;
      x_scale[r] = amax / qmax;
    }
    for (std::int64_t c = threadIdx.x; c < k; c += kGemvThreads) {
      const unsigned char q = quantize_value(format, row[c], inverse);
      if constexpr (kKind == WeightKind::E4M3) {
        row[c] = e4m3_to_f32(q);
      } else {
        xq[r * k + c] = static_cast<signed char>(q);
      }
    }
  }
  __syncthreads();
}

template <class T, int kRows, WeightKind kKind>
__global__ void __launch_bounds__(kGemvThreads) quantized_gemv_kernel(QuantizedGemvArgs a) {
  extern __shared__ float xs[];  // [kRows, k] f32, then (int8) [kRows, k] int8 values
  signed char* xq = reinterpret_cast<signed char*>(xs + kRows * a.k);
  const int lane = threadIdx.x % 32;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kGemvWarps;
  std::int64_t feature = static_cast<std::int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  const std::int64_t vectors = a.k / 16;  // 16-byte pieces of a weight row
  const auto load_weights = [&](uint4(&wv)[kChunk], std::int64_t f, std::int64_t base) {
    const uint4* w_row =
        reinterpret_cast<const uint4*>(static_cast<const unsigned char*>(a.w) + f * a.k);
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      const std::int64_t v = base + lane + 32 * u;
      if (v < vectors) wv[u] = load_weight(w_row + v);
    }
  };

  uint4 wv[kChunk];
  if (feature < a.n) load_weights(wv, feature, 0);
  // Weights are constant: they load while the previous kernel ends.
  wait_then_allow_dependents(a.early_dependents);
  stage_rows<T, kRows>(a, static_cast<const T*>(a.x), xs);
  float x_scale[kRows];
  if constexpr (kKind == WeightKind::Int8WeightOnly) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) x_scale[r] = 1.0f;
  } else {
    quantize_staged<kRows, kKind>(a, xs, xq, x_scale);
  }
  if (feature >= a.n) return;  // after staging: every thread takes part in its barriers

  const T* residual = static_cast<const T*>(a.residual);
  T* y = static_cast<T*>(a.y);
  for (;;) {
    QuantAcc<kKind> acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0;
    for (std::int64_t base = 0;;) {
#pragma unroll
      for (int u = 0; u < kChunk; ++u) {
        const std::int64_t v = base + lane + 32 * u;
        if (v >= vectors) break;
        if constexpr (kKind == WeightKind::Int8) {
          const int4 w4 = *reinterpret_cast<const int4*>(&wv[u]);
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            const int4 x4 = reinterpret_cast<const int4*>(xq + r * a.k)[v];
            acc[r] = __dp4a(w4.x, x4.x, acc[r]);
            acc[r] = __dp4a(w4.y, x4.y, acc[r]);
            acc[r] = __dp4a(w4.z, x4.z, acc[r]);
            acc[r] = __dp4a(w4.w, x4.w, acc[r]);
          }
        } else {
          float wf[16];
          const unsigned* words = reinterpret_cast<const unsigned*>(&wv[u]);
#pragma unroll
          for (int q = 0; q < 4; ++q) weights4_to_f32<kKind>(words[q], wf + 4 * q);
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            const float4* x4 = reinterpret_cast<const float4*>(xs + r * a.k + v * 16);
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              const float4 xv = x4[q];
              acc[r] += xv.x * wf[4 * q] + xv.y * wf[4 * q + 1] + xv.z * wf[4 * q + 2] +
                        xv.w * wf[4 * q + 3];
            }
          }
        }
      }
      base += 32 * kChunk;
      if (base >= vectors) break;
      load_weights(wv, feature, base);
    }
    const std::int64_t next = feature + stride;
    if (next < a.n) load_weights(wv, next, 0);
    const float w_scale = a.w_scales[feature];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float dot = warp_dot_total<kKind>(acc[r]);
      if (lane == 0) {
        float out = apply_activation(
            dequantize_dot<T>(dot, x_scale[r], w_scale, a.bias, a.bias_act, feature), a.activation);
        if (residual) out += to_f32(residual[r * a.n + feature]);  // read before y (may alias)
        y[r * a.n + feature] = from_f32<T>(out);
      }
    }
    if (next >= a.n) break;
    feature = next;
  }
}

// One row (a batch-1 decode step), as gemv.cu's row kernel: lane l keeps pieces l, l + 32, ...
// of x (8 values each) in registers, and every warp computes the LayerNorm and the row's
// quantization scale itself with shuffles (the absolute maximum is exact, so every warp quantizes
// alike). It reads 8 weights (8 bytes) per piece. No shared memory and no block barrier: the
// kernel's time after the wait is shorter. kVecs = 3 (k <= 768: QKV, c_fc, attention projection)
// takes a LayerNorm; kVecs = 12 (k <= 3072: the MLP projection) does not.
constexpr int kRowVecs = 3;
constexpr int kWideRowVecs = 12;
constexpr int kRowPerVec = kQuantRowPerVec;

// What block_stage_row keeps in shared memory per piece of 8 values: int8 or e4m3 bytes, or
// int8-wo's x as it came (8 values of T).
template <WeightKind kKind>
using StagedPiece = std::conditional_t<kKind == WeightKind::Int8WeightOnly, uint4, uint2>;

// The wide row staged once per block in shared memory instead of in every warp's registers
// (kBlockRow below): warp w reads its quarter of every lane's pieces; for int8 and e4m3 the block
// takes the absolute maximum through shared memory and quantizes (the same arithmetic as
// warp_quantize_row, so the same bits). Returns the row's scale (1 for int8-wo) and, in `row`, the
// staged pieces: int8 then reads its own back into q (dp4a takes them packed, 24 registers);
// e4m3 and int8-wo read each piece inside the dot (staged_piece_to_f32), so that no warp holds
// the 3,072 values as floats (~96 registers).
template <class T, WeightKind kKind, int kVecs>
__device__ float block_stage_row(const QuantizedGemvArgs& a, int vectors,
                                 const StagedPiece<kKind>*& row) {
  static_assert(
      kKind == WeightKind::Int8 || kKind == WeightKind::E4M3 || kKind == WeightKind::Int8WeightOnly,
      "int8, e4m3 or int8-wo weights");
  static_assert(kVecs % kGemvWarps == 0, "each warp takes an equal share of the pieces");
  static_assert(16 / sizeof(T) == kRowPerVec, "a piece of x holds the 8 values of a weight piece");
  constexpr int kShare = kVecs / kGemvWarps;
  __shared__ StagedPiece<kKind> staged[32 * kVecs];
  row = staged;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if constexpr (kKind == WeightKind::Int8WeightOnly) {
#pragma unroll
    for (int j = 0; j < kShare; ++j) {
      const int v = lane + 32 * (warp * kShare + j);
      if (v < vectors) staged[v] = static_cast<const uint4*>(a.x)[v];
    }
    __syncthreads();
    return 1.0f;
  } else {
    constexpr QuantFormat format =
        kKind == WeightKind::E4M3 ? QuantFormat::E4M3 : QuantFormat::Int8;
    __shared__ float warp_amax[kGemvWarps];
    float x[kShare][kRowPerVec];
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < kShare; ++j) {
      const int v = lane + 32 * (warp * kShare + j);
      if (v >= vectors) break;
      const uint4 piece = static_cast<const uint4*>(a.x)[v];
      const T* values = reinterpret_cast<const T*>(&piece);
#pragma unroll
      for (int e = 0; e < kRowPerVec; ++e) {
        x[j][e] = to_f32(values[e]);
        amax = fmaxf(amax, fabsf(x[j][e]));
      }
    }
    float inverse = a.static_inverse, scale = a.static_scale;
    if (inverse == 0.0f) {
      amax = warp_max(amax);
      if (lane == 0) warp_amax[warp] = amax;
      __syncthreads();
      amax = warp_amax[0];
#pragma unroll
      for (int w = 1; w < kGemvWarps; ++w) amax = fmaxf(amax, warp_amax[w]);
      inverse = amax > 0.0f ? quant_max(format) / amax : 0.0f;
      scale = amax / quant_max(format);
    }
#pragma unroll
    for (int j = 0; j < kShare; ++j) {
      const int v = lane + 32 * (warp * kShare + j);
      if (v >= vectors) break;
      if constexpr (kKind == WeightKind::E4M3) {
        unsigned word[2] = {0u, 0u};
#pragma unroll
        for (int e = 0; e < kRowPerVec; ++e) {
          word[e / 4] |= static_cast<unsigned>(quantize_e4m3(x[j][e], inverse)) << (8 * (e % 4));
        }
        staged[v] = make_uint2(word[0], word[1]);
      } else {
        staged[v] = make_uint2(
            static_cast<unsigned>(quantize_int8x4(x[j][0], x[j][1], x[j][2], x[j][3], inverse)),
            static_cast<unsigned>(quantize_int8x4(x[j][4], x[j][5], x[j][6], x[j][7], inverse)));
      }
    }
    __syncthreads();
    return scale;
  }
}

// A staged piece of x as the f32 values the per-warp path multiplies: e4m3 bytes decoded, or
// int8-wo's values of T widened.
template <class T, WeightKind kKind>
__device__ __forceinline__ void staged_piece_to_f32(const StagedPiece<kKind>& piece,
                                                    float (&x)[kRowPerVec]) {
  if constexpr (kKind == WeightKind::E4M3) {
    e4m3x4_to_f32(piece.x, x);
    e4m3x4_to_f32(piece.y, x + 4);
  } else {
    const T* values = reinterpret_cast<const T*>(&piece);
#pragma unroll
    for (int e = 0; e < kRowPerVec; ++e) x[e] = to_f32(values[e]);
  }
}

// As gemv.cu's row kernel, the LayerNorm form loads two features' weights a warp before the wait
// (see row_features_per_warp). kBlockRow (the wide form only): the row is staged, and quantized,
// once per block (block_stage_row). Per warp, quantizing the MLP projection's 3,072 values after
// the wait made int8's projection ~1.2 us slower than int8-wo's (kernel trace, docs/results.md).
template <class T, WeightKind kKind, int kVecs, bool kBlockRow = false>
__global__ void __launch_bounds__(kGemvThreads) quantized_gemv_row_kernel(QuantizedGemvArgs a) {
  static_assert(!kBlockRow || kVecs > kRowVecs, "the block stages the wide form's row");
  constexpr bool kLayerNorm = kVecs <= kRowVecs;
  constexpr int kNormVecs = kLayerNorm ? kVecs : 1;
  constexpr int kAhead = kLayerNorm ? kRowFeaturesAhead : 1;
  const int lane = threadIdx.x % 32;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kGemvWarps;
  std::int64_t feature = static_cast<std::int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  const int vectors = static_cast<int>(a.k / kRowPerVec);
  const auto load_row = [&](std::int64_t f, uint2(&out)[kVecs]) {
    const uint2* w_row =
        reinterpret_cast<const uint2*>(static_cast<const unsigned char*>(a.w) + f * a.k);
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (lane + 32 * u < vectors) out[u] = load_weight(w_row + lane + 32 * u);
    }
  };

  uint2 wv[kAhead][kVecs];
  load_features_ahead(wv, feature, stride, a.n, load_row);
  float gv[kNormVecs][kRowPerVec], bv[kNormVecs][kRowPerVec];
  if constexpr (kLayerNorm) {
    if (a.ln_gamma != nullptr) {
      load_layer_norm_params<kNormVecs, kRowPerVec>(a.ln_gamma, a.ln_beta, vectors, gv, bv);
    }
  }
  // Weights are constant: they load while the previous kernel ends.
  wait_then_allow_dependents(a.early_dependents);

  float xv[kVecs][kRowPerVec];
  int xq[kVecs][2];
  float x_scale;
  const StagedPiece<kKind>* staged = nullptr;
  if constexpr (kBlockRow) {
    x_scale = block_stage_row<T, kKind, kVecs>(a, vectors, staged);
    if constexpr (kKind == WeightKind::Int8) {
#pragma unroll
      for (int u = 0; u < kVecs; ++u) {
        if (lane + 32 * u >= vectors) break;
        xq[u][0] = static_cast<int>(staged[lane + 32 * u].x);
        xq[u][1] = static_cast<int>(staged[lane + 32 * u].y);
      }
    }
  } else {
    warp_load_row<T>(a.x, a.ln_residual, static_cast<int>(vectors), xv);
    if constexpr (kLayerNorm) {
      if (a.ln_gamma != nullptr) {
        warp_layer_norm_row<T>(xv, gv, bv, vectors, a.k, a.ln_eps, a.ln_out);
      }
    }
    x_scale = warp_quantize_row<kKind, kVecs>(xv, xq, vectors, a.static_inverse, a.static_scale);
  }
  if (feature >= a.n) return;  // after the block's barriers

  const T* residual = static_cast<const T*>(a.residual);
  T* y = static_cast<T*>(a.y);
  for (;;) {
    QuantAcc<kKind> acc = 0;
#pragma unroll
    for (int u = 0; u < kVecs; ++u) {
      if (lane + 32 * u >= vectors) break;
      if constexpr (kBlockRow && kKind != WeightKind::Int8) {
        float x_piece[kRowPerVec];
        staged_piece_to_f32<T, kKind>(staged[lane + 32 * u], x_piece);
        dot_piece<kKind>(acc, wv[0][u], x_piece, xq[u]);
      } else {
        dot_piece<kKind>(acc, wv[0][u], xv[u], xq[u]);
      }
    }
    const std::int64_t next = feature + stride;
    advance_features_ahead(wv, next, stride, a.n, load_row);
    const float dot = warp_dot_total<kKind>(acc);
    if (lane == 0) {
      float out = apply_activation(
          dequantize_dot<T>(dot, x_scale, a.w_scales[feature], a.bias, a.bias_act, feature),
          a.activation);
      if (residual) out += to_f32(residual[feature]);  // read before y (may alias)
      y[feature] = from_f32<T>(out);
    }
    if (next >= a.n) break;
    feature = next;
  }
}

// The register kernel's pieces of x per lane for these arguments (one row, x and the LayerNorm
// operands in 16-byte pieces), or 0 when it cannot run them.
int row_kernel_vecs(const QuantizedGemvArgs& a) {
  const auto ok = [](const void* p) { return p == nullptr || aligned16(p); };
  if (a.m != 1 || a.k % kRowPerVec != 0 || !ok(a.x) || !ok(a.ln_residual) || !ok(a.ln_out) ||
      !ok(a.ln_gamma) || !ok(a.ln_beta)) {
    return 0;
  }
  if (a.k / kRowPerVec <= 32 * kRowVecs) return kRowVecs;
  const bool layer_norm = a.ln_gamma != nullptr || a.ln_residual != nullptr;
  return !layer_norm && a.k / kRowPerVec <= 32 * kWideRowVecs && wide_row_gemv_enabled()
             ? kWideRowVecs
             : 0;
}

std::int64_t rows_per_launch(std::int64_t k) {
  const std::int64_t fit = kSharedBytes / (k * kSharedBytesPerValue);
  return fit < kMaxRowsPerLaunch ? fit : kMaxRowsPerLaunch;
}

template <class T, int kRows, WeightKind kKind>
void launch_rows(const QuantizedGemvArgs& a, cudaStream_t stream) {
  const auto kernel = quantized_gemv_kernel<T, kRows, kKind>;
  const std::size_t shared = static_cast<std::size_t>(kRows * a.k * kSharedBytesPerValue);
  launch_dependent(kernel, dim3(gemv_grid(reinterpret_cast<const void*>(kernel), shared, a.n)),
                   dim3(kGemvThreads), shared, stream, a);
}

template <class T, WeightKind kKind>
void launch_kind(const QuantizedGemvArgs& a, cudaStream_t stream) {
  switch (a.m) {
    case 1:
      launch_rows<T, 1, kKind>(a, stream);
      break;
    case 2:
      launch_rows<T, 2, kKind>(a, stream);
      break;
    case 3:
      launch_rows<T, 3, kKind>(a, stream);
      break;
    default:
      launch_rows<T, 4, kKind>(a, stream);
      break;
  }
}

// EAQ_BLOCK_QUANTIZE_ROW=0 loads (and quantizes) the wide row in every warp, as before
// block_stage_row (to measure what it buys). Read at every launch.
bool block_stage_row_enabled() {
  return !env_is("EAQ_BLOCK_QUANTIZE_ROW", "0");
}

template <class T, WeightKind kKind>
void launch_row(const QuantizedGemvArgs& a, int vecs, cudaStream_t stream) {
  auto kernel = vecs == kRowVecs ? quantized_gemv_row_kernel<T, kKind, kRowVecs>
                                 : quantized_gemv_row_kernel<T, kKind, kWideRowVecs>;
  if constexpr (kKind != WeightKind::Float) {
    if (vecs == kWideRowVecs && block_stage_row_enabled()) {
      kernel = quantized_gemv_row_kernel<T, kKind, kWideRowVecs, true>;
    }
  }
  const int features_per_warp = vecs == kRowVecs ? row_features_per_warp(a.n) : 1;
  launch_dependent(
      kernel, dim3(gemv_grid(reinterpret_cast<const void*>(kernel), 0, a.n, features_per_warp)),
      dim3(kGemvThreads), 0, stream, a);
}

template <class T>
void launch_typed(const QuantizedGemvArgs& a, cudaStream_t stream) {
  if (const int vecs = row_kernel_vecs(a); vecs != 0) {
    if (a.weight_only) {
      launch_row<T, WeightKind::Int8WeightOnly>(a, vecs, stream);
    } else if (a.format == QuantFormat::E4M3) {
      launch_row<T, WeightKind::E4M3>(a, vecs, stream);
    } else {
      launch_row<T, WeightKind::Int8>(a, vecs, stream);
    }
    return;
  }
  if (a.weight_only) {
    launch_kind<T, WeightKind::Int8WeightOnly>(a, stream);
  } else if (a.format == QuantFormat::E4M3) {
    launch_kind<T, WeightKind::E4M3>(a, stream);
  } else {
    launch_kind<T, WeightKind::Int8>(a, stream);
  }
}

}  // namespace

bool quantized_gemv_eligible(DType act, std::int64_t m, std::int64_t k, const void* x,
                             const void* w) {
  return (act == DType::F16 || act == DType::BF16) && m >= 1 && m <= kMaxQuantizedGemvRows &&
         k > 0 && k % 16 == 0 && rows_per_launch(k) >= 1 && aligned16(x) && aligned16(w);
}

void launch_quantized_gemv(DType act, const QuantizedGemvArgs& args, cudaStream_t stream) {
  const std::size_t element = dtype_size(act);
  const std::int64_t per_launch = rows_per_launch(args.k);
  for (std::int64_t first = 0; first < args.m; first += per_launch) {
    QuantizedGemvArgs a = args;
    a.m = args.m - first < per_launch ? args.m - first : per_launch;
    a.x = static_cast<const char*>(args.x) + first * args.k * element;
    a.y = static_cast<char*>(args.y) + first * args.n * element;
    if (a.residual) a.residual = static_cast<const char*>(args.residual) + first * args.n * element;
    if (a.ln_residual)
      a.ln_residual = static_cast<const char*>(args.ln_residual) + first * args.k * element;
    if (a.ln_out) a.ln_out = static_cast<char*>(args.ln_out) + first * args.k * element;
    if (act == DType::F16) {
      launch_typed<__half>(a, stream);
    } else {
      launch_typed<__nv_bfloat16>(a, stream);
    }
  }
}

}  // namespace eaq::cuda
