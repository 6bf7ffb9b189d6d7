#include "text/vocab.hpp"

#include "core/error.hpp"

namespace eaq::text {

void Vocab::add(std::string token, std::int32_t id, std::string_view origin) {
  EAQ_CHECK(id >= 0, "{}: token '{}' has a negative id {}", origin, token, id);
  const auto index = static_cast<std::size_t>(id);
  if (index >= tokens_.size()) tokens_.resize(index + 1);
  EAQ_CHECK(!tokens_[index].has_value(), "{}: id {} is given to both '{}' and '{}'", origin, id,
            *tokens_[index], token);
  tokens_[index] = token;
  ids_.insert_or_assign(std::move(token), id);
}

std::optional<std::int32_t> Vocab::find(std::string_view token) const {
  const auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

const std::string* Vocab::token(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size()) return nullptr;
  const auto& slot = tokens_[static_cast<std::size_t>(id)];
  return slot ? &*slot : nullptr;
}

}  // namespace eaq::text
