#include "quant/calibration.hpp"

#include <cmath>

#include "core/build_info.hpp"
#include "core/error.hpp"
#include "io/json_file.hpp"
#include "io/mapped_file.hpp"

namespace eaq::quant {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "eaq.calibration";
constexpr int kVersion = 1;

}  // namespace

QuantizationPlan Calibration::plan() const {
  QuantizationPlan plan;
  for (const auto& [name, layer] : layers) plan.static_input_scales[name] = layer.scale;
  return plan;
}

void save_calibration(const Calibration& calibration, const fs::path& path) {
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& [name, layer] : calibration.layers) {
    layers[name] = {{"scale", layer.scale},
                    {"absmax", layer.absmax},
                    {"observed_max", layer.observed_max},
                    {"values", layer.values}};
  }
  const nlohmann::json json = {
      {"format", kFormat},
      {"version", kVersion},
      {"precision", std::string(precision_name(calibration.precision))},
      {"model", to_json(calibration.model)},
      {"method", std::string(calibration_method_name(calibration.method))},
      {"percentile", calibration.percentile},
      {"batches", calibration.batches},
      {"batch_size", calibration.batch_size},
      {"examples", calibration.examples},
      {"tokens", calibration.tokens},
      {"dataset", calibration.dataset},
      {"created_by",
       fmt::format("eaq {} (commit {})", build_info().version, build_info().git_commit)},
      {"layers", layers}};
  write_file_atomically(path.string(), json.dump(2) + "\n");
}

Calibration load_calibration(const fs::path& path, const fs::path& model_folder,
                             Precision precision) {
  const std::string where = path.string();
  EAQ_CHECK(fs::exists(path), "--calibration-file {}: no such file", where);
  const nlohmann::json json = read_json_file(path);
  EAQ_CHECK(json.is_object() && json.value("format", "") == kFormat,
            "{}: not an eaq calibration file (expected \"format\": \"{}\")", where, kFormat);
  EAQ_CHECK(json.value("version", 0) == kVersion,
            "{}: calibration format version {} is not supported (this eaq reads version {})", where,
            json.value("version", 0), kVersion);
  Calibration calibration;
  try {
    calibration.precision =
        parse_precision(json.at("precision").get<std::string>(), where + ": \"precision\"");
    calibration.method =
        parse_calibration_method(json.at("method").get<std::string>(), where + ": \"method\"");
    calibration.percentile = json.at("percentile").get<double>();
    calibration.batches = json.at("batches").get<std::int64_t>();
    calibration.batch_size = json.at("batch_size").get<std::int64_t>();
    calibration.examples = json.at("examples").get<std::int64_t>();
    calibration.tokens = json.at("tokens").get<std::int64_t>();
    calibration.dataset = json.at("dataset").get<std::string>();
    for (const auto& [name, layer] : json.at("layers").items()) {
      LayerCalibration l;
      l.scale = layer.at("scale").get<float>();
      l.absmax = layer.at("absmax").get<float>();
      l.observed_max = layer.at("observed_max").get<float>();
      l.values = layer.at("values").get<std::uint64_t>();
      EAQ_CHECK(std::isfinite(l.scale) && l.scale > 0.0f,
                "{}: layer {} has scale {}; scales must be finite and > 0", where, name, l.scale);
      calibration.layers.emplace(name, l);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed calibration file ({})", where, e.what());
  }
  EAQ_CHECK(!calibration.layers.empty(), "{}: the calibration holds no layers", where);
  EAQ_CHECK(calibration.precision == precision,
            "{}: this calibration is for --precision {}, not {}", where,
            precision_name(calibration.precision), precision_name(precision));
  calibration.model = model_identity_from_json(json.at("model"), where);
  const ModelIdentity actual = identify_model(model_folder);
  const std::string difference = describe_difference(calibration.model, actual);
  EAQ_CHECK(difference.empty(),
            "{}: this calibration was made from the model at {} and does not fit the model at "
            "{}: {}; calibrate this model again (eaq calibrate, or --calibration-dataset)",
            where, calibration.model.folder, model_folder.string(), difference);
  return calibration;
}

}  // namespace eaq::quant
