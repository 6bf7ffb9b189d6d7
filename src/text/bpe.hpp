// Byte-pair encoding (GPT-2): a word starts as one symbol per character; the adjacent pair with the
// lowest merge rank (leftmost on ties) is merged until no pair has a merge. This is the algorithm
// of Hugging Face's Rust BPE (a priority queue over pairs), which gives GPT-2's results. Results
// for short words are cached.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "text/vocab.hpp"

namespace eaq::text {

struct BpeMerge {
  std::string left;
  std::string right;
};

class BpeModel {
 public:
  // `merges` in rank order. `origin` names the files for error messages. With an unknown token,
  // characters missing from the vocabulary become it (runs fused when fuse_unk); without one they
  // are dropped, as Hugging Face does.
  BpeModel(Vocab vocab, const std::vector<BpeMerge>& merges, std::optional<std::string> unk_token,
           bool fuse_unk, bool ignore_merges, std::string_view origin);

  // Appends the ids of one pre-tokenized word (already byte-level encoded for GPT-2).
  void tokenize(std::string_view word, std::vector<std::int32_t>& ids) const;

  const Vocab& vocab() const { return vocab_; }
  std::size_t merge_count() const { return merges_.size(); }

 private:
  struct MergeTarget {
    std::uint32_t rank;
    std::int32_t new_id;
  };
  static std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
           static_cast<std::uint32_t>(right);
  }
  const MergeTarget* find_merge(std::int32_t left, std::int32_t right) const;
  std::vector<std::int32_t> merge_word(std::string_view word) const;

  Vocab vocab_;
  std::unordered_map<std::uint64_t, MergeTarget> merges_;
  std::optional<std::int32_t> unk_id_;
  bool fuse_unk_;
  bool ignore_merges_;

  static constexpr std::size_t kCacheCapacity = 10000;
  static constexpr std::size_t kCacheMaxWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache_;
};

}  // namespace eaq::text
