// The tensors of each encoder architecture, under our canonical keys:
//   embeddings.word / .position / .token_type, embeddings.norm.{weight,bias}
//   layers.N.{q,k,v,o,ffn_in,ffn_out}.{weight,bias}, layers.N.{attention_norm,output_norm}.*
//   head.dense.* (DistilBERT pre_classifier or BERT pooler), head.classifier.*
#pragma once

#include <string>
#include <vector>

#include "model/encoder_config.hpp"
#include "model/weight_registry.hpp"

namespace eaq {

std::vector<WeightSpec> distilbert_weight_specs(const EncoderConfig& config);
std::vector<WeightSpec> bert_weight_specs(const EncoderConfig& config);

// The prefix under which a task model's checkpoint stores the base model ("distilbert.").
std::string encoder_base_prefix(EncoderArch arch);

// The per-layer specs shared by both architectures, given each one's naming of the same tensors.
struct EncoderLayerNames {
  std::string q, k, v, o, attention_norm, ffn_in, ffn_out, output_norm;  // contain "{}" for N
};
void append_encoder_layers(const EncoderConfig& config, const EncoderLayerNames& names,
                           std::vector<WeightSpec>& specs);

}  // namespace eaq
