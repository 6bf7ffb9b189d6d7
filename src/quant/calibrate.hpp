// The calibration pass of int8-static: run the model in fp32 over calibration batches, record
// the input statistics of every Linear layer (CalibratingBackend) and turn them into per-tensor
// activation scales.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "backend/backend.hpp"
#include "quant/calibration.hpp"

namespace eaq::quant {

struct CalibrationOptions {
  CalibrationMethod method = CalibrationMethod::Max;
  double percentile = 99.99;  // for CalibrationMethod::Percentile, in (0, 100]
  std::int64_t batches = 8;   // how many batches to run; 0 = the whole dataset
  std::int64_t batch_size = 32;
  std::string dataset;  // a description of the data, recorded in the file
};

// Calibration inputs: pre-tokenized [N, L] tensors (I32 or I64), e.g. a Dataset's.
struct CalibrationInputs {
  const HostTensor* input_ids = nullptr;
  const HostTensor* attention_mask = nullptr;  // null: every token is real
  const HostTensor* token_type_ids = nullptr;  // null: all zeros
};

// Runs the model in `model_folder` in fp32 on `backend` (which must be an fp32 backend; by
// default a CPU one) over the first batches * batch_size examples of `inputs`, each batch cropped
// to its longest real sequence. Inputs that do not fit the model (ids outside the vocabulary,
// sequences longer than its positions, a mask of other values than 0/1) are refused, naming
// options.dataset.
Calibration calibrate(const std::filesystem::path& model_folder, const CalibrationInputs& inputs,
                      const CalibrationOptions& options, Backend* backend = nullptr);

}  // namespace eaq::quant
