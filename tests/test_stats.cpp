#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "measure/stats.hpp"

namespace eaq::measure {
namespace {

// Hand-computed: mean 5, squared deviations sum to 32.
const std::vector<double> kValues = {4, 2, 5, 4, 9, 4, 7, 5};  // sorted: 2 4 4 4 5 5 7 9

TEST(Stats, MeanAndPopulationStd) {
  EXPECT_DOUBLE_EQ(mean(kValues), 5.0);
  EXPECT_DOUBLE_EQ(std_dev(kValues), 2.0);                     // sqrt(32 / 8), numpy ddof=0
  EXPECT_DOUBLE_EQ(std_dev(kValues, 1), std::sqrt(32.0 / 7));  // pandas' ddof=1
}

TEST(Stats, PercentilesInterpolateLikeNumpy) {
  EXPECT_DOUBLE_EQ(median(kValues), 4.5);
  // rank = p/100 * (n-1) = 6.65 -> 7 + 0.65 * (9 - 7)
  EXPECT_NEAR(percentile(kValues, 95), 8.3, 1e-12);
  EXPECT_NEAR(percentile(kValues, 99), 8.86, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(kValues, 0), 2);
  EXPECT_DOUBLE_EQ(percentile(kValues, 100), 9);
  const std::vector<double> four = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(percentile(four, 25), 1.75);  // np.percentile([1,2,3,4], 25)
  EXPECT_DOUBLE_EQ(median(four), 2.5);
}

TEST(Stats, SummaryMatchesTheSingleFunctions) {
  const auto s = summarize(kValues);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->count, 8u);
  EXPECT_DOUBLE_EQ(s->mean, 5);
  EXPECT_DOUBLE_EQ(s->std, 2);
  EXPECT_DOUBLE_EQ(s->min, 2);
  EXPECT_DOUBLE_EQ(s->max, 9);
  EXPECT_DOUBLE_EQ(s->median, 4.5);
  EXPECT_NEAR(s->p95, 8.3, 1e-12);
  EXPECT_NEAR(s->p99, 8.86, 1e-12);
}

TEST(Stats, OneValue) {
  const std::vector<double> one = {0.25};
  const auto s = summarize(one);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->std, 0);
  EXPECT_EQ(s->p99, 0.25);
  EXPECT_EQ(s->median, 0.25);
  EXPECT_THROW(std_dev(one, 1), Error);  // ddof=1 needs two values
}

TEST(Stats, EmptyInputIsAnErrorOrNothing) {
  const std::vector<double> none;
  EXPECT_FALSE(summarize(none).has_value());
  EXPECT_THROW(mean(none), Error);
  EXPECT_THROW(percentile(none, 50), Error);
  EXPECT_THROW(percentile(kValues, 101), Error);
}

}  // namespace
}  // namespace eaq::measure
