#include "backend/factory.hpp"

#include "backend/cpu/cpu_backend.hpp"
#include "core/error.hpp"

namespace eaq {

std::unique_ptr<Backend> make_backend(const BackendOptions& options) {
  if (options.device == "cpu") return make_cpu_backend(options.precision);
  if (options.device == "cuda") return make_cuda_backend(options.precision, options.gpu_id);
  fail("--device {}: unknown device; choose cpu or cuda", options.device);
}

std::vector<Precision> supported_precisions(const std::string& device, int gpu_id) {
  std::vector<Precision> out;
  for (Precision p : all_precisions()) {
    std::string why_not;
    if (device == "cpu" ? cpu_supports(p) : cuda_supports(p, gpu_id, &why_not)) out.push_back(p);
  }
  return out;
}

#ifndef EAQ_HAVE_CUDA
bool cuda_supports(Precision, int, std::string* why_not) {
  *why_not = "this eaq was built without CUDA";
  return false;
}

std::unique_ptr<Backend> make_cuda_backend(Precision, int) {
  fail(
      "--device cuda: this eaq was built without CUDA (no nvcc found at build time); rebuild "
      "with nvcc on the PATH or use --device cpu");
}
#endif

}  // namespace eaq
