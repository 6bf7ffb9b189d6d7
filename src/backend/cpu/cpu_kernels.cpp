#include "backend/cpu/cpu_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace eaq::cpu {
namespace {

constexpr std::int64_t kRowBlock = 6;   // rows of x sharing each loaded row of W^T
constexpr std::int64_t kColBlock = 16;  // 6 x 16 accumulators fit the 16 AVX2 registers

// Eight floats as one value: GCC/Clang vector extensions compile to AVX2 registers in the
// x86-64-v3 clone and to SSE pairs in the default one, without intrinsics headers.
typedef float Float8 __attribute__((vector_size(32)));

// One [6, 16] tile of y: 6 x 2 vector accumulators stay in registers across the whole k loop.
// Each step adds x[r, k] * W^T[k, c] in k order, like the edge path, so both give the same sums.
__attribute__((target_clones("arch=x86-64-v3", "default"))) void gemm_full_tile(
    const float* x, const float* w_t, const float* bias, float* y, std::int64_t n, std::int64_t k) {
  // Vectors are loaded with memcpy (no alignment assumed); no function passes them by value,
  // which would change the ABI between the AVX2 and default clones.
  Float8 acc[kRowBlock][2];
  Float8 b0{}, b1{};
  if (bias) {
    std::memcpy(&b0, bias, sizeof b0);
    std::memcpy(&b1, bias + 8, sizeof b1);
  }
  for (std::int64_t r = 0; r < kRowBlock; ++r) {
    acc[r][0] = b0;
    acc[r][1] = b1;
  }
  for (std::int64_t kk = 0; kk < k; ++kk) {
    Float8 w0, w1;
    std::memcpy(&w0, w_t + kk * n, sizeof w0);
    std::memcpy(&w1, w_t + kk * n + 8, sizeof w1);
    for (std::int64_t r = 0; r < kRowBlock; ++r) {
      const float xv = x[r * k + kk];
      acc[r][0] += xv * w0;
      acc[r][1] += xv * w1;
    }
  }
  for (std::int64_t r = 0; r < kRowBlock; ++r) {
    std::memcpy(y + r * n, &acc[r][0], sizeof(Float8));
    std::memcpy(y + r * n + 8, &acc[r][1], sizeof(Float8));
  }
}

// Edge tiles (fewer rows or columns): the same arithmetic with run-time bounds.
void gemm_edge_tile(const float* x, const float* w_t, const float* bias, float* y,
                    std::int64_t rows, std::int64_t cols, std::int64_t n, std::int64_t k) {
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      float acc = bias ? bias[c] : 0.0f;
      for (std::int64_t kk = 0; kk < k; ++kk) acc += x[r * k + kk] * w_t[kk * n + c];
      y[r * n + c] = acc;
    }
  }
}

float gelu_erf(float x) {
  return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
}
float gelu_tanh(float x) {
  const float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + std::tanh(inner));
}

}  // namespace

void gemm_f32(const float* x, const float* w_t, const float* bias, float* y, std::int64_t m,
              std::int64_t n, std::int64_t k) {
  const std::int64_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
  const std::int64_t col_blocks = (n + kColBlock - 1) / kColBlock;
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t cb = 0; cb < col_blocks; ++cb) {
    for (std::int64_t rb = 0; rb < row_blocks; ++rb) {
      const std::int64_t r0 = rb * kRowBlock;
      const std::int64_t c0 = cb * kColBlock;
      const std::int64_t rows = std::min(kRowBlock, m - r0), cols = std::min(kColBlock, n - c0);
      if (rows == kRowBlock && cols == kColBlock) {
        gemm_full_tile(x + r0 * k, w_t + c0, bias ? bias + c0 : nullptr, y + r0 * n + c0, n, k);
      } else {
        gemm_edge_tile(x + r0 * k, w_t + c0, bias ? bias + c0 : nullptr, y + r0 * n + c0, rows,
                       cols, n, k);
      }
    }
  }
}

void apply_activation(float* y, std::int64_t count, Activation activation) {
  switch (activation) {
    case Activation::None:
      return;
    case Activation::Gelu:
      for (std::int64_t i = 0; i < count; ++i) y[i] = gelu_erf(y[i]);
      return;
    case Activation::GeluTanh:
      for (std::int64_t i = 0; i < count; ++i) y[i] = gelu_tanh(y[i]);
      return;
    case Activation::Relu:
      for (std::int64_t i = 0; i < count; ++i) y[i] = std::max(y[i], 0.0f);
      return;
    case Activation::Tanh:
      for (std::int64_t i = 0; i < count; ++i) y[i] = std::tanh(y[i]);
      return;
  }
}

void layer_norm_f32(const float* x, const float* residual, const float* gamma, const float* beta,
                    float eps, float* out, std::int64_t rows, std::int64_t cols) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    std::vector<double> sum(static_cast<std::size_t>(cols));
    double mean = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) {
      sum[c] = static_cast<double>(x[r * cols + c]) + (residual ? residual[r * cols + c] : 0.0f);
      mean += sum[c];
    }
    mean /= static_cast<double>(cols);
    double var = 0.0;
    for (std::int64_t c = 0; c < cols; ++c) var += (sum[c] - mean) * (sum[c] - mean);
    var /= static_cast<double>(cols);  // biased, as torch.nn.LayerNorm
    const double inv_std = 1.0 / std::sqrt(var + static_cast<double>(eps));
    for (std::int64_t c = 0; c < cols; ++c) {
      out[r * cols + c] = static_cast<float>((sum[c] - mean) * inv_std * gamma[c] + beta[c]);
    }
  }
}

void attention_f32(const AttentionArgs& a) {
  if (a.append_slot != nullptr) {
    const std::int64_t slot = *a.append_slot, hidden = a.heads * a.head_dim;
    if (slot >= 0 && slot < a.kv_len) {
      // k and v are caches the caller owns (writable, as AttentionArgs says).
      auto* k_cache = static_cast<float*>(const_cast<void*>(a.k));
      auto* v_cache = static_cast<float*>(const_cast<void*>(a.v));
      for (std::int64_t b = 0; b < a.batch; ++b) {
        const float* k_new = static_cast<const float*>(a.append_k) + b * a.append_batch_stride;
        const float* v_new = static_cast<const float*>(a.append_v) + b * a.append_batch_stride;
        float* k_row = k_cache + b * a.kv_batch_stride + slot * a.kv_row_stride;
        float* v_row = v_cache + b * a.kv_batch_stride + slot * a.kv_row_stride;
        std::copy(k_new, k_new + hidden, k_row);
        std::copy(v_new, v_new + hidden, v_row);
      }
    }
  }
  const auto* q = static_cast<const float*>(a.q);
  const auto* k = static_cast<const float*>(a.k);
  const auto* v = static_cast<const float*>(a.v);
  auto* out = static_cast<float*>(a.out);
  if (a.store_k != nullptr) {
    const std::int64_t hidden = a.heads * a.head_dim;
    for (std::int64_t b = 0; b < a.batch; ++b) {
      for (std::int64_t j = 0; j < a.kv_len; ++j) {
        const std::int64_t src = b * a.kv_batch_stride + j * a.kv_row_stride;
        const std::int64_t dst = b * a.store_batch_stride + j * a.store_row_stride;
        std::copy(k + src, k + src + hidden, static_cast<float*>(a.store_k) + dst);
        std::copy(v + src, v + src + hidden, static_cast<float*>(a.store_v) + dst);
      }
    }
  }
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t b = 0; b < a.batch; ++b) {
    for (std::int64_t h = 0; h < a.heads; ++h) {
      std::vector<float> scores(static_cast<std::size_t>(a.kv_len));
      std::vector<double> acc(static_cast<std::size_t>(a.head_dim));
      for (std::int64_t i = 0; i < a.q_len; ++i) {
        const float* qi = q + b * a.q_batch_stride + i * a.q_row_stride + h * a.head_dim;
        float max_score = -std::numeric_limits<float>::infinity();
        std::int64_t visible = 0;
        for (std::int64_t j = 0; j < a.kv_len; ++j) {
          const bool masked = (a.key_mask && a.key_mask[b * a.mask_batch_stride + j] == 0) ||
                              (a.causal && j > a.q_position_offset + i);
          if (masked) {
            scores[j] = -std::numeric_limits<float>::infinity();
            continue;
          }
          const float* kj = k + b * a.kv_batch_stride + j * a.kv_row_stride + h * a.head_dim;
          double dot = 0.0;
          for (std::int64_t d = 0; d < a.head_dim; ++d) dot += static_cast<double>(qi[d]) * kj[d];
          scores[j] = static_cast<float>(dot) * a.scale;
          max_score = std::max(max_score, scores[j]);
          ++visible;
        }
        float* oi = out + b * a.out_batch_stride + i * a.out_row_stride + h * a.head_dim;
        if (visible == 0) {
          // Every key masked (a fully padded row): defined as zeros rather than NaN.
          std::fill(oi, oi + a.head_dim, 0.0f);
          continue;
        }
        double denom = 0.0;
        for (std::int64_t j = 0; j < a.kv_len; ++j) {
          const double p =
              std::isinf(scores[j]) ? 0.0 : std::exp(static_cast<double>(scores[j] - max_score));
          scores[j] = static_cast<float>(p);
          denom += p;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (std::int64_t j = 0; j < a.kv_len; ++j) {
          if (scores[j] == 0.0f) continue;
          const float* vj = v + b * a.kv_batch_stride + j * a.kv_row_stride + h * a.head_dim;
          for (std::int64_t d = 0; d < a.head_dim; ++d)
            acc[d] += static_cast<double>(scores[j]) * vj[d];
        }
        for (std::int64_t d = 0; d < a.head_dim; ++d) oi[d] = static_cast<float>(acc[d] / denom);
      }
    }
  }
}

}  // namespace eaq::cpu
