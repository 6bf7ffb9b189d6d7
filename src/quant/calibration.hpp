// A calibration: the static int8 activation scales of a model (int8-static), with what they were
// computed from, saved as JSON beside the results and reusable with --calibration-file.
//
//   {"format": "eaq.calibration", "version": 1, "precision": "int8-static",
//    "model": {"folder", "config_sha256", "weights": [{"file", "bytes", "sha256"}]},
//    "method": "max" | "percentile", "percentile": 99.99,
//    "batches": 8, "batch_size": 32, "examples": 256, "tokens": 5120, "dataset": "...",
//    "created_by": "eaq 0.1.0 (commit ...)",
//    "layers": {"layers.0.qkv": {"scale": s, "absmax": a, "observed_max": m, "values": n}, ...}}
//
// scale = absmax / 127, where absmax is the observed maximum ("max") or the percentile of the
// observed absolute values ("percentile") of the layer's input over real (unmasked) tokens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "backend/precision.hpp"
#include "model/encoder.hpp"
#include "quant/calibration_stats.hpp"
#include "quant/model_identity.hpp"

namespace eaq::quant {

struct LayerCalibration {
  float scale = 0.0f;         // what int8-static divides the layer's input by
  float absmax = 0.0f;        // the absolute value mapped to 127
  float observed_max = 0.0f;  // the largest absolute value seen
  std::uint64_t values = 0;   // how many values were observed
};

struct Calibration {
  ModelIdentity model;
  Precision precision = Precision::Int8Static;
  CalibrationMethod method = CalibrationMethod::Max;
  double percentile = 99.99;  // used by the percentile method
  std::int64_t batches = 0, batch_size = 0, examples = 0, tokens = 0;
  std::string dataset;                             // where the calibration inputs came from
  std::map<std::string, LayerCalibration> layers;  // by Linear name ("layers.0.qkv", ...)

  // The scales as EncoderModel::load takes them (every Linear of the encoder blocks quantized).
  QuantizationPlan plan() const;
};

// Writes the JSON file atomically.
void save_calibration(const Calibration& calibration, const std::filesystem::path& path);

// Reads and validates a calibration file for the model in `model_folder` and `precision`: a file
// of another format, another precision or another model (config.json or weights differ), or
// with a non-positive or non-finite scale is refused with an error naming the file and the
// difference.
Calibration load_calibration(const std::filesystem::path& path,
                             const std::filesystem::path& model_folder, Precision precision);

}  // namespace eaq::quant
