// One measured trial of an encoder classifier: the seed's pipeline (warm-up, power logging, timed
// loop with no I/O, energy, accuracy outside the window) producing one report::Result.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "io/dataset.hpp"
#include "measure/gpu_meter.hpp"
#include "measure/rapl.hpp"
#include "model/encoder.hpp"
#include "report/result.hpp"
#include "run/energy_session.hpp"

namespace eaq::run {

struct MeasureSettings {
  std::string model;    // --model as given
  std::string dataset;  // --dataset as given
  std::string device = "cuda";
  int gpu_id = 0;
  Precision precision = Precision::Fp32;
  std::int64_t batch_size = 32;
  std::int64_t num_iters = 1000;
  std::int64_t warmup_steps = 100;
  bool no_warmup = false;
  bool sync_each_iter = true;
  bool cuda_graphs = true;
  int power_sample_interval_ms = 100;
  PowerSource power_source = PowerSource::Nvml;
  double idle_seconds = 2.0;
  std::optional<double> min_duration_s;  // nullopt: "auto", 10 counter update periods
  std::string output;                    // --output as given
  int trial = 1;
  bool verbose = false;
};

// Everything a trial needs that outlives it: loaded once per precision (model) or per run.
struct TrialContext {
  Backend& backend;
  EncoderModel& model;
  const Dataset& dataset;
  const measure::GpuMeter& meter;
  const measure::RaplMeter* rapl;
  std::size_t weight_bytes;  // device memory the weights took
  std::vector<std::string> command_line;
};

report::Result run_classification_trial(const MeasureSettings& settings, TrialContext& context);

// The configuration section of a result, from the settings (one place for the flag names).
void fill_configuration(report::Result& result, const MeasureSettings& settings);

}  // namespace eaq::run
