// Launchers of the quantization kernels (quantize.cu, layer_norm_quantize.cu), callable from host
// C++. The arithmetic is that of src/quant/scheme.hpp, so results match the CPU reference bit
// for bit given the same inputs:
//   int8:  inverse = 127 / absmax (per row) or 1 / static scale; q = clamp(rint(x * inverse))
//   E4M3:  inverse = 448 / absmax (per row); q = e4m3(x * inverse), saturating, nearest even
// Every launcher enqueues on `stream` and never synchronizes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.hpp"
#include "backend/cuda/kernels.hpp"

namespace eaq::cuda {

enum class QuantFormat { Int8, E4M3 };

// Where quantized rows go: values [rows, ld] (ld >= cols; columns [cols, ld) are written as
// zeros, so the GEMM can read K padded to ld) and, for per-token scales, scales [rows].
struct QuantizeTarget {
  QuantFormat format = QuantFormat::Int8;
  void* values = nullptr;
  std::int64_t ld = 0;
  float* scales = nullptr;      // not null: per-token dynamic scales are computed and written
  float static_inverse = 0.0f;  // scales == null: int8 with this fixed 1 / scale
};

// Quantizes the rows of x [rows, cols] (dtype `act`).
void launch_quantize_rows(DType act, const void* x, std::int64_t rows, std::int64_t cols,
                          const QuantizeTarget& target, cudaStream_t stream);

// The dequantization epilogue of a quantized GEMM:
//   v[r, c] = act(acc[r, c] * (row_scale[r] * col_scale[c]) + bias[c])
// with acc I32 or F32 [rows, ld_acc], row_scale = row_scales ? row_scales[r] : static_row_scale,
// bias F32 (or null). v is stored to y [rows, cols] (dtype `act`) when y is not null, and its
// rows (as stored, i.e. rounded to `act`) are quantized into *next when next is not null: the
// input of the next quantized Linear, made without another pass over memory.
struct DequantizeArgs {
  const void* acc = nullptr;
  DType acc_dtype = DType::I32;
  std::int64_t ld_acc = 0;
  const float* row_scales = nullptr;
  float static_row_scale = 0.0f;
  const float* col_scales = nullptr;
  const float* bias = nullptr;
  Activation activation = Activation::None;
  std::int64_t rows = 0, cols = 0;
  void* y = nullptr;
  const QuantizeTarget* next = nullptr;
};
void launch_dequantize(DType act, const DequantizeArgs& args, cudaStream_t stream);

// Quantizes act(y) row by row into `target` without writing y back: the second half of a fused
// feed-forward step when the GEMM itself wrote y (cuBLASLt's fp8 path).
void launch_activation_quantize(DType act, const void* y, std::int64_t rows, std::int64_t cols,
                                Activation activation, const QuantizeTarget& target,
                                cudaStream_t stream);

// LayerNorm(x + residual) exactly as launch_layer_norm, also quantizing each output row (as
// stored) into `target` from registers. Returns false without launching anything when the rows
// are too wide for the one-warp-per-row kernel (cols > 1024); the caller then runs
// launch_layer_norm and launch_quantize_rows.
bool launch_layer_norm_quantize(DType act, const void* x, const void* residual, const float* gamma,
                                const float* beta, float eps, void* out, std::int64_t rows,
                                std::int64_t cols, const QuantizeTarget& target,
                                cudaStream_t stream);

// eaq's own int8 GEMM with the dequantization in its epilogue (int8_gemm.cu):
//   y[r, c] = act(acc[r, c] * (row_scale[r] * col_scale[c]) + bias[c]) + residual[r, c]
// for c < n_out,
//   acc = sum_k x[r, k] * w[c, k], x I8 [m, k] and w I8 [n, k] (n >= n_out rows, zero-padded),
// k a multiple of 16, row_scale = row_scales ? row_scales[r] : static_row_scale, bias F32 or null,
// y [m, ldy] in dtype `act`.
struct Int8GemmArgs {
  const std::int8_t* x = nullptr;
  const std::int8_t* w = nullptr;
  std::int64_t m = 0, n = 0, k = 0;
  const float* row_scales = nullptr;
  float static_row_scale = 0.0f;
  const float* col_scales = nullptr;
  const float* bias = nullptr;
  Activation activation = Activation::None;
  void* y = nullptr;
  std::int64_t ldy = 0, n_out = 0;
  // Added after the activation, before the one rounding to `act` ([m, ldy], dtype `act`; may
  // alias y: each element is read before it is written), or null. The split-K kernel only (the
  // launch fails on the 128 x 128 kernel).
  const void* residual = nullptr;
};
// Two kernels compute it, to the same bits: 128 x 128 tiles (int8_gemm.cu) for grids of such
// tiles that fill the GPU, and 64 x 64 tiles with K split over a thread-block cluster
// (int8_split_k_gemm.cu) for fewer rows (a prompt). Auto picks as said; EAQ_INT8_SPLIT_K=0 in the
// environment keeps the 128 x 128 kernel everywhere (to measure what the other buys).
enum class Int8GemmKernel { Auto, Tiles128, SplitK64 };
void launch_int8_gemm(DType act, const Int8GemmArgs& args, cudaStream_t stream,
                      Int8GemmKernel kernel = Int8GemmKernel::Auto);
// What Auto picks for m rows and n (padded) weight rows.
Int8GemmKernel int8_gemm_kernel_for(std::int64_t m, std::int64_t n);
// The split-K kernel alone, and how many splits of K it makes for these arguments.
void launch_int8_split_k_gemm(DType act, const Int8GemmArgs& args, cudaStream_t stream);
int int8_split_k_gemm_splits(const Int8GemmArgs& args);

// The quantized Linear layers on a few rows (decode steps), one kernel each (quantized_gemv.cu):
//   y[r, c] = act(dot(r, c) * (x_scale[r] * w_scales[c]) + bias[c]) + residual[r, c]
// for rows r < m and features c < n, w [>= n, k] I8 or E4M3 with k a multiple of 16 and 16-byte
// aligned rows. x [m, k] (dtype `act`) is first replaced by LayerNorm(x + ln_residual) when
// ln_gamma is set (as launch_gemv; block 0 writes it to ln_out), then quantized inside the kernel
// exactly as launch_quantize_rows does (per token: x_scale = absmax / qmax; static:
// static_inverse and static_scale), and dot is the i32 (int8) or f32 (E4M3) dot product of the
// quantized row with w's row: for int8 the very integers of the GEMM path. weight_only (int8-wo):
// x is not quantized, dot = x . q in f32 and x_scale = 1, which differs from the GEMM path's
// f16-rounded dequantized weights by that rounding only. bias: F32, or `act` with bias_act;
// residual (dtype `act`) may alias y.
struct QuantizedGemvArgs : GemvArgs {  // w: the 8-bit weights [>= n, k]
  QuantFormat format = QuantFormat::Int8;
  bool weight_only = false;
  const float* w_scales = nullptr;
  bool bias_act = false;
  float static_inverse = 0.0f;  // > 0: int8-static, x_scale = static_scale
  float static_scale = 0.0f;
};
constexpr std::int64_t kMaxQuantizedGemvRows = 8;
bool quantized_gemv_eligible(DType act, std::int64_t m, std::int64_t k, const void* x,
                             const void* w);
void launch_quantized_gemv(DType act, const QuantizedGemvArgs& args, cudaStream_t stream);

// int8-wo: w[n, k] = q[n, k] * scales[n] into `w` (dtype `act`), q I8 [n, k].
void launch_dequantize_weights(DType act, const std::int8_t* q, const float* scales, void* w,
                               std::int64_t n, std::int64_t k, cudaStream_t stream);

}  // namespace eaq::cuda
