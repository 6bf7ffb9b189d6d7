// Post-processing: special tokens around the sequences and their token type ids, as a template
// (Hugging Face's TemplateProcessing; BertProcessing and "no special tokens" are templates too).
#pragma once

#include <cstdint>
#include <vector>

namespace eaq::text {

struct TemplatePiece {
  enum class Kind { SequenceA, SequenceB, Special };
  Kind kind = Kind::SequenceA;
  std::vector<std::int32_t> special_ids;  // for Kind::Special
  std::int32_t type_id = 0;
};

class PostProcessor {
 public:
  // "$A:0" and "$A:0 $B:1": no special tokens (GPT-2's ByteLevel processor, or none).
  PostProcessor();
  PostProcessor(std::vector<TemplatePiece> single, std::vector<TemplatePiece> pair);
  // "[CLS]:0 $A:0 [SEP]:0" and "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1".
  static PostProcessor bert(std::int32_t cls_id, std::int32_t sep_id);

  // How many special tokens the template adds.
  std::size_t added_tokens(bool is_pair) const;
  // Writes the final ids and token type ids; `b` is null for a single sequence. Without special
  // tokens the sequences keep the template's type ids.
  void apply(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>* b,
             bool add_special_tokens, std::vector<std::int32_t>& ids,
             std::vector<std::int32_t>& type_ids) const;

 private:
  std::vector<TemplatePiece> single_;
  std::vector<TemplatePiece> pair_;
};

}  // namespace eaq::text
