// Choosing which examples go into a dataset: a deterministic shuffle, an equal number per label,
// a limit. The same options give the same selection on every platform (the shuffle uses
// std::mt19937_64, whose output the standard fixes, and no library distribution).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/text_examples.hpp"

namespace eaq {

struct SelectionOptions {
  std::optional<std::uint64_t> shuffle_seed;  // shuffle first (Fisher-Yates)
  bool balance = false;                       // the same count for every label
  std::size_t limit = 0;                      // 0: no limit
};

// The selected examples, in shuffled (or file) order. Errors: --balance without labels, a limit
// larger than what is available, a balanced limit that is not a multiple of the label count or
// that a label cannot fill.
std::vector<TextExample> select_examples(std::vector<TextExample> examples,
                                         const SelectionOptions& options);

// "all", or e.g. "shuffle seed 0, balanced, first 50": for messages and metadata.
std::string describe_selection(const SelectionOptions& options);

// Fisher-Yates with unbiased bounded draws from mt19937_64(seed); exposed for tests.
void deterministic_shuffle(std::vector<std::size_t>& order, std::uint64_t seed);

}  // namespace eaq
