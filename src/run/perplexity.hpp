// Perplexity of a causal language model over a long token sequence, by Hugging Face's
// sliding-window method ("Perplexity of fixed-length models", transformers docs): windows of
// `context` tokens start every `stride` tokens; each window scores only the tokens the previous
// window did not reach, conditioned on everything before them in the window.
//
// Two numbers come out of the same per-token negative log-likelihoods (NLL):
// - exact: every token t >= 1 is scored exactly once; perplexity = exp(sum NLL / (N - 1)). This
//   is the main number (and the one bits per byte uses). With stride == context the first token
//   of each later window has nothing before it in its window and is not scored (as in the docs'
//   loop): fewer tokens are evaluated.
// - doc: the docs' own bookkeeping, which weights each window's mean NLL by its target count
//   minus one (trg_len - 1) — slightly different from exact after the first window. Reported for
//   comparison with numbers computed by that code.
#pragma once

#include <cstdint>
#include <vector>

#include "model/gpt2.hpp"

namespace eaq::run {

struct PerplexityWindow {
  std::int64_t begin = 0, end = 0;  // the window's tokens: [begin, end)
  std::int64_t trg_len = 0;         // end - (previous window's end)
  std::int64_t score_begin = 0;     // first token scored: tokens [score_begin, end)
  std::int64_t doc_weight = 0;      // the docs' num_loss_tokens: trg_len - 1
};

// The docs' window plan for seq_len tokens. Throws for seq_len < 2, context < 2, stride < 1 and
// stride > context (the docs' loop would skip tokens).
std::vector<PerplexityWindow> sliding_windows(std::int64_t seq_len, std::int64_t context,
                                              std::int64_t stride);

struct PerplexityResult {
  std::int64_t context = 0, stride = 0;
  std::vector<PerplexityWindow> windows;
  std::vector<double> token_nll;  // [N - 1]: NLL (nats) of token t + 1; NaN if not scored
  double exact_nll_sum = 0.0;
  std::int64_t exact_tokens = 0;  // tokens evaluated: N - 1 when stride < context
  double exact_perplexity = 0.0;
  double doc_nll_sum = 0.0;
  std::int64_t doc_tokens = 0;
  double doc_perplexity = 0.0;
};

// Runs the model on each window (ids checked against the vocabulary). context 0 means the model's
// n_positions; stride 0 means context / 2. context > n_positions is an error.
PerplexityResult evaluate_perplexity(Gpt2Model& model, const std::vector<std::int32_t>& ids,
                                     std::int64_t context = 0, std::int64_t stride = 0);

// Total NLL in bits per UTF-8 byte of the text it scored.
double bits_per_byte(double nll_sum_nats, std::int64_t bytes);

}  // namespace eaq::run
