// Host-side helpers around Gpt2Model: input validation and greedy generation.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.hpp"
#include "model/gpt2.hpp"

namespace eaq {

// Checks host-side inputs before they reach a device: ids [B, L] non-empty and inside the
// vocabulary, L within n_positions, a mask (when given) of 0/1 with the same shape. With
// `left_padded`, every row must hold at least one token and its padding (mask 0) only on the left,
// as prefill and generation need. `source` names where the inputs came from, for messages.
void validate_gpt2_inputs(const Gpt2Config& config, const HostTensor& ids, const HostTensor* mask,
                          bool left_padded, const std::string& source);

struct GreedyOptions {
  bool use_graph = false;  // replay a captured step (capture_greedy_step) after the first token
};

// Greedy decoding of `new_tokens` tokens per row after LEFT-padded prompts (ids [B, P], mask
// [B, P] or null for all ones), as Hugging Face's generate(do_sample=False, num_beams=1): prefill,
// then one decode step per further token. Generates exactly new_tokens tokens (it does not stop at
// an end-of-text token). Returns I32 [B, new_tokens].
HostTensor greedy_generate(Gpt2Model& model, const HostTensor& prompt_ids, const HostTensor* mask,
                           std::int64_t new_tokens, const GreedyOptions& options = {});

}  // namespace eaq
