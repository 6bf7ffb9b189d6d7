#include "model/model_linear.hpp"

#include "backend/precision.hpp"

namespace eaq {

std::unique_ptr<LinearWeights> prepare_model_linear(Backend& backend, const QuantizationPlan& plan,
                                                    const std::string& name,
                                                    const HostTensor& weight,
                                                    const HostTensor* bias, bool quantize,
                                                    std::vector<LinearReport>& reports) {
  LinearOptions options;
  options.name = name;
  options.quantize = quantize && is_quantized(backend.precision());
  if (const auto it = plan.static_input_scales.find(name); it != plan.static_input_scales.end()) {
    options.static_input_scale = it->second;
  }
  auto prepared = backend.prepare_linear(weight, bias, options);
  reports.push_back({name, prepared->kernel, prepared->in_features, prepared->out_features});
  return prepared;
}

}  // namespace eaq
