#include "backend/backend.hpp"

#include "core/error.hpp"

namespace eaq {

const char* activation_name(Activation activation) {
  switch (activation) {
    case Activation::None:
      return "none";
    case Activation::Gelu:
      return "gelu";
    case Activation::GeluTanh:
      return "gelu_tanh";
    case Activation::Relu:
      return "relu";
    case Activation::Tanh:
      return "tanh";
  }
  EAQ_ASSERT(false);
}

void Backend::start_decode_step(const DecodeStart& start) {
  EAQ_CHECK(start.gate == nullptr, "start_decode_step: backend {} has no step gates", name());
  mark_cache_slot(*start.slot, *start.key_mask);
  const std::int64_t batch = start.ids->numel(), capacity = start.tokens->dim(1);
  CacheWrite token;
  token.src = start.ids->data;
  token.src_batch_stride = 1;
  token.cache = start.tokens->data;
  token.cache_batch_stride = capacity;
  token.cache_row_stride = 1;
  token.capacity = capacity;
  token.start_slot = static_cast<const std::int32_t*>(start.slot->data);
  token.batch = batch;
  token.rows = 1;
  token.cols = 1;
  token.dtype = DType::I32;
  write_cache(token);
  embed(start.ids->reshaped({batch}), *start.word_table, start.positions, start.position_table,
        nullptr, nullptr, *start.hidden);
}

void Backend::layer_norm_linear(const DeviceTensor& x, const DeviceTensor* residual,
                                const DeviceTensor& gamma, const DeviceTensor& beta, float eps,
                                DeviceTensor& out, const LinearWeights& weights,
                                Activation activation, DeviceTensor& y) {
  layer_norm(x, residual, gamma, beta, eps, out);
  linear(out, weights, activation, y);
}

void Backend::layer_norm_linear_attention(const DeviceTensor& x, const DeviceTensor& gamma,
                                          const DeviceTensor& beta, float eps, DeviceTensor& normed,
                                          const LinearWeights& weights, DeviceTensor& qkv,
                                          const AttentionArgs& args,
                                          const PendingResidual* pending) {
  EAQ_CHECK(pending == nullptr,
            "layer_norm_linear_attention: backend '{}' never leaves a residual pending", name());
  layer_norm_linear(x, nullptr, gamma, beta, eps, normed, weights, Activation::None, qkv);
  attention(args);
}

void Backend::layer_norm_mlp_pending(const DeviceTensor&, const DeviceTensor&, const DeviceTensor&,
                                     float, const LinearWeights&, Activation, const LinearWeights&,
                                     DeviceTensor&) {
  EAQ_CHECK(false, "layer_norm_mlp_pending: backend '{}' cannot leave a residual pending", name());
}

void Backend::layer_norm_attention_pending(const DeviceTensor&, const DeviceTensor&,
                                           const DeviceTensor&, float, DeviceTensor&,
                                           const LinearWeights&, DeviceTensor&,
                                           const AttentionArgs&, const LinearWeights&,
                                           DeviceTensor&) {
  EAQ_CHECK(false, "layer_norm_attention_pending: backend '{}' cannot leave a residual pending",
            name());
}

void Backend::layer_norm_linear_pending(const DeviceTensor& x, const DeviceTensor& pending,
                                        DeviceTensor& finished, const DeviceTensor& gamma,
                                        const DeviceTensor& beta, float eps, DeviceTensor& out,
                                        const LinearWeights& weights, Activation activation,
                                        DeviceTensor& y) {
  finish_pending(x, pending, finished);
  layer_norm_linear(finished, nullptr, gamma, beta, eps, out, weights, activation, y);
}

void Backend::linear_residual_zeroing(const DeviceTensor&, const LinearWeights&,
                                      const DeviceTensor&, DeviceTensor&, DeviceTensor&,
                                      DeviceTensor&) {
  EAQ_CHECK(false, "linear_residual_zeroing: backend '{}' never leaves a residual pending", name());
}

void Backend::finish_pending(const DeviceTensor&, const DeviceTensor&, DeviceTensor&) {
  EAQ_CHECK(false, "finish_pending: backend '{}' never leaves a residual pending", name());
}

void Backend::linear_residual(const DeviceTensor& x, const LinearWeights& weights,
                              const DeviceTensor& residual, DeviceTensor& scratch,
                              DeviceTensor& y) {
  linear(x, weights, Activation::None, scratch);
  add(scratch, residual, y);
}

void Backend::feed_forward(const DeviceTensor& x, const LinearWeights& first, Activation activation,
                           DeviceTensor& mid, const LinearWeights& second, DeviceTensor& y) {
  linear(x, first, activation, mid);
  linear(mid, second, Activation::None, y);
}

DeviceTensor DeviceTensor::rows(std::int64_t begin, std::int64_t count) const {
  EAQ_ASSERT(rank() >= 1 && begin >= 0 && count >= 0 && begin + count <= shape[0]);
  DeviceTensor view = *this;
  const std::int64_t row_elements = shape[0] == 0 ? 0 : numel() / shape[0];
  view.data =
      static_cast<char*>(data) + static_cast<std::size_t>(begin * row_elements) * dtype_size(dtype);
  view.shape[0] = count;
  return view;
}

DeviceTensor DeviceTensor::reshaped(Shape new_shape) const {
  EAQ_ASSERT(shape_numel(new_shape) == numel());
  DeviceTensor view = *this;
  view.shape = std::move(new_shape);
  return view;
}

}  // namespace eaq
