#include "model/gpt2_weights.hpp"

#include <fmt/format.h>

namespace eaq {

std::vector<WeightSpec> gpt2_weight_specs(const Gpt2Config& c) {
  const std::int64_t e = c.hidden;
  std::vector<WeightSpec> specs = {
      {"wte.weight", "wte.weight", {c.vocab_size, e}},
      {"wpe.weight", "wpe.weight", {c.positions, e}},
  };
  const auto add = [&](const std::string& name, Shape shape) {
    specs.push_back({name, name, std::move(shape)});
  };
  for (std::int64_t i = 0; i < c.layers; ++i) {
    const std::string h = fmt::format("h.{}.", i);
    add(h + "ln_1.weight", {e});
    add(h + "ln_1.bias", {e});
    add(h + "attn.c_attn.weight", {e, 3 * e});
    add(h + "attn.c_attn.bias", {3 * e});
    add(h + "attn.c_proj.weight", {e, e});
    add(h + "attn.c_proj.bias", {e});
    add(h + "ln_2.weight", {e});
    add(h + "ln_2.bias", {e});
    add(h + "mlp.c_fc.weight", {e, c.inner});
    add(h + "mlp.c_fc.bias", {c.inner});
    add(h + "mlp.c_proj.weight", {c.inner, e});
    add(h + "mlp.c_proj.bias", {e});
  }
  add("ln_f.weight", {e});
  add("ln_f.bias", {e});
  // With tied embeddings Hugging Face uses wte as the LM head and ignores a stored lm_head.weight.
  if (!c.tie_word_embeddings)
    specs.push_back({"lm_head.weight", "lm_head.weight", {c.vocab_size, e}, false});
  return specs;
}

}  // namespace eaq
