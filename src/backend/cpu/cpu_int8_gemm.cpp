#include "backend/cpu/cpu_int8_gemm.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace eaq::cpu {
namespace {

constexpr std::int64_t kRows = 4;  // rows of x sharing each loaded row of w

// Dot products of up to 4 rows of x with one row of w. Integer sums are exact in any order, so
// the compiler may vectorize freely (widening multiply-adds on AVX2).
__attribute__((target_clones("arch=x86-64-v3", "default"))) void dot_rows(
    const std::int8_t* x, const std::int8_t* w, std::int32_t* out, std::int64_t rows,
    std::int64_t out_stride, std::int64_t k) {
  if (rows == kRows) {
    std::int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const std::int8_t* x0 = x;
    const std::int8_t* x1 = x + k;
    const std::int8_t* x2 = x + 2 * k;
    const std::int8_t* x3 = x + 3 * k;
    for (std::int64_t i = 0; i < k; ++i) {
      const std::int32_t wv = w[i];
      s0 += static_cast<std::int32_t>(x0[i]) * wv;
      s1 += static_cast<std::int32_t>(x1[i]) * wv;
      s2 += static_cast<std::int32_t>(x2[i]) * wv;
      s3 += static_cast<std::int32_t>(x3[i]) * wv;
    }
    out[0] = s0;
    out[out_stride] = s1;
    out[2 * out_stride] = s2;
    out[3 * out_stride] = s3;
    return;
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int32_t s = 0;
    for (std::int64_t i = 0; i < k; ++i) {
      s += static_cast<std::int32_t>(x[r * k + i]) * static_cast<std::int32_t>(w[i]);
    }
    out[r * out_stride] = s;
  }
}

}  // namespace

void gemm_i8_i32(const std::int8_t* x, const std::int8_t* w, std::int32_t* acc, std::int64_t m,
                 std::int64_t n, std::int64_t k) {
  EAQ_ASSERT(k < 133000);
  const std::int64_t row_blocks = (m + kRows - 1) / kRows;
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t rb = 0; rb < row_blocks; ++rb) {
    for (std::int64_t col = 0; col < n; ++col) {
      const std::int64_t r0 = rb * kRows;
      dot_rows(x + r0 * k, w + col * k, acc + r0 * n + col, std::min(kRows, m - r0), n, k);
    }
  }
}

}  // namespace eaq::cpu
