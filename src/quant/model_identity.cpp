#include "quant/model_identity.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/sha256.hpp"
#include "io/checkpoint.hpp"

namespace eaq::quant {

namespace fs = std::filesystem;

ModelIdentity identify_model(const fs::path& folder) {
  ModelIdentity identity;
  identity.folder = folder.string();
  const fs::path config = folder / "config.json";
  EAQ_CHECK(fs::exists(config), "{}: no config.json in the model folder", folder.string());
  identity.config_sha256 = sha256_file_hex(config);
  const Checkpoint checkpoint = Checkpoint::open_folder(folder);
  for (const SafetensorsFile& file : checkpoint.files()) {
    identity.weights.push_back({fs::path(file.path()).filename().string(), file.file_size(),
                                sha256_file_hex(file.path())});
  }
  return identity;
}

nlohmann::json to_json(const ModelIdentity& identity) {
  nlohmann::json weights = nlohmann::json::array();
  for (const WeightsFileIdentity& w : identity.weights) {
    weights.push_back({{"file", w.file}, {"bytes", w.bytes}, {"sha256", w.sha256}});
  }
  return {
      {"folder", identity.folder}, {"config_sha256", identity.config_sha256}, {"weights", weights}};
}

ModelIdentity model_identity_from_json(const nlohmann::json& json, const std::string& where) {
  try {
    ModelIdentity identity;
    identity.folder = json.at("folder").get<std::string>();
    identity.config_sha256 = json.at("config_sha256").get<std::string>();
    for (const nlohmann::json& w : json.at("weights")) {
      identity.weights.push_back({w.at("file").get<std::string>(),
                                  w.at("bytes").get<std::uint64_t>(),
                                  w.at("sha256").get<std::string>()});
    }
    return identity;
  } catch (const nlohmann::json::exception& e) {
    fail("{}: the \"model\" entry is malformed ({})", where, e.what());
  }
}

std::string describe_difference(const ModelIdentity& expected, const ModelIdentity& actual) {
  if (expected.config_sha256 != actual.config_sha256) {
    return fmt::format("config.json differs (sha256 {} in the file, {} in {})",
                       expected.config_sha256.substr(0, 12), actual.config_sha256.substr(0, 12),
                       actual.folder);
  }
  if (expected.weights.size() != actual.weights.size()) {
    return fmt::format("the weights are {} file(s), not {}", actual.weights.size(),
                       expected.weights.size());
  }
  for (std::size_t i = 0; i < expected.weights.size(); ++i) {
    const WeightsFileIdentity& e = expected.weights[i];
    const WeightsFileIdentity& a = actual.weights[i];
    if (!(e == a)) {
      return fmt::format(
          "weights file {} differs ({} bytes, sha256 {} expected; {} bytes, "
          "sha256 {} found as {})",
          e.file, e.bytes, e.sha256.substr(0, 12), a.bytes, a.sha256.substr(0, 12), a.file);
    }
  }
  return "";
}

}  // namespace eaq::quant
