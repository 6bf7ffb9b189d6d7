// The CPU's integer GEMM: exact i8 x i8 -> i32 accumulation, the reference for cuBLASLt's IMMA
// path and the engine of the CPU int8 precisions.
#pragma once

#include <cstdint>

namespace eaq::cpu {

// acc[m, n] = sum_k x[m, k] * w[n, k]: x [M, K] and w [N, K] row-major (both "K-contiguous", the
// TN layout of the GPU path). K must stay below 2^31 / 127^2 (~133,000) so sums cannot overflow.
void gemm_i8_i32(const std::int8_t* x, const std::int8_t* w, std::int32_t* acc, std::int64_t m,
                 std::int64_t n, std::int64_t k);

}  // namespace eaq::cpu
