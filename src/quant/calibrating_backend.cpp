#include "quant/calibrating_backend.hpp"

#include "core/error.hpp"

namespace eaq::quant {

void CalibratingBackend::linear(const DeviceTensor& x, const LinearWeights& weights,
                                Activation activation, DeviceTensor& y) {
  const HostTensor input = inner_.download(x);  // F32 for every float dtype
  const std::int64_t cols = weights.in_features;
  const std::int64_t rows = input.numel() / cols;
  auto it = statistics_.find(weights.name);
  if (it == statistics_.end()) it = statistics_.emplace(weights.name, AbsHistogram(bins_)).first;
  const float* values = input.data<float>();
  if (static_cast<std::int64_t>(token_mask_.size()) == rows) {
    for (std::int64_t r = 0; r < rows; ++r) {
      if (token_mask_[static_cast<std::size_t>(r)] != 0) {
        it->second.add(values + r * cols, cols, weights.name);
      }
    }
  } else {
    it->second.add(values, rows * cols, weights.name);
  }
  inner_.linear(x, weights, activation, y);
}

std::unique_ptr<CapturedGraph> CalibratingBackend::capture(const std::function<void()>&) {
  fail("calibration records every Linear input on the host and cannot run in a captured graph");
}

}  // namespace eaq::quant
