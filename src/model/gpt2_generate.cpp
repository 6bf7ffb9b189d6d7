#include "model/gpt2_generate.hpp"

#include "core/error.hpp"

namespace eaq {

void validate_gpt2_inputs(const Gpt2Config& config, const HostTensor& ids, const HostTensor* mask,
                          bool left_padded, const std::string& source) {
  EAQ_CHECK(ids.rank() == 2, "{}: token ids must be [batch, seq], got shape {}", source,
            shape_str(ids.shape()));
  const std::int64_t seq = ids.dim(1);
  EAQ_CHECK(ids.dim(0) > 0 && seq > 0, "{}: the token ids are empty (shape {})", source,
            shape_str(ids.shape()));
  EAQ_CHECK(seq <= config.positions,
            "{}: a sequence of {} tokens is longer than the model's context (n_positions {})",
            source, seq, config.positions);
  const std::vector<std::int64_t> values = ids.to_i64();
  for (std::size_t i = 0; i < values.size(); ++i) {
    EAQ_CHECK(values[i] >= 0 && values[i] < config.vocab_size,
              "{}: token id [{}, {}] = {} is outside the model's vocabulary of {} tokens", source,
              static_cast<std::int64_t>(i) / seq, static_cast<std::int64_t>(i) % seq, values[i],
              config.vocab_size);
  }
  if (mask == nullptr) return;
  EAQ_CHECK(mask->shape() == ids.shape(), "{}: the attention mask has shape {} but the ids {}",
            source, shape_str(mask->shape()), shape_str(ids.shape()));
  const std::vector<std::int64_t> m = mask->to_i64();
  for (std::int64_t b = 0; b < ids.dim(0); ++b) {
    bool seen_token = false;
    for (std::int64_t t = 0; t < seq; ++t) {
      const std::int64_t v = m[static_cast<std::size_t>(b * seq + t)];
      EAQ_CHECK(v == 0 || v == 1, "{}: attention mask [{}, {}] = {}, expected 0 or 1", source, b, t,
                v);
      EAQ_CHECK(!left_padded || v == 1 || !seen_token,
                "{}: row {} has padding at position {} after a token; prompts must be LEFT-padded "
                "(padding first), as for Hugging Face generate()",
                source, b, t);
      seen_token = seen_token || v == 1;
    }
    EAQ_CHECK(!left_padded || seen_token, "{}: row {} is all padding (its mask has no 1)", source,
              b);
  }
}

HostTensor greedy_generate(Gpt2Model& model, const HostTensor& prompt_ids, const HostTensor* mask,
                           std::int64_t new_tokens, const GreedyOptions& options) {
  const Gpt2Config& c = model.config();
  validate_gpt2_inputs(c, prompt_ids, mask, true, "greedy_generate prompt");
  EAQ_CHECK(new_tokens >= 1, "greedy_generate: new_tokens must be at least 1, got {}", new_tokens);
  const std::int64_t batch = prompt_ids.dim(0), prompt = prompt_ids.dim(1);
  // The last token is chosen but never fed: the cache holds prompt + new_tokens - 1 positions.
  const std::int64_t capacity = prompt + new_tokens - 1;
  EAQ_CHECK(capacity <= c.positions,
            "greedy_generate: a prompt of {} tokens plus {} new tokens needs {} positions, more "
            "than the model's context (n_positions {})",
            prompt, new_tokens, capacity, c.positions);
  Backend& backend = model.backend();
  std::unique_ptr<DecodeSession> session = model.start_session(batch, capacity);
  DeviceTensor ids = backend.upload(prompt_ids, DType::I32);
  DeviceTensor device_mask = mask ? backend.upload(*mask, DType::I32) : DeviceTensor{};
  model.prefill_greedy(*session, ids, mask ? &device_mask : nullptr);
  std::unique_ptr<CapturedGraph> graph;
  if (options.use_graph && new_tokens > 1) graph = model.capture_greedy_step(*session);
  for (std::int64_t t = 1; t < new_tokens; ++t) {
    if (graph) {
      graph->launch();
    } else {
      model.greedy_step(*session);
    }
  }
  const HostTensor history = backend.download(session->tokens());
  const HostTensor last = backend.download(session->next_ids());
  backend.release(ids);
  backend.release(device_mask);

  HostTensor out = HostTensor::empty(DType::I32, {batch, new_tokens});
  auto* dst = out.mutable_data<std::int32_t>();
  for (std::int64_t b = 0; b < batch; ++b) {
    // Tokens fed by decode steps sit in cache positions prompt .. prompt + new_tokens - 2.
    for (std::int64_t t = 0; t + 1 < new_tokens; ++t) {
      dst[b * new_tokens + t] = history.data<std::int32_t>()[b * capacity + prompt + t];
    }
    dst[b * new_tokens + new_tokens - 1] = last.data<std::int32_t>()[b];
  }
  return out;
}

}  // namespace eaq
