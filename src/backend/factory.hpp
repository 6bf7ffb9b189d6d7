// Choosing a backend from the command line's --device, --precision and --gpu-id.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"

namespace eaq {

struct BackendOptions {
  std::string device = "cpu";  // "cpu" or "cuda"
  Precision precision = Precision::Fp32;
  int gpu_id = 0;
};

std::unique_ptr<Backend> make_backend(const BackendOptions& options);

// Implemented in backend/cuda when built with CUDA, else by a stub that explains why not.
std::unique_ptr<Backend> make_cuda_backend(Precision precision, int gpu_id);
// Whether GPU `gpu_id` can run `precision` (compute capability, implemented paths); `why_not`
// gets the reason when it cannot.
bool cuda_supports(Precision precision, int gpu_id, std::string* why_not);

// The precisions `device` can run, in all_precisions() order ("--precision all").
std::vector<Precision> supported_precisions(const std::string& device, int gpu_id);

}  // namespace eaq
