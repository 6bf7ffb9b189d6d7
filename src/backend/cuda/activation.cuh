// The activation functions on the device, the formulas of cpu_kernels.cpp: one copy for every
// kernel with an activation epilogue.
#pragma once

#include "backend/backend.hpp"

namespace eaq::cuda {

__device__ __forceinline__ float apply_activation(float v, Activation activation) {
  switch (activation) {
    case Activation::Gelu:
      return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case Activation::GeluTanh: {
      const float inner = 0.79788456080286536f * (v + 0.044715f * v * v * v);
      return 0.5f * v * (1.0f + tanhf(inner));
    }
    case Activation::Relu:
      return fmaxf(v, 0.0f);
    case Activation::Tanh:
      return tanhf(v);
    case Activation::None:
      return v;
  }
  return v;
}

}  // namespace eaq::cuda
