#include "model/encoder_weights.hpp"

#include <fmt/format.h>

namespace eaq {

void append_encoder_layers(const EncoderConfig& c, const EncoderLayerNames& names,
                           std::vector<WeightSpec>& specs) {
  const auto linear = [&](int layer, const std::string& key, const std::string& hf,
                          std::int64_t out, std::int64_t in) {
    const std::string name = fmt::format(fmt::runtime(hf), layer);
    specs.push_back({fmt::format("layers.{}.{}.weight", layer, key), name + ".weight", {out, in}});
    specs.push_back({fmt::format("layers.{}.{}.bias", layer, key), name + ".bias", {out}});
  };
  const auto norm = [&](int layer, const std::string& key, const std::string& hf) {
    const std::string name = fmt::format(fmt::runtime(hf), layer);
    specs.push_back({fmt::format("layers.{}.{}.weight", layer, key), name + ".weight", {c.hidden}});
    specs.push_back({fmt::format("layers.{}.{}.bias", layer, key), name + ".bias", {c.hidden}});
  };
  for (int layer = 0; layer < c.layers; ++layer) {
    linear(layer, "q", names.q, c.hidden, c.hidden);
    linear(layer, "k", names.k, c.hidden, c.hidden);
    linear(layer, "v", names.v, c.hidden, c.hidden);
    linear(layer, "o", names.o, c.hidden, c.hidden);
    norm(layer, "attention_norm", names.attention_norm);
    linear(layer, "ffn_in", names.ffn_in, c.intermediate, c.hidden);
    linear(layer, "ffn_out", names.ffn_out, c.hidden, c.intermediate);
    norm(layer, "output_norm", names.output_norm);
  }
}

std::string encoder_base_prefix(EncoderArch arch) {
  return arch == EncoderArch::DistilBert ? "distilbert." : "bert.";
}

}  // namespace eaq
