// `eaq forward`: one forward pass of an encoder on token ids from .npy files; writes the logits
// (or, for a bare encoder, the last hidden state) as float32 .npy.
#include <fmt/format.h>

#include <optional>

#include "backend/factory.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/model_folder.hpp"
#include "io/npy.hpp"
#include "model/encoder.hpp"
#include "quant/calibration.hpp"

namespace eaq::cli {
namespace {

struct ForwardArgs {
  std::string model;
  std::string input_ids;
  std::string attention_mask;
  std::string token_type_ids;
  std::string output;
  std::string device = "cpu";
  std::string precision = "fp32";
  std::string calibration_file;
  int gpu_id = 0;
  bool verbose = false;
};

HostTensor read_ids(const std::string& path, const std::string& flag) {
  HostTensor t = read_npy(path);
  EAQ_CHECK(t.dtype() == DType::I32 || t.dtype() == DType::I64,
            "{} {}: dtype {} is not supported; save int32 or int64 arrays", flag, path,
            dtype_name(t.dtype()));
  EAQ_CHECK(t.rank() == 2, "{} {}: expected a [batch, seq] array, got shape {}", flag, path,
            shape_str(t.shape()));
  return t;
}

int run_forward(const ForwardArgs& args) {
  BackendOptions backend_options;
  backend_options.device = args.device;
  backend_options.precision = parse_precision(args.precision);
  backend_options.gpu_id = args.gpu_id;

  const HostTensor ids = read_ids(args.input_ids, "--input-ids");
  HostTensor mask;
  std::optional<HostTensor> types;
  if (!args.attention_mask.empty()) {
    mask = read_ids(args.attention_mask, "--attention-mask");
    EAQ_CHECK(mask.shape() == ids.shape(),
              "--attention-mask {}: shape {} does not match --input-ids shape {}",
              args.attention_mask, shape_str(mask.shape()), shape_str(ids.shape()));
  } else {
    mask = HostTensor::empty(DType::I32, ids.shape());
    for (std::int64_t i = 0; i < mask.numel(); ++i) mask.mutable_data<std::int32_t>()[i] = 1;
  }
  if (!args.token_type_ids.empty()) {
    types = read_ids(args.token_type_ids, "--token-type-ids");
    EAQ_CHECK(types->shape() == ids.shape(),
              "--token-type-ids {}: shape {} does not match --input-ids shape {}",
              args.token_type_ids, shape_str(types->shape()), shape_str(ids.shape()));
  }

  const auto folder = resolve_model_path(args.model);
  std::unique_ptr<Backend> backend = make_backend(backend_options);
  QuantizationPlan plan;
  if (backend_options.precision == Precision::Int8Static) {
    EAQ_CHECK(!args.calibration_file.empty(),
              "--precision int8-static needs --calibration-file (see `eaq calibrate`)");
    plan = quant::load_calibration(args.calibration_file, folder, Precision::Int8Static).plan();
  } else {
    EAQ_CHECK(args.calibration_file.empty(),
              "--calibration-file is used only with --precision int8-static");
  }
  std::unique_ptr<EncoderModel> model = EncoderModel::load(folder, *backend, plan);
  if (args.verbose) {
    for (const LinearReport& layer : model->linear_layers()) {
      fmt::print("  {:<24} [{}, {}]  {}\n", layer.name, layer.out_features, layer.in_features,
                 layer.kernel);
    }
  }
  validate_encoder_inputs(model->config(), ids, &mask, types ? &*types : nullptr, args.input_ids);

  EncoderBatch batch;
  batch.input_ids = backend->upload(ids, DType::I32);
  batch.attention_mask = backend->upload(mask, DType::I32);
  if (types) batch.token_type_ids = backend->upload(*types, DType::I32);
  const EncoderOutputs outputs = model->forward(batch);
  HostTensor result;
  if (outputs.logits.data) {
    result = backend->download(outputs.logits);
  } else {
    result = backend->download(outputs.hidden)
                 .reshaped({ids.dim(0), ids.dim(1), model->config().hidden});
  }
  backend->release(batch.input_ids);
  backend->release(batch.attention_mask);
  backend->release(batch.token_type_ids);
  write_npy(args.output, result);
  fmt::print("wrote {} {} to {} ({} on {}, {})\n",
             outputs.logits.data ? "logits" : "last_hidden_state", shape_str(result.shape()),
             args.output, model->config().architecture, backend->name(),
             precision_name(backend->precision()));
  return 0;
}

}  // namespace

Command forward_command() {
  return {"forward", "Run one forward pass of an encoder on token ids from .npy files",
          [](CLI::App& app) {
            auto args = std::make_shared<ForwardArgs>();
            app.add_option("--model", args->model,
                           "Model folder (Hugging Face layout) or hub name in the local cache")
                ->required();
            app.add_option("--input-ids", args->input_ids, "int32/int64 .npy of shape [batch, seq]")
                ->required();
            app.add_option("--attention-mask", args->attention_mask,
                           "int32/int64 .npy [batch, seq] of 0/1 (default: all ones)");
            app.add_option("--token-type-ids", args->token_type_ids,
                           "int32/int64 .npy [batch, seq] (BERT; default: all zeros)");
            app.add_option("--output", args->output,
                           "float32 .npy to write: logits [batch, labels], or the last hidden "
                           "state [batch, seq, hidden] for a bare encoder")
                ->required();
            app.add_option("--device", args->device, "cpu or cuda");
            app.add_option(
                "--precision", args->precision,
                "fp32, tf32, fp16, fp16-autocast, bf16, int8, int8-static, int8-wo, fp8");
            app.add_option("--gpu-id", args->gpu_id, "CUDA device index");
            app.add_option("--calibration-file", args->calibration_file,
                           "int8-static: the calibration (JSON) with the activation scales");
            app.add_flag("--verbose", args->verbose, "List every Linear layer and its GEMM path");
            return std::function<int()>([args] { return run_forward(*args); });
          }};
}

}  // namespace eaq::cli
