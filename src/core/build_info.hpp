// What this binary is: version, commit and build options (filled in by CMake).
#pragma once

namespace eaq {

struct BuildInfo {
  const char* version;
  const char* git_commit;
  const char* build_type;
  const char* cxx_compiler;
  const char* cuda_compiler;  // empty when built without CUDA
  const char* cuda_architectures;
  bool with_cuda;
  bool sanitized;
};

const BuildInfo& build_info();

}  // namespace eaq
