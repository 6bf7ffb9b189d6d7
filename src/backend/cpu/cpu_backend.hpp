// The CPU reference backend: f32 everywhere, plain loops, OpenMP across rows.
#pragma once

#include <memory>

#include "backend/backend.hpp"

namespace eaq {

// Precisions the CPU backend runs; others get an error naming --precision and --device.
bool cpu_supports(Precision precision);
std::unique_ptr<Backend> make_cpu_backend(Precision precision);

}  // namespace eaq
