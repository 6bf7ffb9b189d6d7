// DistilBERT (Sanh et al. 2019) as Hugging Face stores it: no token types, optional sinusoidal
// positions, post-LN blocks, and a pre_classifier (dense + ReLU) before the classifier.
#include "model/encoder_weights.hpp"

namespace eaq {

std::vector<WeightSpec> distilbert_weight_specs(const EncoderConfig& c) {
  std::vector<WeightSpec> specs = {
      {"embeddings.word", "embeddings.word_embeddings.weight", {c.vocab_size, c.hidden}},
      // With sinusoidal_pos_embds the table is fixed; checkpoints usually still store it.
      {"embeddings.position",
       "embeddings.position_embeddings.weight",
       {c.max_positions, c.hidden},
       true,
       c.sinusoidal_positions},
      {"embeddings.norm.weight", "embeddings.LayerNorm.weight", {c.hidden}},
      {"embeddings.norm.bias", "embeddings.LayerNorm.bias", {c.hidden}},
  };
  append_encoder_layers(
      c,
      {"transformer.layer.{}.attention.q_lin", "transformer.layer.{}.attention.k_lin",
       "transformer.layer.{}.attention.v_lin", "transformer.layer.{}.attention.out_lin",
       "transformer.layer.{}.sa_layer_norm", "transformer.layer.{}.ffn.lin1",
       "transformer.layer.{}.ffn.lin2", "transformer.layer.{}.output_layer_norm"},
      specs);
  if (c.head == EncoderHead::DistilBertClassifier) {
    specs.push_back({"head.dense.weight", "pre_classifier.weight", {c.hidden, c.hidden}, false});
    specs.push_back({"head.dense.bias", "pre_classifier.bias", {c.hidden}, false});
    specs.push_back(
        {"head.classifier.weight", "classifier.weight", {c.num_labels, c.hidden}, false});
    specs.push_back({"head.classifier.bias", "classifier.bias", {c.num_labels}, false});
  }
  return specs;
}

}  // namespace eaq
