// Files that ship with eaq (models/, datasets/): found next to the binary in a build tree
// (build/eaq -> ../models), in an installed tree (bin/eaq -> ../share/eaq/models), under
// $EAQ_HOME, or under the current directory.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace eaq {

// The places searched for `relative` (e.g. "models/sentiment-distilbert"), in order.
std::vector<std::filesystem::path> bundled_candidates(const std::string& relative);
// The first existing candidate; throws listing every place searched.
std::filesystem::path bundled_path(const std::string& relative);

inline constexpr const char* kDefaultModel = "models/sentiment-distilbert";

}  // namespace eaq
