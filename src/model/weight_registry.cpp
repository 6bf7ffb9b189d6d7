#include "model/weight_registry.hpp"

#include <set>

#include "core/error.hpp"

namespace eaq {
namespace {

bool is_float(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

// Old BERT checkpoints name LayerNorm parameters gamma/beta; Hugging Face renames them on load.
std::string legacy_layer_norm_name(const std::string& name) {
  const auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (name.find("LayerNorm") == std::string::npos) return "";
  if (ends_with(".weight")) return name.substr(0, name.size() - 7) + ".gamma";
  if (ends_with(".bias")) return name.substr(0, name.size() - 5) + ".beta";
  return "";
}

}  // namespace

LoadedWeights LoadedWeights::load(const Checkpoint& checkpoint,
                                  const std::vector<WeightSpec>& specs,
                                  const std::string& base_prefix, const std::string& config_hint) {
  // Does this checkpoint store the base model under its prefix (a task model's checkpoint)?
  bool prefixed = false;
  if (!base_prefix.empty()) {
    for (const std::string& name : checkpoint.names()) {
      if (name.rfind(base_prefix, 0) == 0) {
        prefixed = true;
        break;
      }
    }
  }

  LoadedWeights weights;
  std::set<std::string> used;
  std::size_t largest = 0;
  for (const WeightSpec& spec : specs) {
    const std::string name = (spec.in_base_model && prefixed ? base_prefix : "") + spec.hf_name;
    std::string found;
    if (checkpoint.contains(name)) {
      found = name;
    } else if (const std::string legacy = legacy_layer_norm_name(name);
               !legacy.empty() && checkpoint.contains(legacy)) {
      found = legacy;
    } else if (spec.optional) {
      continue;
    } else {
      fail("{}: missing tensor '{}' ({})", checkpoint.description(), name, config_hint);
    }
    const HostTensor& tensor = checkpoint.tensor(found);
    EAQ_CHECK(is_float(tensor.dtype()), "{}: tensor '{}' has dtype {}; expected F32, F16 or BF16",
              checkpoint.file_of(found), found, dtype_name(tensor.dtype()));
    EAQ_CHECK(tensor.shape() == spec.shape, "{}: tensor '{}' has shape {} but {} implies {}",
              checkpoint.file_of(found), found, shape_str(tensor.shape()), config_hint,
              shape_str(spec.shape));
    used.insert(found);
    weights.tensors_.emplace(spec.key, tensor);
    weights.num_parameters_ += tensor.numel();
    weights.stored_bytes_ += tensor.nbytes();
    if (tensor.nbytes() > largest) {
      largest = tensor.nbytes();
      weights.stored_dtype_ = tensor.dtype();
    }
  }
  for (const std::string& name : checkpoint.names()) {
    if (!used.count(name)) weights.unused_.push_back(name);
  }
  return weights;
}

const HostTensor& LoadedWeights::get(const std::string& key) const {
  const auto it = tensors_.find(key);
  EAQ_ASSERT(it != tensors_.end());
  return it->second;
}

}  // namespace eaq
