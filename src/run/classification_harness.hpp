// Runs an encoder classifier over a pre-tokenized dataset the way the seed did: the whole dataset
// copied to the device once, fixed-size batches taken in turn (iteration i uses batch i mod the
// number of batches), one forward per iteration, replayed from a CUDA graph by default. Accuracy
// is computed in a separate pass outside the measured window.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "io/dataset.hpp"
#include "model/encoder.hpp"

namespace eaq::run {

struct AccuracyResult {
  std::int64_t num_correct = 0;
  std::int64_t num_samples = 0;
  double accuracy() const {
    return num_samples ? static_cast<double>(num_correct) / num_samples : 0;
  }
  std::vector<std::int64_t> predictions;  // argmax per example, in dataset order
};

class ClassificationHarness {
 public:
  // Copies the dataset to the device (rows wrap around so that every batch is a contiguous
  // slice), allocates the batch buffers, runs one forward and, with `use_graphs`, captures the
  // forward into a graph.
  ClassificationHarness(Backend& backend, EncoderModel& model, const Dataset& dataset,
                        std::int64_t batch_size, bool use_graphs);
  ~ClassificationHarness();
  ClassificationHarness(const ClassificationHarness&) = delete;
  ClassificationHarness& operator=(const ClassificationHarness&) = delete;

  std::int64_t batch_size() const { return batch_size_; }
  std::int64_t num_batches() const { return num_batches_; }
  bool uses_graph() const { return graph_ != nullptr; }

  // Enqueues iteration i: a device-to-device copy of batch i mod num_batches into the batch
  // buffers, then the forward. No host synchronization.
  void run_iteration(std::int64_t i);
  void synchronize() { backend_.synchronize(); }

  // One pass over every example (outside any measured window). Needs labels.
  AccuracyResult accuracy();

 private:
  void load_batch(std::int64_t batch_index);
  void forward();

  Backend& backend_;
  EncoderModel& model_;
  const Dataset& dataset_;
  std::int64_t batch_size_ = 0, num_batches_ = 0, seq_ = 0;
  DeviceTensor all_ids_, all_mask_, all_types_;  // [num_batches * B, L], wrapped
  EncoderBatch batch_;                           // the batch buffers the forward reads
  std::unique_ptr<CapturedGraph> graph_;
};

}  // namespace eaq::run
