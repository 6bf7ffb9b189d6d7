// Weights described as data: each architecture lists the tensors it needs (our key, the name in a
// Hugging Face checkpoint, the shape config.json implies), and one loader finds and checks them.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "io/checkpoint.hpp"

namespace eaq {

struct WeightSpec {
  std::string key;      // our name, e.g. "layers.3.attention.qkv.weight"
  std::string hf_name;  // the checkpoint name, without the base-model prefix
  Shape shape;
  bool in_base_model = true;  // false for task heads, which never carry the prefix
  bool optional = false;
};

class LoadedWeights {
 public:
  // Finds every spec in the checkpoint: with the base-model prefix (e.g. "distilbert.") when the
  // checkpoint uses it, and under the legacy LayerNorm names gamma/beta. Throws naming the file
  // and tensor when one is missing, has the wrong shape, or is not a float tensor.
  static LoadedWeights load(const Checkpoint& checkpoint, const std::vector<WeightSpec>& specs,
                            const std::string& base_prefix, const std::string& config_hint);

  bool has(const std::string& key) const { return tensors_.count(key) != 0; }
  const HostTensor& get(const std::string& key) const;
  std::int64_t num_parameters() const { return num_parameters_; }
  std::size_t stored_bytes() const { return stored_bytes_; }
  // The checkpoint's tensors no spec asked for (e.g. an MLM head): reported, not an error.
  const std::vector<std::string>& unused() const { return unused_; }
  DType stored_dtype() const { return stored_dtype_; }  // of the largest tensor

 private:
  std::map<std::string, HostTensor> tensors_;
  std::vector<std::string> unused_;
  std::int64_t num_parameters_ = 0;
  std::size_t stored_bytes_ = 0;
  DType stored_dtype_ = DType::F32;
};

}  // namespace eaq
