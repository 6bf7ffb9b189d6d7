#include "run/perplexity.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace eaq::run {

std::vector<PerplexityWindow> sliding_windows(std::int64_t seq_len, std::int64_t context,
                                              std::int64_t stride) {
  EAQ_CHECK(seq_len >= 2, "perplexity needs at least 2 tokens, got {}", seq_len);
  EAQ_CHECK(context >= 2, "--context {}: a window needs at least 2 tokens", context);
  EAQ_CHECK(stride >= 1, "--stride {}: must be at least 1", stride);
  EAQ_CHECK(stride <= context,
            "--stride {} is larger than --context {}: the windows would skip tokens", stride,
            context);
  std::vector<PerplexityWindow> windows;
  std::int64_t prev_end = 0;
  for (std::int64_t begin = 0; begin < seq_len; begin += stride) {
    PerplexityWindow w;
    w.begin = begin;
    w.end = std::min(begin + context, seq_len);
    w.trg_len = w.end - prev_end;
    // Labels are valid on the window's last min(trg_len, window length) tokens; the model's
    // internal shift by one drops the label of the window's first token.
    const std::int64_t valid = std::min(w.trg_len, w.end - w.begin);
    w.score_begin = std::max(w.end - valid, w.begin + 1);
    w.doc_weight = valid - 1;
    windows.push_back(w);
    prev_end = w.end;
    if (w.end == seq_len) break;
  }
  return windows;
}

PerplexityResult evaluate_perplexity(Gpt2Model& model, const std::vector<std::int32_t>& ids,
                                     std::int64_t context, std::int64_t stride) {
  const Gpt2Config& c = model.config();
  if (context == 0) context = c.positions;
  if (stride == 0) stride = std::max<std::int64_t>(1, context / 2);
  EAQ_CHECK(context <= c.positions,
            "--context {} is longer than the model's context (n_positions {})", context,
            c.positions);
  const auto n = static_cast<std::int64_t>(ids.size());
  for (std::int64_t i = 0; i < n; ++i) {
    EAQ_CHECK(ids[i] >= 0 && ids[i] < c.vocab_size,
              "perplexity: token {} has id {}, outside the model's vocabulary of {} tokens", i,
              ids[i], c.vocab_size);
  }
  PerplexityResult result;
  result.context = context;
  result.stride = stride;
  result.windows = sliding_windows(n, context, stride);
  result.token_nll.assign(static_cast<std::size_t>(n - 1), std::nan(""));

  Backend& backend = model.backend();
  for (const PerplexityWindow& w : result.windows) {
    const std::int64_t len = w.end - w.begin;
    const std::vector<std::int32_t> window(ids.begin() + w.begin, ids.begin() + w.end);
    // Row r predicts token begin + r + 1.
    const std::vector<std::int32_t> targets(ids.begin() + w.begin + 1, ids.begin() + w.end);
    DeviceTensor window_ids = backend.upload(HostTensor::from_i32({1, len}, window), DType::I32);
    DeviceTensor target_ids = backend.upload(HostTensor::from_i32({len - 1}, targets), DType::I32);
    DeviceTensor nll = backend.allocate(DType::F32, {len - 1});
    const DeviceTensor logits = model.forward_logits(window_ids);
    backend.token_nll(logits.rows(0, len - 1), target_ids, nll);
    const HostTensor host_nll = backend.download(nll);
    backend.release(window_ids);
    backend.release(target_ids);
    backend.release(nll);

    double window_sum = 0.0;
    for (std::int64_t g = w.score_begin; g < w.end; ++g) {
      const double value = host_nll.data<float>()[g - 1 - w.begin];
      EAQ_CHECK(std::isfinite(value), "perplexity: the NLL of token {} is not finite ({})", g,
                value);
      result.token_nll[static_cast<std::size_t>(g - 1)] = value;
      window_sum += value;
    }
    const std::int64_t scored = w.end - w.score_begin;
    if (scored == 0) continue;  // a one-token window (stride == context): nothing to predict
    result.exact_nll_sum += window_sum;
    result.exact_tokens += scored;
    result.doc_nll_sum +=
        window_sum / static_cast<double>(scored) * static_cast<double>(w.doc_weight);
    result.doc_tokens += w.doc_weight;
  }
  result.exact_perplexity =
      std::exp(result.exact_nll_sum / static_cast<double>(result.exact_tokens));
  result.doc_perplexity =
      result.doc_tokens > 0 ? std::exp(result.doc_nll_sum / static_cast<double>(result.doc_tokens))
                            : result.exact_perplexity;
  return result;
}

double bits_per_byte(double nll_sum_nats, std::int64_t bytes) {
  EAQ_CHECK(bytes > 0, "bits per byte: the text has no bytes");
  return nll_sum_nats / std::log(2.0) / static_cast<double>(bytes);
}

}  // namespace eaq::run
