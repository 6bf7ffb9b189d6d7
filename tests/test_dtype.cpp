#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/dtype.hpp"

namespace eaq {
namespace {

TEST(DType, SizesAndNamesRoundTrip) {
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::I8, DType::U8,
                  DType::I32, DType::I64, DType::Bool}) {
    DType parsed;
    ASSERT_TRUE(parse_dtype(dtype_name(d), &parsed));
    EXPECT_EQ(parsed, d);
  }
  DType unused;
  EXPECT_FALSE(parse_dtype("F64", &unused));
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::I64), 8u);
}

TEST(DType, F16KnownValues) {
  EXPECT_EQ(f32_to_f16_bits(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16_bits(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16_bits(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16_bits(65520.0f), 0x7c00);               // rounds to infinity
  EXPECT_EQ(f32_to_f16_bits(5.9604645e-8f), 0x0001);          // smallest subnormal
  EXPECT_EQ(f32_to_f16_bits(1.0f + 1.0f / 2048.0f), 0x3c00);  // tie -> even
  EXPECT_EQ(f32_to_f16_bits(1.0f + 3.0f / 2048.0f), 0x3c02);  // tie -> even (up)
  EXPECT_TRUE(std::isnan(f16_bits_to_f32(f32_to_f16_bits(std::nanf("")))));
}

TEST(DType, F16RoundTripsEveryHalf) {
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    const float f = f16_bits_to_f32(h);
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16_bits(f), h) << bits;
  }
}

TEST(DType, BF16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(bf16_bits_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(f32_to_bf16_bits(bits_f32(0x3f808000u)), 0x3f80);  // tie -> even (down)
  EXPECT_EQ(f32_to_bf16_bits(bits_f32(0x3f818000u)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16_bits(bits_f32(0x3f808001u)), 0x3f81);
}

TEST(DType, E4M3RoundTripsEveryCode) {
  for (std::uint32_t bits = 0; bits < 0x100u; ++bits) {
    const auto code = static_cast<std::uint8_t>(bits);
    const float f = e4m3_bits_to_f32(code);
    if (std::isnan(f)) continue;
    if (code == 0x80) continue;  // -0 encodes as -0: checked below
    EXPECT_EQ(f32_to_e4m3_bits(f), code) << bits;
  }
  EXPECT_EQ(e4m3_bits_to_f32(0x7e), 448.0f);
  EXPECT_EQ(f32_to_e4m3_bits(1000.0f), 0x7e);  // saturates
  EXPECT_EQ(f32_to_e4m3_bits(-1000.0f), 0xfe);
  EXPECT_EQ(e4m3_bits_to_f32(0x01), 1.0f / 512.0f);
  EXPECT_EQ(f32_to_e4m3_bits(-0.0f), 0x80);
}

}  // namespace
}  // namespace eaq
