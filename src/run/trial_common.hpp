// What every kind of trial writes the same way: the model and memory fields, the GEMM paths that
// ran, and provenance (system snapshots, build, command line).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "measure/gpu_meter.hpp"
#include "measure/system_info.hpp"
#include "model/encoder.hpp"
#include "report/result.hpp"

namespace eaq::run {

// num_parameters, model_size_mb, dtype, the allocator's memory figures, backend, kernel_path.
void fill_model_fields(report::Result& result, const Backend& backend,
                       const std::vector<LinearReport>& linears, std::int64_t num_parameters,
                       std::size_t weight_bytes);

// timestamps, host and GPU state at both ends, eaq version, commit, command line.
void fill_provenance(report::Result& result, const measure::SystemSnapshot& start,
                     const measure::GpuMeter& meter, const std::vector<std::string>& command_line);

}  // namespace eaq::run
