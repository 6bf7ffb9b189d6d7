#include "text/bpe.hpp"

#include <queue>

#include "core/error.hpp"

namespace eaq::text {

BpeModel::BpeModel(Vocab vocab, const std::vector<BpeMerge>& merges,
                   std::optional<std::string> unk_token, bool fuse_unk, bool ignore_merges,
                   std::string_view origin)
    : vocab_(std::move(vocab)), fuse_unk_(fuse_unk), ignore_merges_(ignore_merges) {
  if (unk_token) {
    unk_id_ = vocab_.find(*unk_token);
    EAQ_CHECK(unk_id_.has_value(), "{}: the unknown token '{}' is not in the vocabulary", origin,
              *unk_token);
  }
  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const BpeMerge& merge = merges[rank];
    const auto left = vocab_.find(merge.left);
    const auto right = vocab_.find(merge.right);
    const auto merged = vocab_.find(merge.left + merge.right);
    EAQ_CHECK(left && right, "{}: merge {} ('{} {}') uses a token that is not in the vocabulary",
              origin, rank + 1, merge.left, merge.right);
    EAQ_CHECK(merged.has_value(),
              "{}: merge {} ('{} {}') makes '{}{}', which is not in the vocabulary", origin,
              rank + 1, merge.left, merge.right, merge.left, merge.right);
    merges_.insert_or_assign(pair_key(*left, *right),
                             MergeTarget{static_cast<std::uint32_t>(rank), *merged});
  }
}

const BpeModel::MergeTarget* BpeModel::find_merge(std::int32_t left, std::int32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

std::vector<std::int32_t> BpeModel::merge_word(std::string_view word) const {
  // One symbol per character; characters missing from the vocabulary become the unknown token.
  struct Symbol {
    std::int32_t id;
    int prev;
    int next;
    bool removed;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  std::int32_t pending_unk = -1;  // an unknown-token symbol not yet added
  const auto add_symbol = [&](std::int32_t id) {
    const int index = static_cast<int>(symbols.size());
    if (!symbols.empty()) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, false});
  };
  std::size_t pos = 0;
  while (pos < word.size()) {
    std::size_t length = 1;
    while (pos + length < word.size() &&
           (static_cast<unsigned char>(word[pos + length]) & 0xC0) == 0x80) {
      ++length;
    }
    const auto id = vocab_.find(word.substr(pos, length));
    pos += length;
    if (id) {
      if (pending_unk >= 0) add_symbol(pending_unk);
      pending_unk = -1;
      add_symbol(*id);
    } else if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add_symbol(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) add_symbol(pending_unk);

  // Min-heap on (rank, position). An entry is stale when its left symbol was merged away or its
  // pair no longer produces the same token.
  struct Candidate {
    std::uint32_t rank;
    int pos;
    std::int32_t new_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeTarget* m = find_merge(symbols[i].id, symbols[i + 1].id)) {
      queue.push({m->rank, static_cast<int>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<std::size_t>(top.pos)];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[static_cast<std::size_t>(left.next)];
    const MergeTarget* current = find_merge(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;

    left.id = top.new_id;
    right.removed = true;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeTarget* m =
              find_merge(symbols[static_cast<std::size_t>(left.prev)].id, left.id)) {
        queue.push({m->rank, left.prev, m->new_id});
      }
    }
    if (left.next >= 0) {
      if (const MergeTarget* m =
              find_merge(left.id, symbols[static_cast<std::size_t>(left.next)].id)) {
        queue.push({m->rank, top.pos, m->new_id});
      }
    }
  }
  std::vector<std::int32_t> ids;
  for (const Symbol& symbol : symbols) {
    if (!symbol.removed) ids.push_back(symbol.id);
  }
  return ids;
}

void BpeModel::tokenize(std::string_view word, std::vector<std::int32_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto id = vocab_.find(word)) {
      ids.push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<std::int32_t> merged = merge_word(word);
  ids.insert(ids.end(), merged.begin(), merged.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(word), std::move(merged));
  }
}

}  // namespace eaq::text
