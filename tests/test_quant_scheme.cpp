// Host-side quantization math (src/quant): scales, rounding, clamping, round-trip error bounds
// for int8 and E4M3, per channel, per token and static.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.hpp"
#include "golden.hpp"
#include "quant/activation_quant.hpp"
#include "quant/dequantize.hpp"
#include "quant/scheme.hpp"
#include "quant/weight_quant.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

// Half a step of E4M3 at |v| (in scaled units): 2^(e - 3) / 2 for normals, 2^-9 / 2 below 2^-6.
double e4m3_half_step(double v) {
  const double a = std::fabs(v);
  if (a < 0.015625) return std::ldexp(1.0, -10);
  return std::ldexp(1.0, static_cast<int>(std::floor(std::log2(a))) - 4);
}

TEST(QuantScheme, Int8RoundsHalfToEvenAndClamps) {
  // inverse 1: the value itself is rounded.
  EXPECT_EQ(quant::quantize_int8(0.5f, 1.0f), 0);
  EXPECT_EQ(quant::quantize_int8(1.5f, 1.0f), 2);
  EXPECT_EQ(quant::quantize_int8(2.5f, 1.0f), 2);
  EXPECT_EQ(quant::quantize_int8(-2.5f, 1.0f), -2);
  EXPECT_EQ(quant::quantize_int8(126.6f, 1.0f), 127);
  EXPECT_EQ(quant::quantize_int8(1000.0f, 1.0f), 127);
  EXPECT_EQ(quant::quantize_int8(-1000.0f, 1.0f), -127);  // symmetric: never -128
  EXPECT_EQ(quant::quantize_int8(3.0f, 0.0f), 0);         // an all-zero group
}

TEST(QuantScheme, WeightsInt8PerChannelScalesAndRoundTripBound) {
  HostTensor w = test::random_f32({24, 40}, 3, 0.5f);
  // A row of zeros and a row with one large outlier.
  for (int c = 0; c < 40; ++c) w.mutable_data<float>()[5 * 40 + c] = 0.0f;
  w.mutable_data<float>()[7 * 40 + 3] = 30.0f;
  const quant::QuantizedRows q = quant::quantize_weights_int8(w, "w");
  ASSERT_EQ(q.values.dtype(), DType::I8);
  ASSERT_EQ(q.values.shape(), (Shape{24, 40}));
  ASSERT_EQ(q.scales.size(), 24u);
  const HostTensor back = quant::dequantize_rows(q);
  for (int r = 0; r < 24; ++r) {
    const float* row = w.data<float>() + r * 40;
    const float absmax = quant::absmax_of(row, 40);
    EXPECT_FLOAT_EQ(q.scales[r], absmax / 127.0f) << "row " << r;
    int reached = 0;
    for (int c = 0; c < 40; ++c) {
      const std::int8_t v = q.values.data<std::int8_t>()[r * 40 + c];
      EXPECT_GE(v, -127);
      reached += std::abs(v) == 127;
      EXPECT_LE(std::fabs(row[c] - back.data<float>()[r * 40 + c]),
                q.scales[r] * 0.5f * (1 + 1e-6f))
          << "row " << r << " col " << c;
    }
    if (absmax > 0) {
      EXPECT_GE(reached, 1) << "the absmax element maps to +-127 in row " << r;
    }
  }
  EXPECT_EQ(q.scales[5], 0.0f);
  for (int c = 0; c < 40; ++c) EXPECT_EQ(back.data<float>()[5 * 40 + c], 0.0f);
}

TEST(QuantScheme, WeightsE4M3RoundTripWithinHalfAStep) {
  const HostTensor w = test::random_f32({16, 64}, 4, 2.0f);
  const quant::QuantizedRows q = quant::quantize_weights_e4m3(w, "w");
  ASSERT_EQ(q.values.dtype(), DType::F8_E4M3);
  const HostTensor back = quant::dequantize_rows(q);
  for (int r = 0; r < 16; ++r) {
    const float* row = w.data<float>() + r * 64;
    EXPECT_FLOAT_EQ(q.scales[r], quant::absmax_of(row, 64) / 448.0f);
    for (int c = 0; c < 64; ++c) {
      const double scaled = row[c] / static_cast<double>(q.scales[r]);
      const double error = std::fabs(row[c] - back.data<float>()[r * 64 + c]) / q.scales[r];
      EXPECT_LE(error, e4m3_half_step(scaled) * (1 + 1e-5) + 1e-6) << "row " << r << " col " << c;
    }
  }
}

TEST(QuantScheme, E4M3SaturatesInsteadOfOverflowing) {
  EXPECT_EQ(quant::quantize_e4m3(500.0f, 1.0f), 0x7e);  // 448, the largest finite value
  EXPECT_EQ(quant::quantize_e4m3(-500.0f, 1.0f), 0xfe);
  EXPECT_EQ(e4m3_bits_to_f32(quant::quantize_e4m3(1.0f, 448.0f)), 448.0f);
}

TEST(QuantScheme, ActivationsPerTokenMatchRowwiseDefinition) {
  const HostTensor x = test::random_f32({2, 3, 20}, 5, 4.0f);  // [batch, seq, hidden]
  const quant::QuantizedRows q = quant::quantize_activations_int8(x);
  ASSERT_EQ(q.values.shape(), (Shape{6, 20}));
  ASSERT_EQ(q.scales.size(), 6u);
  for (int r = 0; r < 6; ++r) {
    const float* row = x.data<float>() + r * 20;
    const float inverse = 127.0f / quant::absmax_of(row, 20);
    for (int c = 0; c < 20; ++c) {
      EXPECT_EQ(q.values.data<std::int8_t>()[r * 20 + c], quant::quantize_int8(row[c], inverse));
    }
  }
  const quant::QuantizedRows f = quant::quantize_activations_e4m3(x);
  const HostTensor back = quant::dequantize_rows(f);
  EXPECT_LE(test::max_relative_error(back, x.reshaped({6, 20})), 1.0 / 16);  // 3 mantissa bits
}

TEST(QuantScheme, StaticScaleSaturatesOutliers) {
  const std::vector<float> x = {0.1f, -0.25f, 1.0f, 5.0f, -7.0f};
  std::vector<std::int8_t> q(x.size());
  quant::quantize_int8_static(x.data(), 5, 1.0f / 127.0f, q.data());  // range [-1, 1]
  EXPECT_EQ(q[0], 13);                                                // 12.7 -> 13
  EXPECT_EQ(q[1], -32);                                               // -31.75 -> -32
  EXPECT_EQ(q[2], 127);
  EXPECT_EQ(q[3], 127);
  EXPECT_EQ(q[4], -127);
  const HostTensor back =
      quant::dequantize_int8_static(HostTensor(DType::I8, {5}, q.data(), nullptr), 1.0f / 127.0f);
  for (int i = 0; i < 3; ++i)
    EXPECT_LE(std::fabs(back.data<float>()[i] - x[i]), 0.5f / 127.0f * 1.0001f);
  EXPECT_THROW(quant::quantize_int8_static(x.data(), 5, 0.0f, q.data()), Error);
}

TEST(QuantScheme, NonFiniteWeightsAreRefusedNamingTheLayer) {
  HostTensor w = test::random_f32({4, 8}, 6);
  w.mutable_data<float>()[2 * 8 + 5] = std::nanf("");
  try {
    quant::quantize_weights_int8(w, "layers.3.ffn_in");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.3.ffn_in: weight [2, 5]"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace eaq
