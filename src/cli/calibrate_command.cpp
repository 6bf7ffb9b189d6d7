// `eaq calibrate`: the int8-static calibration pass on its own. Runs the model in fp32 over
// calibration batches of a pre-tokenized dataset and writes the activation scales as a
// calibration file for `--precision int8-static --calibration-file`.
#include <fmt/format.h>

#include "backend/factory.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/dataset.hpp"
#include "io/json_file.hpp"
#include "io/model_folder.hpp"
#include "model/encoder_config.hpp"
#include "quant/calibrate.hpp"

namespace eaq::cli {
namespace {

struct CalibrateArgs {
  std::string model;
  std::string dataset;
  std::string output;
  std::string method = "max";
  double percentile = 99.99;
  std::int64_t batches = 8;
  std::int64_t batch_size = 32;
  std::string device = "cpu";
  int gpu_id = 0;
};

int run_calibrate(const CalibrateArgs& args) {
  const auto folder = resolve_model_path(args.model);
  const EncoderConfig config =
      parse_encoder_config(read_json_file(folder / "config.json"), folder / "config.json");
  const Dataset dataset = Dataset::load(args.dataset, config.vocab_size);
  quant::CalibrationOptions options;
  options.method = quant::parse_calibration_method(args.method);
  options.percentile = args.percentile;
  options.batches = args.batches;
  options.batch_size = args.batch_size;
  options.dataset = dataset.path();
  BackendOptions backend_options;
  backend_options.device = args.device;
  backend_options.precision = Precision::Fp32;
  backend_options.gpu_id = args.gpu_id;
  std::unique_ptr<Backend> backend = make_backend(backend_options);
  const quant::Calibration calibration = quant::calibrate(
      folder, {&dataset.input_ids(), &dataset.attention_mask(), dataset.token_type_ids()}, options,
      backend.get());
  quant::save_calibration(calibration, args.output);
  fmt::print("wrote {} scales for {} layers to {} ({} over {} tokens of {} examples)\n",
             quant::calibration_method_name(calibration.method), calibration.layers.size(),
             args.output, backend->name(), calibration.tokens, calibration.examples);
  return 0;
}

}  // namespace

Command calibrate_command() {
  return {
      "calibrate", "Compute int8-static activation scales over a calibration dataset",
      [](CLI::App& app) {
        auto args = std::make_shared<CalibrateArgs>();
        app.add_option("--model", args->model,
                       "Model folder (Hugging Face layout) or hub name in the local cache")
            ->required();
        app.add_option("--dataset", args->dataset,
                       "Pre-tokenized dataset folder (dataset.safetensors) to calibrate on")
            ->required();
        app.add_option("--output", args->output, "Calibration file (JSON) to write")->required();
        app.add_option("--method", args->method, "max or percentile");
        app.add_option("--percentile", args->percentile,
                       "For --method percentile: the percentile of |activation| mapped to 127");
        app.add_option("--batches", args->batches, "Calibration batches (0 = the whole dataset)");
        app.add_option("--batch-size", args->batch_size, "Examples per calibration batch");
        app.add_option("--device", args->device, "cpu or cuda (the model runs in fp32)");
        app.add_option("--gpu-id", args->gpu_id, "CUDA device index");
        return std::function<int()>([args] { return run_calibrate(*args); });
      }};
}

}  // namespace eaq::cli
