// The CPU reference backend: f32 activations, plain loops, OpenMP across rows; int8 Linear layers
// for the int8 precisions (cpu_quantized_linear.hpp).
#pragma once

#include <memory>

#include "backend/backend.hpp"

namespace eaq {

// Precisions the CPU backend runs; others get an error naming --precision and --device.
bool cpu_supports(Precision precision);
std::unique_ptr<Backend> make_cpu_backend(Precision precision);

}  // namespace eaq
