// A token vocabulary: token string (UTF-8) <-> id.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace eaq::text {

class Vocab {
 public:
  // Adds a token. A token seen again takes the new id (as Hugging Face loads a vocab.txt with a
  // repeated line); an id given twice throws eaq::Error (`origin` names the file).
  void add(std::string token, std::int32_t id, std::string_view origin);

  std::optional<std::int32_t> find(std::string_view token) const;
  bool contains(std::string_view token) const { return find(token).has_value(); }
  // The token of an id, or nullptr when no token has that id.
  const std::string* token(std::int32_t id) const;
  std::size_t size() const { return ids_.size(); }
  // One more than the largest id (0 when empty): the embedding rows a model needs.
  std::int32_t id_bound() const { return static_cast<std::int32_t>(tokens_.size()); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::int32_t, Hash, std::equal_to<>> ids_;
  std::vector<std::optional<std::string>> tokens_;  // indexed by id
};

}  // namespace eaq::text
