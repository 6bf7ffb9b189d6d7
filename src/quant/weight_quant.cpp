#include "quant/weight_quant.hpp"

#include <cmath>

#include "core/error.hpp"
#include "quant/activation_quant.hpp"
#include "quant/scheme.hpp"

namespace eaq::quant {
namespace {

// The weight as f32 after checking its shape and values (a NaN would poison a whole channel).
HostTensor checked_f32(const HostTensor& weight, const std::string& name) {
  EAQ_CHECK(weight.rank() == 2, "{}: a Linear weight must be [out, in], got shape {}", name,
            shape_str(weight.shape()));
  HostTensor w = weight.to_f32();
  for (std::int64_t i = 0; i < w.numel(); ++i) {
    EAQ_CHECK(std::isfinite(w.data<float>()[i]),
              "{}: weight [{}, {}] is {}; cannot quantize a non-finite value", name, i / w.dim(1),
              i % w.dim(1), w.data<float>()[i]);
  }
  return w;
}

}  // namespace

QuantizedRows quantize_weights_int8(const HostTensor& weight, const std::string& name) {
  return quantize_activations_int8(checked_f32(weight, name));
}

QuantizedRows quantize_weights_e4m3(const HostTensor& weight, const std::string& name) {
  return quantize_activations_e4m3(checked_f32(weight, name));
}

}  // namespace eaq::quant
