#include "run/classification_harness.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"

namespace eaq::run {
namespace {

// Rows [0, rows) of `src` [N, L] repeated cyclically into [rows_out, L]: batches never straddle
// the end of the dataset.
HostTensor wrapped_rows(const HostTensor& src, std::int64_t rows_out) {
  const std::int64_t n = src.dim(0), cols = src.dim(1);
  HostTensor out = HostTensor::empty(DType::I32, {rows_out, cols});
  const std::vector<std::int64_t> values = src.to_i64();
  for (std::int64_t r = 0; r < rows_out; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) {
      out.mutable_data<std::int32_t>()[r * cols + c] =
          static_cast<std::int32_t>(values[(r % n) * cols + c]);
    }
  }
  return out;
}

}  // namespace

ClassificationHarness::ClassificationHarness(Backend& backend, EncoderModel& model,
                                             const Dataset& dataset, std::int64_t batch_size,
                                             bool use_graphs)
    : backend_(backend), model_(model), dataset_(dataset), batch_size_(batch_size) {
  EAQ_CHECK(batch_size > 0, "--batch-size must be positive, got {}", batch_size);
  EAQ_CHECK(model.config().num_labels > 0,
            "{}: {} has no classification head; eaq measure needs a ...ForSequenceClassification "
            "model for an encoder",
            model.folder().string(), model.config().architecture);
  validate_encoder_inputs(model.config(), dataset.input_ids(), &dataset.attention_mask(),
                          dataset.token_type_ids(), dataset.path());
  const std::int64_t n = dataset.size();
  seq_ = dataset.sequence_length();
  num_batches_ = (n + batch_size - 1) / batch_size;
  const std::int64_t rows = num_batches_ * batch_size;
  all_ids_ = backend.upload(wrapped_rows(dataset.input_ids(), rows), DType::I32);
  all_mask_ = backend.upload(wrapped_rows(dataset.attention_mask(), rows), DType::I32);
  if (dataset.token_type_ids() && model.config().type_vocab_size > 0) {
    all_types_ = backend.upload(wrapped_rows(*dataset.token_type_ids(), rows), DType::I32);
  }
  batch_.input_ids = backend.allocate(DType::I32, {batch_size, seq_});
  batch_.attention_mask = backend.allocate(DType::I32, {batch_size, seq_});
  if (all_types_.data) batch_.token_type_ids = backend.allocate(DType::I32, {batch_size, seq_});

  // The first forward allocates the model's buffers for this shape; a graph captures the next.
  load_batch(0);
  model_.forward(batch_);
  backend_.synchronize();
  if (use_graphs) {
    graph_ = backend_.capture([this] { model_.forward(batch_); });
    graph_->launch();
    backend_.synchronize();
  }
}

ClassificationHarness::~ClassificationHarness() {
  graph_.reset();
  for (DeviceTensor* t : {&all_ids_, &all_mask_, &all_types_, &batch_.input_ids,
                          &batch_.attention_mask, &batch_.token_type_ids}) {
    backend_.release(*t);
  }
}

void ClassificationHarness::load_batch(std::int64_t batch_index) {
  const std::int64_t first = batch_index * batch_size_;
  backend_.copy(all_ids_.rows(first, batch_size_), batch_.input_ids);
  backend_.copy(all_mask_.rows(first, batch_size_), batch_.attention_mask);
  if (all_types_.data) backend_.copy(all_types_.rows(first, batch_size_), batch_.token_type_ids);
}

void ClassificationHarness::forward() {
  if (graph_)
    graph_->launch();
  else
    model_.forward(batch_);
}

void ClassificationHarness::run_iteration(std::int64_t i) {
  load_batch(i % num_batches_);
  forward();
}

AccuracyResult ClassificationHarness::accuracy() {
  const HostTensor* labels = dataset_.labels();
  EAQ_CHECK(labels != nullptr, "{}: the dataset has no labels", dataset_.path());
  const std::vector<std::int64_t> truth = labels->to_i64();
  const std::int64_t n = dataset_.size();
  const std::int64_t num_labels = model_.config().num_labels;
  AccuracyResult result;
  result.predictions.reserve(static_cast<std::size_t>(n));
  for (std::int64_t b = 0; b < num_batches_; ++b) {
    load_batch(b);
    forward();
    // The graph's outputs live in the model's buffers; forward() returns views of them.
    const HostTensor logits = backend_.download(model_.last_outputs().logits);
    for (std::int64_t r = 0; r < batch_size_; ++r) {
      const std::int64_t example = b * batch_size_ + r;
      if (example >= n) break;  // wrapped duplicates of the first rows
      const float* row = logits.data<float>() + r * num_labels;
      const std::int64_t predicted = std::max_element(row, row + num_labels) - row;
      result.predictions.push_back(predicted);
      EAQ_CHECK(truth[example] < num_labels,
                "{}: label {} of example {} is outside the model's {} labels", dataset_.path(),
                truth[example], example, num_labels);
      result.num_correct += predicted == truth[example];
      ++result.num_samples;
    }
  }
  return result;
}

}  // namespace eaq::run
