// What identifies a model for a calibration file: SHA-256 of its config.json and of every
// weights file. A calibration file is valid for exactly the model it was made from.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace eaq::quant {

struct WeightsFileIdentity {
  std::string file;  // name inside the model folder
  std::uint64_t bytes = 0;
  std::string sha256;
  bool operator==(const WeightsFileIdentity&) const = default;
};

struct ModelIdentity {
  std::string folder;  // where it was read from (informational: folders move)
  std::string config_sha256;
  std::vector<WeightsFileIdentity> weights;
};

// Hashes config.json and the safetensors files of the folder (every shard).
ModelIdentity identify_model(const std::filesystem::path& folder);

nlohmann::json to_json(const ModelIdentity& identity);
// `where` names the file for errors.
ModelIdentity model_identity_from_json(const nlohmann::json& json, const std::string& where);

// Empty when the two are the same model; otherwise what differs, for an error message.
std::string describe_difference(const ModelIdentity& expected, const ModelIdentity& actual);

}  // namespace eaq::quant
