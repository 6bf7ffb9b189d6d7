// The bound behind the bounded LM head (src/backend/argmax_bounds.hpp), on the host: for random
// heads and rows, and for rows aimed at each head row's int8 error, the logit the full head
// computes (an f32 sum rounded to f16 or bf16) stays within ||x|| * radius + slack of the int8
// pass's score, and the bound is not loose by much. The kernels' use of it is checked on the GPU
// (test_cuda_bounded_argmax.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backend/argmax_bounds.hpp"
#include "core/error.hpp"

namespace eaq {
namespace {

float round_to(DType dtype, float v) {
  return dtype == DType::F16 ? f16_bits_to_f32(f32_to_f16_bits(v))
                             : bf16_bits_to_f32(f32_to_bf16_bits(v));
}

// The full head's logit as the GPU computes it: 32 lanes, each an f32 sum over its pieces of 8
// values, then a butterfly of the 32 sums, then rounding to `dtype`.
float full_logit(const std::vector<float>& x, const float* w, std::int64_t k, DType dtype) {
  float lanes[32] = {};
  for (std::int64_t j = 0; j < k; ++j) {
    const std::int64_t lane = (j / 8) % 32;
    lanes[lane] = std::fma(x[static_cast<std::size_t>(j)], w[j], lanes[lane]);
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    float next[32];
    for (int l = 0; l < 32; ++l) next[l] = lanes[l] + lanes[l ^ offset];
    std::copy(next, next + 32, lanes);
  }
  return round_to(dtype, lanes[0]);
}

// The int8 pass's score: the sum of x * q in f32 (in order), times the row's scale.
float int8_score(const std::vector<float>& x, const ArgmaxBounds& b, std::int64_t row) {
  float sum = 0.0f;
  for (std::int64_t j = 0; j < b.k; ++j) {
    sum = std::fma(x[static_cast<std::size_t>(j)],
                   static_cast<float>(b.q[static_cast<std::size_t>(row * b.k + j)]), sum);
  }
  return sum * b.scale[static_cast<std::size_t>(row)];
}

// x quantized as the scores kernel quantizes it (quant_row.cuh: scale amax / 127, values
// round(x * 127 / amax) clamped to +-127, half to even), and ||x - s_x q_x|| widened as the kernel
// widens it.
struct QuantizedX {
  std::vector<int> q;
  float scale = 0.0f, residual = 0.0f;
};

QuantizedX quantize_x(const std::vector<float>& x, double norm) {
  float amax = 0.0f;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
  QuantizedX r;
  r.scale = amax / 127.0f;
  float squares = 0.0f;
  for (float v : x) {
    const int q = static_cast<int>(std::nearbyint(std::clamp(v * inverse, -127.0f, 127.0f)));
    r.q.push_back(q);
    const float d = v - r.scale * static_cast<float>(q);
    squares = std::fma(d, d, squares);
  }
  r.residual = std::sqrt(squares) * (1.0f + 1e-4f) + 3e-7f * static_cast<float>(norm);
  return r;
}

// The int8 x int8 pass's score: the exact integer sum, times the row's scale, times x's.
float int8_int8_score(const QuantizedX& x, const ArgmaxBounds& b, std::int64_t row) {
  std::int64_t sum = 0;
  for (std::int64_t j = 0; j < b.k; ++j) {
    sum += x.q[static_cast<std::size_t>(j)] * b.q[static_cast<std::size_t>(row * b.k + j)];
  }
  return static_cast<float>(sum) * b.scale[static_cast<std::size_t>(row)] * x.scale;
}

double norm_of(const std::vector<float>& x) {
  double s = 0.0;
  for (float v : x) s += static_cast<double>(v) * v;
  return std::sqrt(s);
}

TEST(ArgmaxBounds, HoldForRandomAndAimedRows) {
  for (DType dtype : {DType::F16, DType::BF16}) {
    std::mt19937 rng(13);
    std::normal_distribution<float> weight(0.0f, 0.02f), value(0.3f, 1.5f);
    const std::int64_t rows = 200, k = 768;
    std::vector<float> w(static_cast<std::size_t>(rows * k));
    for (float& v : w) v = round_to(dtype, weight(rng));  // the head as the GPU stores it
    for (std::int64_t j = 0; j < k; ++j) w[static_cast<std::size_t>(5 * k + j)] = 0.0f;
    w[static_cast<std::size_t>(7 * k + 3)] = 4.0f;  // one large weight: a coarse scale
    const ArgmaxBounds b =
        make_argmax_bounds(HostTensor::from_f32({rows, k}, std::vector<float>(w)), dtype);
    ASSERT_EQ(b.q.size(), w.size());
    EXPECT_EQ(b.scale[5], 0.0f);  // a row of zeros
    EXPECT_EQ(b.radius[5], 0.0f);
    EXPECT_EQ(b.quant_norm[5], 0.0f);
    double tightest = 0.0;  // the largest error seen, as a share of its bound
    for (int trial = 0; trial < 60; ++trial) {
      std::vector<float> x(static_cast<std::size_t>(k));
      if (trial < 40) {
        for (float& v : x) v = round_to(dtype, value(rng));
      } else {
        // x along row r's int8 error, where Cauchy-Schwarz is reached.
        const std::int64_t r = trial - 40;
        for (std::int64_t j = 0; j < k; ++j) {
          const float err = w[static_cast<std::size_t>(r * k + j)] -
                            b.scale[static_cast<std::size_t>(r)] *
                                static_cast<float>(b.q[static_cast<std::size_t>(r * k + j)]);
          x[static_cast<std::size_t>(j)] = round_to(dtype, 300.0f * err);
        }
      }
      const double norm = norm_of(x);
      const QuantizedX xq = quantize_x(x, norm);
      for (std::int64_t i = 0; i < rows; ++i) {
        const double logit = full_logit(x, w.data() + i * k, k, dtype);
        const double score = int8_score(x, b, i);
        const double bound = norm * b.radius[static_cast<std::size_t>(i)] + b.slack;
        ASSERT_LE(std::abs(logit - score), bound)
            << dtype_name(dtype) << " trial " << trial << " row " << i;
        // With x quantized too: the same bound plus ||s_i q_i|| ||x - s_x q_x||.
        const double both = int8_int8_score(xq, b, i);
        const double wider =
            bound + static_cast<double>(b.quant_norm[static_cast<std::size_t>(i)]) *
                        static_cast<double>(xq.residual);
        ASSERT_LE(std::abs(logit - both), wider)
            << dtype_name(dtype) << " trial " << trial << " row " << i << " (x quantized)";
        if (trial >= 40 && i == trial - 40)
          tightest = std::max(tightest, std::abs(logit - score) / bound);
      }
    }
    // Aimed rows reach at least half their bound: it is not loose by an order of magnitude.
    EXPECT_GT(tightest, 0.5) << dtype_name(dtype);
  }
}

TEST(ArgmaxBounds, RejectWhatTheyCannotBound) {
  const HostTensor w = HostTensor::from_f32({2, 8}, std::vector<float>(16, 0.5f));
  EXPECT_THROW(make_argmax_bounds(w, DType::F32), Error);  // logits must be f16 or bf16
  EXPECT_THROW(
      make_argmax_bounds(HostTensor::from_f32({16}, std::vector<float>(16, 0.5f)), DType::F16),
      Error);
  std::vector<float> bad(16, 0.5f);
  bad[11] = INFINITY;
  try {
    make_argmax_bounds(HostTensor::from_f32({2, 8}, bad), DType::F16);
    FAIL() << "a row with infinity was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
  }
  const ArgmaxBounds ok = make_argmax_bounds(w, DType::BF16);
  EXPECT_EQ(ok.q[0], 127);
  EXPECT_FLOAT_EQ(ok.scale[1], 0.5f / 127.0f);
  // ||s q|| of a row of eight 0.5s (every q 127), rounded up.
  const double quant_norm = std::sqrt(8.0) * static_cast<double>(ok.scale[1]) * 127.0;
  EXPECT_GE(ok.quant_norm[1], quant_norm);
  EXPECT_LE(ok.quant_norm[1], quant_norm * (1.0 + 2e-6));
}

}  // namespace
}  // namespace eaq
