#include "backend/cpu/cpu_decoder_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.hpp"

namespace eaq::cpu {

void start_prompt(const PromptState& s) {
  for (std::int64_t b = 0; b < s.batch; ++b) {
    std::int32_t ones = 0;
    for (std::int64_t i = 0; i < s.len; ++i) {
      const bool real = s.mask[b * s.len + i] != 0;
      ones += real ? 1 : 0;
      s.position_ids[b * s.len + i] = real ? ones - 1 : 1;
    }
    for (std::int64_t j = 0; j < s.capacity; ++j) {
      s.key_mask[b * s.capacity + j] = j < s.len ? s.mask[b * s.len + j] : 0;
      if (j < s.len) s.tokens[b * s.capacity + j] = s.ids[b * s.len + j];
    }
    s.counters[1 + b] = ones;
  }
  s.counters[0] = static_cast<std::int32_t>(s.len);
}

void write_cache(const CacheWrite& a) {
  const std::int64_t start = a.start_slot ? *a.start_slot : 0;
  const std::size_t element = dtype_size(a.dtype);
  const std::size_t row_bytes = static_cast<std::size_t>(a.cols) * element;
  for (std::int64_t b = 0; b < a.batch; ++b) {
    for (std::int64_t i = 0; i < a.rows; ++i) {
      const std::int64_t slot = start + i;
      if (slot < 0 || slot >= a.capacity) continue;
      const auto* src =
          static_cast<const char*>(a.src) +
          static_cast<std::size_t>(b * a.src_batch_stride + i * a.src_row_stride) * element;
      auto* dst =
          static_cast<char*>(a.cache) +
          static_cast<std::size_t>(b * a.cache_batch_stride + slot * a.cache_row_stride) * element;
      std::memcpy(dst, src, row_bytes);
    }
  }
}

void mark_cache_slot(const std::int32_t* slot, std::int32_t* key_mask, std::int64_t batch,
                     std::int64_t capacity) {
  const std::int64_t s = *slot;
  if (s < 0 || s >= capacity) return;
  for (std::int64_t b = 0; b < batch; ++b) key_mask[b * capacity + s] = 1;
}

void increment(std::int32_t* values, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) values[i] += 1;
}

void argmax_rows_f32(const float* x, std::int32_t* out, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    std::int64_t best = 0;
    for (std::int64_t c = 1; c < cols; ++c) {
      if (row[c] > row[best]) best = c;
    }
    out[r] = static_cast<std::int32_t>(best);
  }
}

void token_nll_f32(const float* logits, const std::int32_t* targets, float* nll, std::int64_t rows,
                   std::int64_t vocab) {
  for (std::int64_t r = 0; r < rows; ++r) EAQ_ASSERT(targets[r] >= 0 && targets[r] < vocab);
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * vocab;
    double max_logit = row[0];
    for (std::int64_t c = 1; c < vocab; ++c)
      max_logit = std::max(max_logit, static_cast<double>(row[c]));
    double sum = 0.0;
    for (std::int64_t c = 0; c < vocab; ++c)
      sum += std::exp(static_cast<double>(row[c]) - max_logit);
    const std::int64_t target = targets[r];
    nll[r] = static_cast<float>(max_logit + std::log(sum) - static_cast<double>(row[target]));
  }
}

}  // namespace eaq::cpu
