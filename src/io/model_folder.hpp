// Where a model lives: a local folder in Hugging Face layout (config.json, weights, tokenizer
// files), or a hub name ("org/name") looked up in the local Hugging Face cache. eaq never
// downloads anything.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace eaq {

// The cache roots searched for hub names, in order: $HF_HUB_CACHE, $HF_HOME/hub,
// ~/.cache/huggingface/hub (only those whose variables are set).
std::vector<std::filesystem::path> hf_cache_roots();

// A directory is returned as is. A hub name resolves to
// <cache>/models--org--name/snapshots/<revision>/, the revision read from refs/main (or the only
// snapshot). Anything else throws an error saying where it looked and how to get the model.
std::filesystem::path resolve_model_path(const std::string& name_or_dir);

}  // namespace eaq
