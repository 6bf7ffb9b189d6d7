// BERT (Devlin et al. 2019) as Hugging Face stores it: token type embeddings, post-LN blocks, a
// pooler (dense + tanh on [CLS]) and the classifier on the pooled output.
#include "model/encoder_weights.hpp"

namespace eaq {

std::vector<WeightSpec> bert_weight_specs(const EncoderConfig& c) {
  std::vector<WeightSpec> specs = {
      {"embeddings.word", "embeddings.word_embeddings.weight", {c.vocab_size, c.hidden}},
      {"embeddings.position", "embeddings.position_embeddings.weight", {c.max_positions, c.hidden}},
      {"embeddings.token_type",
       "embeddings.token_type_embeddings.weight",
       {c.type_vocab_size, c.hidden}},
      {"embeddings.norm.weight", "embeddings.LayerNorm.weight", {c.hidden}},
      {"embeddings.norm.bias", "embeddings.LayerNorm.bias", {c.hidden}},
  };
  append_encoder_layers(
      c,
      {"encoder.layer.{}.attention.self.query", "encoder.layer.{}.attention.self.key",
       "encoder.layer.{}.attention.self.value", "encoder.layer.{}.attention.output.dense",
       "encoder.layer.{}.attention.output.LayerNorm", "encoder.layer.{}.intermediate.dense",
       "encoder.layer.{}.output.dense", "encoder.layer.{}.output.LayerNorm"},
      specs);
  if (c.bert_pooler) {
    // A bare BertModel saved without its pooler still loads: the pooler is optional there.
    const bool optional = c.head == EncoderHead::None;
    specs.push_back(
        {"head.dense.weight", "pooler.dense.weight", {c.hidden, c.hidden}, true, optional});
    specs.push_back({"head.dense.bias", "pooler.dense.bias", {c.hidden}, true, optional});
  }
  if (c.head == EncoderHead::BertClassifier) {
    specs.push_back(
        {"head.classifier.weight", "classifier.weight", {c.num_labels, c.hidden}, false});
    specs.push_back({"head.classifier.bias", "classifier.bias", {c.num_labels}, false});
  }
  return specs;
}

}  // namespace eaq
