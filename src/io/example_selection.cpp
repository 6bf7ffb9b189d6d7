#include "io/example_selection.hpp"

#include <fmt/format.h>

#include <map>
#include <numeric>
#include <random>

#include "core/error.hpp"

namespace eaq {

void deterministic_shuffle(std::vector<std::size_t>& order, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  for (std::size_t i = order.size(); i > 1; --i) {
    // A uniform draw in [0, i) by rejection: no modulo bias, no implementation-defined
    // std::uniform_int_distribution.
    const std::uint64_t bound = i;
    const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() -
                                std::numeric_limits<std::uint64_t>::max() % bound;
    std::uint64_t draw = engine();
    while (draw >= limit) draw = engine();
    std::swap(order[i - 1], order[static_cast<std::size_t>(draw % bound)]);
  }
}

std::vector<TextExample> select_examples(std::vector<TextExample> examples,
                                         const SelectionOptions& options) {
  std::vector<std::size_t> order(examples.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (options.shuffle_seed) deterministic_shuffle(order, *options.shuffle_seed);

  std::vector<std::size_t> chosen;
  if (options.balance) {
    std::map<std::int64_t, std::size_t> available;
    for (const TextExample& example : examples) {
      EAQ_CHECK(example.label.has_value(), "--balance needs labelled examples");
      ++available[*example.label];
    }
    std::size_t per_label = available.begin()->second;
    for (const auto& [label, count] : available) per_label = std::min(per_label, count);
    if (options.limit > 0) {
      EAQ_CHECK(options.limit % available.size() == 0,
                "--balance --limit {}: the limit must be a multiple of the {} labels",
                options.limit, available.size());
      per_label = options.limit / available.size();
      for (const auto& [label, count] : available) {
        EAQ_CHECK(count >= per_label,
                  "--balance --limit {}: label {} has only {} examples, {} needed", options.limit,
                  label, count, per_label);
      }
    }
    std::map<std::int64_t, std::size_t> taken;
    for (std::size_t index : order) {
      std::size_t& count = taken[*examples[index].label];
      if (count < per_label) {
        ++count;
        chosen.push_back(index);
      }
    }
  } else {
    EAQ_CHECK(options.limit <= examples.size(), "--limit {}: only {} examples are available",
              options.limit, examples.size());
    const std::size_t count = options.limit > 0 ? options.limit : examples.size();
    chosen.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count));
  }

  std::vector<TextExample> selected;
  selected.reserve(chosen.size());
  for (std::size_t index : chosen) selected.push_back(std::move(examples[index]));
  return selected;
}

std::string describe_selection(const SelectionOptions& options) {
  std::vector<std::string> parts;
  if (options.shuffle_seed) parts.push_back(fmt::format("shuffle seed {}", *options.shuffle_seed));
  if (options.balance) parts.push_back("balanced");
  if (options.limit > 0) parts.push_back(fmt::format("first {}", options.limit));
  return parts.empty() ? "all, in file order" : fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace eaq
