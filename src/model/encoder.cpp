#include "model/encoder.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/json_file.hpp"
#include "model/encoder_weights.hpp"
#include "model/model_linear.hpp"

namespace eaq {

struct EncoderModel::Layer {
  std::unique_ptr<LinearWeights> qkv;  // q, k and v fused: [3 * hidden, hidden]
  std::unique_ptr<LinearWeights> o, ffn_in, ffn_out;
  DeviceTensor attention_norm_weight, attention_norm_bias;
  DeviceTensor output_norm_weight, output_norm_bias;
};

// Activation buffers for one [B, L]; graphs captured over them stay valid while it lives.
struct EncoderModel::Workspace {
  std::int64_t batch = 0, seq = 0;
  DeviceTensor position_ids;  // I32 [B * L]: t mod L
  DeviceTensor cls_index;     // I32 [B]: b * L
  DeviceTensor zero_types;    // I32 [B * L] zeros, for BERT called without token types
  DeviceTensor hidden, qkv, context, projected, ffn;
  DeviceTensor cls, head_hidden, logits;
};

HostTensor sinusoidal_position_table(std::int64_t positions, std::int64_t dim) {
  // Hugging Face's create_sinusoidal_embeddings: even columns sin, odd columns cos, with the
  // frequency of column j set by 2 * (j / 2) / dim.
  HostTensor table = HostTensor::empty(DType::F32, {positions, dim});
  float* out = table.mutable_data<float>();
  for (std::int64_t pos = 0; pos < positions; ++pos) {
    for (std::int64_t j = 0; j < dim; ++j) {
      const double angle =
          static_cast<double>(pos) /
          std::pow(10000.0, 2.0 * static_cast<double>(j / 2) / static_cast<double>(dim));
      out[pos * dim + j] = static_cast<float>(j % 2 == 0 ? std::sin(angle) : std::cos(angle));
    }
  }
  return table;
}

namespace {

// Concatenates [out_i, in] matrices (or [out_i] vectors) along dimension 0, as F32.
HostTensor concat_rows(const std::vector<const HostTensor*>& parts) {
  std::int64_t rows = 0;
  for (const HostTensor* part : parts) rows += part->dim(0);
  Shape shape = parts.front()->shape();
  shape[0] = rows;
  HostTensor out = HostTensor::empty(DType::F32, shape);
  std::size_t offset = 0;
  for (const HostTensor* part : parts) {
    const HostTensor converted = part->to_f32();
    std::memcpy(out.mutable_data<char>() + offset, converted.raw(), converted.nbytes());
    offset += converted.nbytes();
  }
  return out;
}

}  // namespace

std::unique_ptr<EncoderModel> EncoderModel::load(const std::filesystem::path& dir, Backend& backend,
                                                 const QuantizationPlan& plan) {
  const std::filesystem::path config_path = dir / "config.json";
  EAQ_CHECK(std::filesystem::exists(config_path), "{}: no config.json in the model folder",
            dir.string());
  std::unique_ptr<EncoderModel> model(new EncoderModel(backend));
  model->folder_ = dir;
  model->config_ = parse_encoder_config(read_json_file(config_path), config_path);
  const EncoderConfig& c = model->config_;

  const Checkpoint checkpoint = Checkpoint::open_folder(dir);
  const std::vector<WeightSpec> specs =
      c.arch == EncoderArch::DistilBert ? distilbert_weight_specs(c) : bert_weight_specs(c);
  const LoadedWeights weights = LoadedWeights::load(
      checkpoint, specs, encoder_base_prefix(c.arch),
      fmt::format("config.json of a {} with hidden {}, {} layers, intermediate {}, vocab {}",
                  c.architecture, c.hidden, c.layers, c.intermediate, c.vocab_size));
  model->num_parameters_ = weights.num_parameters();
  model->stored_bytes_ = weights.stored_bytes();
  model->stored_dtype_ = weights.stored_dtype();
  model->unused_tensors_ = weights.unused();

  const DType act = backend.activation_dtype();
  const auto upload = [&](const HostTensor& host, DType dtype) {
    model->owned_.push_back(backend.upload(host, dtype));
    return model->owned_.back();
  };
  const auto linear = [&](const std::string& name, const HostTensor& w, const HostTensor* b,
                          bool quantize) {
    return prepare_model_linear(backend, plan, name, w, b, quantize, model->linear_reports_);
  };

  model->word_embeddings_ = upload(weights.get("embeddings.word"), act);
  if (weights.has("embeddings.position")) {
    model->position_embeddings_ = upload(weights.get("embeddings.position"), act);
  } else {
    EAQ_ASSERT(c.sinusoidal_positions);
    model->position_embeddings_ = upload(sinusoidal_position_table(c.max_positions, c.hidden), act);
  }
  if (c.type_vocab_size > 0) {
    model->type_embeddings_ = upload(weights.get("embeddings.token_type"), act);
  }
  model->embeddings_norm_weight_ = upload(weights.get("embeddings.norm.weight"), DType::F32);
  model->embeddings_norm_bias_ = upload(weights.get("embeddings.norm.bias"), DType::F32);

  for (std::int64_t i = 0; i < c.layers; ++i) {
    const auto key = [&](const char* what) { return fmt::format("layers.{}.{}", i, what); };
    Layer layer;
    const HostTensor qkv_weight =
        concat_rows({&weights.get(key("q.weight")), &weights.get(key("k.weight")),
                     &weights.get(key("v.weight"))});
    const HostTensor qkv_bias = concat_rows(
        {&weights.get(key("q.bias")), &weights.get(key("k.bias")), &weights.get(key("v.bias"))});
    layer.qkv = linear(key("qkv"), qkv_weight, &qkv_bias, plan.encoder_linears);
    layer.o = linear(key("o"), weights.get(key("o.weight")), &weights.get(key("o.bias")),
                     plan.encoder_linears);
    layer.ffn_in = linear(key("ffn_in"), weights.get(key("ffn_in.weight")),
                          &weights.get(key("ffn_in.bias")), plan.encoder_linears);
    layer.ffn_out = linear(key("ffn_out"), weights.get(key("ffn_out.weight")),
                           &weights.get(key("ffn_out.bias")), plan.encoder_linears);
    layer.attention_norm_weight = upload(weights.get(key("attention_norm.weight")), DType::F32);
    layer.attention_norm_bias = upload(weights.get(key("attention_norm.bias")), DType::F32);
    layer.output_norm_weight = upload(weights.get(key("output_norm.weight")), DType::F32);
    layer.output_norm_bias = upload(weights.get(key("output_norm.bias")), DType::F32);
    model->layers_.push_back(std::move(layer));
  }
  if (weights.has("head.dense.weight")) {
    model->head_dense_ =
        linear(c.arch == EncoderArch::DistilBert ? "pre_classifier" : "pooler",
               weights.get("head.dense.weight"), &weights.get("head.dense.bias"), plan.head);
  }
  if (c.head != EncoderHead::None) {
    model->classifier_ = linear("classifier", weights.get("head.classifier.weight"),
                                &weights.get("head.classifier.bias"), plan.head);
  }
  return model;
}

EncoderModel::EncoderModel(Backend& backend) : backend_(backend) {}

EncoderModel::~EncoderModel() {
  release_workspace();
  for (DeviceTensor& t : owned_) backend_.release(t);
}

void EncoderModel::release_workspace() {
  if (!workspace_) return;
  for (DeviceTensor* t :
       {&workspace_->position_ids, &workspace_->cls_index, &workspace_->zero_types,
        &workspace_->hidden, &workspace_->qkv, &workspace_->context, &workspace_->projected,
        &workspace_->ffn, &workspace_->cls, &workspace_->head_hidden, &workspace_->logits}) {
    backend_.release(*t);
  }
  workspace_.reset();
}

void EncoderModel::ensure_workspace(std::int64_t batch, std::int64_t seq) {
  if (workspace_ && workspace_->batch == batch && workspace_->seq == seq) return;
  release_workspace();
  const EncoderConfig& c = config_;
  const DType act = backend_.activation_dtype();
  const std::int64_t tokens = batch * seq;
  auto ws = std::make_unique<Workspace>();
  ws->batch = batch;
  ws->seq = seq;
  std::vector<std::int32_t> positions(static_cast<std::size_t>(tokens));
  for (std::int64_t t = 0; t < tokens; ++t) positions[t] = static_cast<std::int32_t>(t % seq);
  std::vector<std::int32_t> cls(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) cls[b] = static_cast<std::int32_t>(b * seq);
  ws->position_ids = backend_.upload(HostTensor::from_i32({tokens}, positions), DType::I32);
  ws->cls_index = backend_.upload(HostTensor::from_i32({batch}, cls), DType::I32);
  if (c.type_vocab_size > 0) {
    ws->zero_types = backend_.upload(HostTensor::empty(DType::I32, {tokens}), DType::I32);
  }
  ws->hidden = backend_.allocate(act, {tokens, c.hidden});
  ws->qkv = backend_.allocate(act, {tokens, 3 * c.hidden});
  ws->context = backend_.allocate(act, {tokens, c.hidden});
  ws->projected = backend_.allocate(act, {tokens, c.hidden});
  ws->ffn = backend_.allocate(act, {tokens, c.intermediate});
  ws->cls = backend_.allocate(act, {batch, c.hidden});
  ws->head_hidden = backend_.allocate(act, {batch, c.hidden});
  if (c.num_labels > 0) ws->logits = backend_.allocate(act, {batch, c.num_labels});
  workspace_ = std::move(ws);
}

EncoderOutputs EncoderModel::forward(const EncoderBatch& batch) {
  const EncoderConfig& c = config_;
  EAQ_ASSERT(batch.input_ids.rank() == 2);
  const std::int64_t b = batch.input_ids.dim(0);
  const std::int64_t seq = batch.input_ids.dim(1);
  EAQ_CHECK(seq <= c.max_positions, "sequence length {} exceeds max_position_embeddings {}", seq,
            c.max_positions);
  ensure_workspace(b, seq);
  Workspace& ws = *workspace_;
  const std::int64_t tokens = b * seq;
  const DType act = backend_.activation_dtype();
  const std::size_t element = dtype_size(act);

  const DeviceTensor ids = batch.input_ids.reshaped({tokens});
  const DeviceTensor types =
      batch.token_type_ids.data ? batch.token_type_ids.reshaped({tokens}) : DeviceTensor{};
  // BERT without token_type_ids uses type 0 everywhere, as Hugging Face does.
  const DeviceTensor* types_or_zeros = types.data ? &types : &ws.zero_types;
  const bool use_types = c.type_vocab_size > 0;
  backend_.embed(ids, word_embeddings_, &ws.position_ids, &position_embeddings_,
                 use_types ? types_or_zeros : nullptr, use_types ? &type_embeddings_ : nullptr,
                 ws.hidden);

  AttentionArgs attention;
  attention.q = ws.qkv.data;
  attention.k = static_cast<char*>(ws.qkv.data) + c.hidden * element;
  attention.v = static_cast<char*>(ws.qkv.data) + 2 * c.hidden * element;
  attention.out = ws.context.data;
  attention.q_batch_stride = attention.kv_batch_stride = seq * 3 * c.hidden;
  attention.q_row_stride = attention.kv_row_stride = 3 * c.hidden;
  attention.out_batch_stride = seq * c.hidden;
  attention.out_row_stride = c.hidden;
  attention.key_mask = static_cast<const std::int32_t*>(batch.attention_mask.data);
  attention.mask_batch_stride = seq;
  attention.batch = b;
  attention.q_len = attention.kv_len = seq;
  attention.heads = c.heads;
  attention.head_dim = c.head_dim();
  attention.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim()));

  // Each LayerNorm that feeds a block's QKV projection runs fused with it, and the feed-forward
  // pair runs as one op, so that quantized backends can quantize those inputs inside the
  // producing kernels (Backend::layer_norm_linear, Backend::feed_forward).
  if (layers_.empty()) {
    backend_.layer_norm(ws.hidden, nullptr, embeddings_norm_weight_, embeddings_norm_bias_,
                        c.layer_norm_eps, ws.hidden);
  } else {
    backend_.layer_norm_linear(ws.hidden, nullptr, embeddings_norm_weight_, embeddings_norm_bias_,
                               c.layer_norm_eps, ws.hidden, *layers_.front().qkv, Activation::None,
                               ws.qkv);
  }
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = layers_[i];
    backend_.attention(attention);
    backend_.linear(ws.context, *layer.o, Activation::None, ws.projected);
    backend_.layer_norm(ws.projected, &ws.hidden, layer.attention_norm_weight,
                        layer.attention_norm_bias, c.layer_norm_eps, ws.hidden);
    backend_.feed_forward(ws.hidden, *layer.ffn_in, c.activation, ws.ffn, *layer.ffn_out,
                          ws.projected);
    if (i + 1 < layers_.size()) {
      backend_.layer_norm_linear(ws.projected, &ws.hidden, layer.output_norm_weight,
                                 layer.output_norm_bias, c.layer_norm_eps, ws.hidden,
                                 *layers_[i + 1].qkv, Activation::None, ws.qkv);
    } else {
      backend_.layer_norm(ws.projected, &ws.hidden, layer.output_norm_weight,
                          layer.output_norm_bias, c.layer_norm_eps, ws.hidden);
    }
  }

  EncoderOutputs outputs;
  outputs.hidden = ws.hidden;
  if (head_dense_) {
    backend_.gather_rows(ws.hidden, ws.cls_index, ws.cls);
    const Activation head_activation =
        c.arch == EncoderArch::DistilBert ? Activation::Relu : Activation::Tanh;
    backend_.linear(ws.cls, *head_dense_, head_activation, ws.head_hidden);
    if (c.arch == EncoderArch::Bert) outputs.pooled = ws.head_hidden;
  }
  if (classifier_) {
    backend_.linear(ws.head_hidden, *classifier_, Activation::None, ws.logits);
    outputs.logits = ws.logits;
  }
  last_outputs_ = outputs;
  return outputs;
}

void validate_encoder_inputs(const EncoderConfig& config, const HostTensor& input_ids,
                             const HostTensor* attention_mask, const HostTensor* token_type_ids,
                             const std::string& source) {
  EAQ_CHECK(input_ids.rank() == 2, "{}: input_ids must be [batch, seq], got shape {}", source,
            shape_str(input_ids.shape()));
  const std::int64_t seq = input_ids.dim(1);
  EAQ_CHECK(input_ids.dim(0) > 0 && seq > 0, "{}: input_ids is empty (shape {})", source,
            shape_str(input_ids.shape()));
  EAQ_CHECK(seq <= config.max_positions,
            "{}: sequence length {} exceeds the model's max_position_embeddings {}", source, seq,
            config.max_positions);
  const std::vector<std::int64_t> ids = input_ids.to_i64();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EAQ_CHECK(ids[i] >= 0 && ids[i] < config.vocab_size,
              "{}: input_ids[{}, {}] = {} is outside the model's vocabulary of {} tokens", source,
              static_cast<std::int64_t>(i) / seq, static_cast<std::int64_t>(i) % seq, ids[i],
              config.vocab_size);
  }
  if (attention_mask) {
    EAQ_CHECK(attention_mask->shape() == input_ids.shape(),
              "{}: attention_mask has shape {} but input_ids has {}", source,
              shape_str(attention_mask->shape()), shape_str(input_ids.shape()));
    for (std::int64_t value : attention_mask->to_i64()) {
      EAQ_CHECK(value == 0 || value == 1, "{}: attention_mask holds {}, expected 0 or 1", source,
                value);
    }
  }
  if (token_type_ids) {
    EAQ_CHECK(token_type_ids->shape() == input_ids.shape(),
              "{}: token_type_ids has shape {} but input_ids has {}", source,
              shape_str(token_type_ids->shape()), shape_str(input_ids.shape()));
    for (std::int64_t value : token_type_ids->to_i64()) {
      // Tokenizers of the BERT family write all-zero token types for single sentences; a model
      // without token type embeddings (DistilBERT) ignores those, but not real segment ids.
      EAQ_CHECK(config.type_vocab_size > 0 || value == 0,
                "{}: token_type_ids holds {}, but {} has no token type embeddings", source, value,
                config.architecture);
      if (config.type_vocab_size == 0) continue;
      EAQ_CHECK(value >= 0 && value < config.type_vocab_size,
                "{}: token_type_ids holds {}, outside type_vocab_size {}", source, value,
                config.type_vocab_size);
    }
  }
}

}  // namespace eaq
