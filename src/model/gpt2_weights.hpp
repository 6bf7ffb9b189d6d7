// The tensors of GPT-2 as Hugging Face stores them, under their Hugging Face names (without the
// "transformer." prefix of GPT2LMHeadModel checkpoints):
//   wte.weight [V, E], wpe.weight [P, E], ln_f.{weight,bias}
//   h.N.ln_1.*, h.N.attn.c_attn.{weight [E, 3E], bias}, h.N.attn.c_proj.{weight [E, E], bias},
//   h.N.ln_2.*, h.N.mlp.c_fc.{weight [E, I], bias}, h.N.mlp.c_proj.{weight [I, E], bias}
//   lm_head.weight [V, E] (outside the prefix; only when the embeddings are not tied)
// The attention and MLP weights are Conv1D weights, [in, out]: the transpose of a Linear's.
// Old checkpoints also store the attn.bias / attn.masked_bias buffers; no spec asks for them, so
// they are reported as unused.
#pragma once

#include <string>
#include <vector>

#include "model/gpt2_config.hpp"
#include "model/weight_registry.hpp"

namespace eaq {

std::vector<WeightSpec> gpt2_weight_specs(const Gpt2Config& config);

// The prefix under which GPT2LMHeadModel stores the base model.
inline const char* gpt2_base_prefix() {
  return "transformer.";
}

}  // namespace eaq
