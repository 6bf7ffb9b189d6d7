// One Linear layer of a model onto the backend, as every architecture loads it: quantized when
// the plan and the backend's precision say so, with its int8-static input scale when calibrated,
// and recorded (name, GEMM path, shape) for reports.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "model/encoder.hpp"  // QuantizationPlan, LinearReport

namespace eaq {

std::unique_ptr<LinearWeights> prepare_model_linear(Backend& backend, const QuantizationPlan& plan,
                                                    const std::string& name,
                                                    const HostTensor& weight,
                                                    const HostTensor* bias, bool quantize,
                                                    std::vector<LinearReport>& reports);

}  // namespace eaq
