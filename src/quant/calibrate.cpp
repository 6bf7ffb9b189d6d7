#include "quant/calibrate.hpp"

#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.hpp"
#include "core/error.hpp"
#include "quant/calibrating_backend.hpp"
#include "quant/scheme.hpp"

namespace eaq::quant {

namespace {

// Rows [begin, begin + count) and columns [0, length) of an [N, L] integer tensor, as I32.
HostTensor slice_i32(const HostTensor& t, std::int64_t begin, std::int64_t count,
                     std::int64_t length) {
  const std::vector<std::int64_t> values = t.to_i64();
  const std::int64_t cols = t.dim(1);
  std::vector<std::int32_t> out(static_cast<std::size_t>(count * length));
  for (std::int64_t r = 0; r < count; ++r) {
    for (std::int64_t c = 0; c < length; ++c) {
      out[static_cast<std::size_t>(r * length + c)] =
          static_cast<std::int32_t>(values[static_cast<std::size_t>((begin + r) * cols + c)]);
    }
  }
  return HostTensor::from_i32({count, length}, std::move(out));
}

}  // namespace

Calibration calibrate(const std::filesystem::path& model_folder, const CalibrationInputs& inputs,
                      const CalibrationOptions& options, Backend* backend) {
  const std::string& source =
      options.dataset.empty() ? std::string("calibration data") : options.dataset;
  EAQ_CHECK(inputs.input_ids != nullptr, "{}: no input_ids to calibrate with", source);
  const HostTensor& ids = *inputs.input_ids;
  EAQ_CHECK(options.batch_size > 0, "--batch-size {} for calibration must be > 0",
            options.batch_size);
  EAQ_CHECK(options.batches >= 0, "--calibration-batches {} must be >= 0 (0 = all the data)",
            options.batches);
  EAQ_CHECK(options.method != CalibrationMethod::Percentile ||
                (options.percentile > 0.0 && options.percentile <= 100.0),
            "--calibration-percentile {} must be in (0, 100]", options.percentile);
  EAQ_CHECK(ids.rank() == 2 && ids.dim(0) > 0 && ids.dim(1) > 0,
            "{}: input_ids must be [examples, length] with both > 0, not {}", source,
            shape_str(ids.shape()));

  std::unique_ptr<Backend> own_backend;
  if (backend == nullptr) {
    own_backend = make_cpu_backend(Precision::Fp32);
    backend = own_backend.get();
  }
  EAQ_CHECK(backend->precision() == Precision::Fp32,
            "calibration runs the model in fp32, not on a {} backend",
            precision_name(backend->precision()));
  CalibratingBackend recorder(*backend);
  auto model = EncoderModel::load(model_folder, recorder);

  const std::int64_t available = ids.dim(0);
  const std::int64_t wanted =
      options.batches == 0 ? available : options.batches * options.batch_size;
  EAQ_CHECK(wanted <= available,
            "{}: {} calibration batches of {} need {} examples, but it has only {}; lower "
            "--calibration-batches or --batch-size",
            source, options.batches, options.batch_size, wanted, available);
  // Datasets tokenized for the BERT family carry all-zero token types, which a model without
  // token type embeddings (DistilBERT) simply does not use.
  const HostTensor* token_types = inputs.token_type_ids;
  if (token_types != nullptr && model->config().type_vocab_size == 0) {
    const std::vector<std::int64_t> types = token_types->to_i64();
    if (std::all_of(types.begin(), types.end(), [](std::int64_t t) { return t == 0; })) {
      token_types = nullptr;
    }
  }
  validate_encoder_inputs(model->config(), ids, inputs.attention_mask, token_types, source);

  Calibration calibration;
  calibration.method = options.method;
  calibration.percentile = options.percentile;
  calibration.batch_size = options.batch_size;
  calibration.dataset = options.dataset;
  const std::int64_t full_length = ids.dim(1);
  const std::vector<std::int64_t> mask =
      inputs.attention_mask ? inputs.attention_mask->to_i64() : std::vector<std::int64_t>{};
  for (std::int64_t begin = 0; begin < wanted; begin += options.batch_size) {
    const std::int64_t count = std::min(options.batch_size, wanted - begin);
    // Crop trailing padding: the longest real sequence in the batch.
    std::int64_t length = 1;
    if (inputs.attention_mask) {
      for (std::int64_t r = begin; r < begin + count; ++r) {
        for (std::int64_t c = full_length - 1; c >= length; --c) {
          if (mask[static_cast<std::size_t>(r * full_length + c)] != 0) {
            length = c + 1;
            break;
          }
        }
      }
    } else {
      length = full_length;
    }
    const HostTensor batch_ids = slice_i32(ids, begin, count, length);
    const HostTensor batch_mask =
        inputs.attention_mask
            ? slice_i32(*inputs.attention_mask, begin, count, length)
            : HostTensor::from_i32(
                  {count, length},
                  std::vector<std::int32_t>(static_cast<std::size_t>(count * length), 1));
    std::vector<std::uint8_t> token_mask(static_cast<std::size_t>(count * length));
    for (std::size_t t = 0; t < token_mask.size(); ++t) {
      token_mask[t] = batch_mask.data<std::int32_t>()[t] != 0;
      calibration.tokens += token_mask[t];
    }
    recorder.set_token_mask(std::move(token_mask));
    EncoderBatch batch;
    batch.input_ids = backend->upload(batch_ids, DType::I32);
    batch.attention_mask = backend->upload(batch_mask, DType::I32);
    if (token_types) {
      batch.token_type_ids =
          backend->upload(slice_i32(*token_types, begin, count, length), DType::I32);
    }
    model->forward(batch);
    backend->synchronize();
    backend->release(batch.input_ids);
    backend->release(batch.attention_mask);
    backend->release(batch.token_type_ids);
    ++calibration.batches;
    calibration.examples += count;
  }

  for (const auto& [name, histogram] : recorder.statistics()) {
    LayerCalibration layer;
    layer.observed_max = histogram.max();
    layer.absmax = calibrated_absmax(histogram, options.method, options.percentile);
    layer.values = histogram.count();
    EAQ_CHECK(layer.absmax > 0.0f,
              "{}: layer {} saw only zeros during calibration; cannot derive a scale", source,
              name);
    layer.scale = scale_for(layer.absmax, kInt8Max);
    calibration.layers.emplace(name, layer);
  }
  calibration.model = identify_model(model_folder);
  return calibration;
}

}  // namespace eaq::quant
