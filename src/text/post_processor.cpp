#include "text/post_processor.hpp"

namespace eaq::text {

using Kind = TemplatePiece::Kind;

PostProcessor::PostProcessor()
    : single_{{Kind::SequenceA, {}, 0}},
      pair_{{Kind::SequenceA, {}, 0}, {Kind::SequenceB, {}, 1}} {}

PostProcessor::PostProcessor(std::vector<TemplatePiece> single, std::vector<TemplatePiece> pair)
    : single_(std::move(single)), pair_(std::move(pair)) {}

PostProcessor PostProcessor::bert(std::int32_t cls_id, std::int32_t sep_id) {
  return PostProcessor(
      {{Kind::Special, {cls_id}, 0}, {Kind::SequenceA, {}, 0}, {Kind::Special, {sep_id}, 0}},
      {{Kind::Special, {cls_id}, 0},
       {Kind::SequenceA, {}, 0},
       {Kind::Special, {sep_id}, 0},
       {Kind::SequenceB, {}, 1},
       {Kind::Special, {sep_id}, 1}});
}

std::size_t PostProcessor::added_tokens(bool is_pair) const {
  std::size_t count = 0;
  for (const TemplatePiece& piece : is_pair ? pair_ : single_) {
    if (piece.kind == Kind::Special) count += piece.special_ids.size();
  }
  return count;
}

void PostProcessor::apply(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>* b,
                          bool add_special_tokens, std::vector<std::int32_t>& ids,
                          std::vector<std::int32_t>& type_ids) const {
  ids.clear();
  type_ids.clear();
  const auto append = [&](const std::vector<std::int32_t>& values, std::int32_t type_id) {
    ids.insert(ids.end(), values.begin(), values.end());
    type_ids.insert(type_ids.end(), values.size(), type_id);
  };
  for (const TemplatePiece& piece : b != nullptr ? pair_ : single_) {
    switch (piece.kind) {
      case Kind::SequenceA:
        append(a, piece.type_id);
        break;
      case Kind::SequenceB:
        if (b != nullptr) append(*b, piece.type_id);
        break;
      case Kind::Special:
        if (add_special_tokens) append(piece.special_ids, piece.type_id);
        break;
    }
  }
}

}  // namespace eaq::text
