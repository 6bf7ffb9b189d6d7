// What lets greedy decoding find argmax_i (x . w_i) over an LM head without reading every row
// of W in full: an int8 copy of W (half the bytes of f16) and, per row, how far the int8 row's
// dot product can be from the logit the full head computes. A backend first takes the int8 dot
// products A_i, then computes exactly only the rows whose interval A_i +- bound_i reaches the
// largest lower end max_j (A_j - bound_j); every other row's logit is strictly below that row's,
// so the argmax (ties included: the first index) is the full head's. Used by the CUDA backend's
// layer_norm_linear_argmax (bounded_argmax.cu); reference: the full head and argmax_rows.
//
// The bound of row i for a vector x (the LayerNorm output both passes use, as values of the
// logits' dtype T) is  ||x||_2 * radius[i] + slack:
// - ||x|| * ||w_i - s_i q_i||_2 bounds the int8 row's error (Cauchy-Schwarz, exact);
// - ||x|| * kappa_T * ||w_i||_2 bounds the full head's rounding: its f32 sum (relative error at
//   most 1e-4 of sum |x_j w_ij| for k <= 4096) and the logit's rounding to T (2^-11 for f16,
//   2^-8 for bf16), with room to spare;
// - ||x|| * 2e-4 * ||s_i q_i||_2 bounds the int8 pass's own f32 sum and its scaling;
// - slack covers the absolute part of rounding near zero (f16's subnormals are 2^-24 apart).
// radius[i] is rounded up. The kernel multiplies ||x|| by (1 + 1e-4) for its own rounding.
//
// A pass that also quantizes x (symmetric int8, one scale s_x for the row: an exact int32 dot
// product of q_i with q_x, then times s_i s_x) is off by at most ||s_i q_i||_2 * ||x - s_x q_x||_2
// more (Cauchy-Schwarz again): quant_norm[i] = ||s_i q_i||_2, rounded up, and the kernel computes
// ||x - s_x q_x|| from the row it quantized. Its two f32 products are within the 2e-4 term above.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace eaq {

struct ArgmaxBounds {
  std::int64_t rows = 0;
  std::int64_t k = 0;
  std::vector<std::int8_t> q;     // [rows, k]: round(w / scale), symmetric per row
  std::vector<float> scale;       // [rows]: max |w_i| / 127 (0 for a row of zeros)
  std::vector<float> radius;      // [rows]: see above
  std::vector<float> quant_norm;  // [rows]: ||s_i q_i||_2, rounded up
  float slack = 0.0f;             // the same for every row
};

// The relative rounding allowance kappa_T for logits stored as `logits` (F16 or BF16).
double argmax_bound_kappa(DType logits);

// weight: [rows, k] in F16, BF16 or F32 (the head as the backend stores it); logits: the dtype the
// full head rounds its logits to (F16 or BF16). Throws eaq::Error for anything else.
ArgmaxBounds make_argmax_bounds(const HostTensor& weight, DType logits);

}  // namespace eaq
