// BERT-family encoders (DistilBERT, BERT) written once over backend ops: embeddings, post-LN
// transformer blocks, and the classification heads.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "model/encoder_config.hpp"

namespace eaq {

struct EncoderBatch {
  DeviceTensor input_ids;       // I32 [B, L]
  DeviceTensor attention_mask;  // I32 [B, L], 1 = token, 0 = padding
  DeviceTensor token_type_ids;  // I32 [B, L]; data == nullptr means all zeros
};

struct EncoderOutputs {
  DeviceTensor logits;  // [B, num_labels] for classifiers; empty otherwise
  DeviceTensor hidden;  // [B * L, hidden]: the last hidden state
  DeviceTensor pooled;  // [B, hidden]: BERT's pooler output when the model has a pooler
};

// Which Linear layers hold quantized weights, and the calibrated scales for int8-static.
struct QuantizationPlan {
  bool encoder_linears = true;  // every Linear inside the transformer blocks
  bool head = false;            // pre_classifier / pooler / classifier
  // int8-static: absmax / 127 of each Linear's input, by layer name; empty otherwise.
  std::map<std::string, float> static_input_scales;
};

struct LinearReport {
  std::string name;
  std::string kernel;
  std::int64_t in_features = 0, out_features = 0;
};

class EncoderModel {
 public:
  static std::unique_ptr<EncoderModel> load(const std::filesystem::path& dir, Backend& backend,
                                            const QuantizationPlan& plan = {});
  ~EncoderModel();
  EncoderModel(const EncoderModel&) = delete;
  EncoderModel& operator=(const EncoderModel&) = delete;

  const EncoderConfig& config() const { return config_; }
  const std::filesystem::path& folder() const { return folder_; }

  // Runs the model on the backend's stream. Outputs view buffers owned by the model, valid until
  // the next forward. Buffers are allocated on the first call for a given [B, L] (so run once
  // before capturing a graph).
  EncoderOutputs forward(const EncoderBatch& batch);
  // The outputs of the last forward (also valid after replaying a graph captured from one).
  const EncoderOutputs& last_outputs() const { return last_outputs_; }

  std::int64_t num_parameters() const { return num_parameters_; }
  std::size_t stored_bytes() const { return stored_bytes_; }  // in the checkpoint
  DType stored_dtype() const { return stored_dtype_; }
  const std::vector<LinearReport>& linear_layers() const { return linear_reports_; }
  const std::vector<std::string>& unused_tensors() const { return unused_tensors_; }

 private:
  struct Layer;
  struct Workspace;
  explicit EncoderModel(Backend& backend);
  void ensure_workspace(std::int64_t batch, std::int64_t seq);
  void release_workspace();

  Backend& backend_;
  std::filesystem::path folder_;
  EncoderConfig config_;
  std::vector<DeviceTensor> owned_;  // every device buffer of weights, released at destruction
  DeviceTensor word_embeddings_, position_embeddings_, type_embeddings_;
  DeviceTensor embeddings_norm_weight_, embeddings_norm_bias_;
  std::vector<Layer> layers_;
  std::unique_ptr<LinearWeights> head_dense_, classifier_;
  std::unique_ptr<Workspace> workspace_;
  EncoderOutputs last_outputs_;
  std::int64_t num_parameters_ = 0;
  std::size_t stored_bytes_ = 0;
  DType stored_dtype_ = DType::F32;
  std::vector<LinearReport> linear_reports_;
  std::vector<std::string> unused_tensors_;
};

// Checks host-side inputs against the model before they reach a device: ids inside the
// vocabulary, sequence length inside max_position_embeddings, token types inside
// type_vocab_size, a mask of 0/1. `source` names where the inputs came from, for messages.
void validate_encoder_inputs(const EncoderConfig& config, const HostTensor& input_ids,
                             const HostTensor* attention_mask, const HostTensor* token_type_ids,
                             const std::string& source);

// Hugging Face's fixed sinusoidal position table (DistilBERT's sinusoidal_pos_embds).
HostTensor sinusoidal_position_table(std::int64_t positions, std::int64_t dim);

}  // namespace eaq
