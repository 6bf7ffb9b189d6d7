// `eaq measure`: the seed's main job. Accepts the seed's flags (and dashed spellings), crosses
// precisions (outer: one model load each) with batch sizes (inner), and writes one trial's
// results/<precision>/trial_<N>_<timestamp>.{csv,json} the moment it ends.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <sstream>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/factory.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/bundled.hpp"
#include "io/dataset.hpp"
#include "io/json_file.hpp"
#include "io/model_folder.hpp"
#include "measure/gpu_meter.hpp"
#include "measure/nvml.hpp"
#include "measure/system_info.hpp"
#include "model/encoder.hpp"
#include "model/gpt2.hpp"
#include "model/gpt2_config.hpp"
#include "quant/calibrate.hpp"
#include "quant/calibration.hpp"
#include "report/markdown_table.hpp"
#include "report/output_files.hpp"
#include "report/text_table.hpp"
#include "run/classification_measurement.hpp"
#include "run/generation_measurement.hpp"

namespace eaq::cli {
namespace {

struct MeasureArgs {
  run::MeasureSettings base;
  std::string precisions;  // "fp16", "fp32,fp16", "all"
  std::string batch_sizes = "32";
  std::string power_source = "nvml";
  std::string min_duration = "auto";
  bool no_sync_each_iter = false;
  bool sync_each_iter = false;  // the default; accepted for the seed's spelling
  bool no_cuda_graphs = false;
  std::string results_dir = "results";
  std::string task = "auto";
  // int8-static: scales from a calibration file, or computed over a calibration dataset.
  std::string calibration_file;
  std::string calibration_dataset;
  std::int64_t calibration_batches = 8;
  std::string calibration_method = "max";
  double calibration_percentile = 99.99;
  run::GenerationSettings generation;
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::vector<Precision> parse_precisions(const std::string& text, const std::string& device,
                                        int gpu_id) {
  if (text == "all") {
    std::vector<Precision> all = supported_precisions(device, gpu_id);
    EAQ_CHECK(!all.empty(), "--precision all: no precision is available on --device {}", device);
    return all;
  }
  std::vector<Precision> out;
  for (const std::string& name : split_list(text)) out.push_back(parse_precision(name));
  EAQ_CHECK(!out.empty(), "--precision: give a precision, a comma-separated list, or all");
  return out;
}

std::vector<std::int64_t> parse_batch_sizes(const std::string& text) {
  std::vector<std::int64_t> out;
  for (const std::string& item : split_list(text)) {
    std::int64_t value = 0;
    try {
      std::size_t used = 0;
      value = std::stoll(item, &used);
      EAQ_CHECK(used == item.size(), "");
    } catch (const std::exception&) {
      fail("--batch-size {}: '{}' is not an integer", text, item);
    }
    EAQ_CHECK(value > 0, "--batch-size {}: batch sizes must be positive", text);
    out.push_back(value);
  }
  EAQ_CHECK(!out.empty(), "--batch-size: give one or more positive integers");
  return out;
}

std::optional<double> parse_min_duration(const std::string& text) {
  if (text == "auto") return std::nullopt;
  try {
    std::size_t used = 0;
    const double value = std::stod(text, &used);
    if (used == text.size() && value >= 0) return value;
  } catch (const std::exception&) {
  }
  fail("--min-duration-s {}: expected seconds (>= 0) or auto", text);
}

// Columns of the summary printed after all trials.
const std::vector<std::string> kSummaryColumns = {"precision",
                                                  "batch_size",
                                                  "accuracy",
                                                  "median_latency",
                                                  "p99_latency",
                                                  "throughput",
                                                  "energy_per_inference_mj",
                                                  "dynamic_energy_per_inference_mj",
                                                  "mean_power_w",
                                                  "energy_quality"};

// The generation figures printed after the summary table.
const std::string_view kGenerationFields[] = {
    "time_to_first_token_s", "prefill_tokens_per_s",     "prefill_energy_per_prompt_mj",
    "decode_tokens_per_s",   "energy_per_generation_mj", "prefill_energy_quality"};

// int8-static's activation scales: read from --calibration-file, or computed in fp32 (on the CPU)
// over --calibration-dataset and saved beside the results for reuse.
QuantizationPlan calibration_plan(const MeasureArgs& args, const std::filesystem::path& model_dir,
                                  Precision precision, const std::string& stamp) {
  if (!args.calibration_file.empty()) {
    const quant::Calibration calibration =
        quant::load_calibration(args.calibration_file, model_dir, precision);
    fmt::print("int8-static: scales of {} layers from {}\n", calibration.layers.size(),
               args.calibration_file);
    return calibration.plan();
  }
  const std::string config_path = (model_dir / "config.json").string();
  const std::int64_t vocab =
      model_type_of(model_dir) == "gpt2"
          ? parse_gpt2_config(read_json_file(config_path), config_path).vocab_size
          : parse_encoder_config(read_json_file(config_path), config_path).vocab_size;
  const Dataset data = Dataset::load(args.calibration_dataset, vocab);
  quant::CalibrationOptions options;
  options.method = quant::parse_calibration_method(args.calibration_method, "--calibration-method");
  options.percentile = args.calibration_percentile;
  options.batches = args.calibration_batches;
  options.dataset = data.path();
  const quant::Calibration calibration = quant::calibrate(
      model_dir, {&data.input_ids(), &data.attention_mask(), data.token_type_ids()}, options);
  const std::filesystem::path file = std::filesystem::path(args.results_dir) /
                                     std::string(precision_name(precision)) /
                                     fmt::format("calibration_{}.json", stamp);
  quant::save_calibration(calibration, file);
  fmt::print(
      "int8-static: calibrated {} layers over {} examples of {} ({}); saved {} (reuse it "
      "with --calibration-file)\n",
      calibration.layers.size(), calibration.examples, data.path(),
      quant::calibration_method_name(calibration.method), file.string());
  return calibration.plan();
}

int run_measure(MeasureArgs& args) {
  run::MeasureSettings base = args.base;
  if (base.device == "auto") {
    std::string why_not;
    base.device = cuda_supports(Precision::Fp32, base.gpu_id, &why_not) ? "cuda" : "cpu";
    if (base.device == "cpu") fmt::print("--device auto: using the CPU ({})\n", why_not);
  }
  EAQ_CHECK(base.device == "cuda" || base.device == "cpu", "--device {}: choose cuda, cpu or auto",
            base.device);
  EAQ_CHECK(base.num_iters > 0, "--num_iters must be positive, got {}", base.num_iters);
  EAQ_CHECK(base.warmup_steps >= 0, "--warmup_steps must be >= 0, got {}", base.warmup_steps);
  EAQ_CHECK(base.power_sample_interval_ms >= 1, "--power_sample_interval must be >= 1 ms, got {}",
            base.power_sample_interval_ms);
  EAQ_CHECK(base.idle_seconds >= 0, "--idle-seconds must be >= 0, got {}", base.idle_seconds);
  base.power_source = run::parse_power_source(args.power_source);
  base.min_duration_s = parse_min_duration(args.min_duration);
  EAQ_CHECK(!(args.sync_each_iter && args.no_sync_each_iter),
            "--sync-each-iter and --no-sync-each-iter contradict each other");
  base.sync_each_iter = !args.no_sync_each_iter;
  base.cuda_graphs = !args.no_cuda_graphs;
  std::vector<Precision> precisions = parse_precisions(args.precisions, base.device, base.gpu_id);
  const std::vector<std::int64_t> batch_sizes = parse_batch_sizes(args.batch_sizes);

  // Inputs first, so a typo fails in a second rather than after minutes of measuring.
  const std::filesystem::path model_dir =
      base.model.empty() ? bundled_path(kDefaultModel) : resolve_model_path(base.model);
  if (base.model.empty()) base.model = model_dir.string();
  const std::string model_type = model_type_of(model_dir);
  std::string task = args.task;
  if (task == "auto") task = model_type == "gpt2" ? "generation" : "classification";
  EAQ_CHECK(task == "classification" || task == "generation",
            "--task {}: choose classification, generation or auto", args.task);
  EAQ_CHECK(task != "generation" || model_type == "gpt2",
            "--task generation: {} is a {} model, not a causal language model eaq runs (gpt2)",
            model_dir.string(), model_type.empty() ? "unknown" : model_type);
  EAQ_CHECK(task != "classification" || model_type != "gpt2",
            "--task classification: {} is a GPT-2 language model; use --task generation",
            model_dir.string());
  // int8-static needs activation scales; `--precision all` leaves it out when none are given.
  const bool has_calibration = !args.calibration_file.empty() || !args.calibration_dataset.empty();
  EAQ_CHECK(args.calibration_file.empty() || args.calibration_dataset.empty(),
            "--calibration-file and --calibration-dataset: give one, not both");
  const bool wants_static =
      std::find(precisions.begin(), precisions.end(), Precision::Int8Static) != precisions.end();
  if (wants_static && args.precisions == "all" && (!has_calibration || task == "generation")) {
    std::erase(precisions, Precision::Int8Static);
    fmt::print("--precision all: leaving out int8-static ({})\n",
               task == "generation" ? "not calibrated for GPT-2 models"
                                    : "give --calibration-dataset or --calibration-file");
  } else if (wants_static) {
    EAQ_CHECK(task == "classification",
              "--precision int8-static: calibration is implemented for encoder classifiers only; "
              "use int8 (dynamic) or int8-wo for {}",
              model_dir.string());
    EAQ_CHECK(has_calibration,
              "--precision int8-static needs activation scales: give --calibration-dataset "
              "(e.g. datasets/sentiment-calibration) or --calibration-file (from `eaq calibrate`)");
  } else {
    EAQ_CHECK(!has_calibration,
              "--calibration-file / --calibration-dataset are used only with --precision "
              "int8-static");
  }
  if (!args.calibration_dataset.empty()) {
    EAQ_CHECK(std::filesystem::exists(args.calibration_dataset),
              "--calibration-dataset {}: no such file or folder", args.calibration_dataset);
  }
  if (!args.calibration_file.empty()) {
    EAQ_CHECK(std::filesystem::exists(args.calibration_file), "--calibration-file {}: no such file",
              args.calibration_file);
  }
  std::optional<Dataset> dataset;
  if (task == "classification") {
    EAQ_CHECK(!base.dataset.empty(), "--dataset is required (e.g. datasets/sentiment-small)");
    const EncoderConfig config =
        parse_encoder_config(read_json_file(model_dir / "config.json"), model_dir / "config.json");
    EAQ_CHECK(std::filesystem::exists(base.dataset), "--dataset {}: no such file or folder",
              base.dataset);
    dataset.emplace(Dataset::load(base.dataset, config.vocab_size));
  }

  // Output folders are checked before anything runs: nothing measured is lost at the end.
  const bool single_trial = precisions.size() == 1 && batch_sizes.size() == 1;
  const std::string stamp = measure::filename_timestamp(std::chrono::system_clock::now());
  if (!base.output.empty() && !single_trial) {
    const auto ext = std::filesystem::path(base.output).extension();
    EAQ_CHECK(ext != ".csv" && ext != ".json",
              "--output {}: one file cannot hold {} trials ({} precisions x {} batch sizes); give "
              "a folder (ending in /) instead",
              base.output, precisions.size() * batch_sizes.size(), precisions.size(),
              batch_sizes.size());
  }
  for (Precision precision : precisions) {
    const report::OutputPaths paths = report::resolve_output_paths(
        base.output, precision_name(precision), base.trial, stamp, args.results_dir);
    report::ensure_writable_output_dir(paths.csv.parent_path());
  }
  for (Precision precision : precisions) {
    if (base.device == "cpu") {
      EAQ_CHECK(cpu_supports(precision), "--precision {} is not available with --device cpu",
                precision_name(precision));
    } else {
      std::string why_not;
      EAQ_CHECK(cuda_supports(precision, base.gpu_id, &why_not), "--precision {} on GPU {}: {}",
                precision_name(precision), base.gpu_id, why_not);
    }
  }

  const measure::RaplMeter rapl;
  std::vector<report::Result> results;
  for (Precision precision : precisions) {
    run::MeasureSettings settings = base;
    settings.precision = precision;
    BackendOptions backend_options{settings.device, precision, settings.gpu_id};
    std::unique_ptr<Backend> backend = make_backend(backend_options);
    std::unique_ptr<measure::GpuMeter> meter;
    if (backend->is_cuda()) {
      meter = measure::open_nvml_meter_by_pci_bus_id(backend->pci_bus_id());
    } else {
      meter = std::make_unique<measure::UnavailableGpuMeter>("--device cpu: no GPU meter");
    }
    const std::size_t before = backend->memory_stats().allocated_bytes;
    std::unique_ptr<EncoderModel> encoder;
    std::unique_ptr<Gpt2Model> decoder;
    if (task == "classification") {
      const QuantizationPlan plan = precision == Precision::Int8Static
                                        ? calibration_plan(args, model_dir, precision, stamp)
                                        : QuantizationPlan{};
      encoder = EncoderModel::load(model_dir, *backend, plan);
    } else {
      decoder = Gpt2Model::load(model_dir, *backend);
    }
    const std::size_t weight_bytes = backend->memory_stats().allocated_bytes - before;
    const std::vector<LinearReport>& linears =
        encoder ? encoder->linear_layers() : decoder->linear_layers();
    if (settings.verbose) {
      fmt::print("{} on {} ({}): {} parameters, {:.1f} MB of weights on the device\n",
                 encoder ? encoder->config().architecture : decoder->config().architecture,
                 backend->name(), precision_name(precision),
                 encoder ? encoder->num_parameters() : decoder->num_parameters(),
                 weight_bytes / 1e6);
      for (const LinearReport& layer : linears) {
        fmt::print("  {:<24} [{} -> {}] {}\n", layer.name, layer.in_features, layer.out_features,
                   layer.kernel);
      }
      const auto& unused = encoder ? encoder->unused_tensors() : decoder->unused_tensors();
      if (!unused.empty()) fmt::print("  unused checkpoint tensors: {}\n", fmt::join(unused, ", "));
    }
    for (std::int64_t batch_size : batch_sizes) {
      settings.batch_size = batch_size;
      report::Result result;
      if (encoder) {
        run::TrialContext context{*backend, *encoder,     *dataset,      *meter,
                                  &rapl,    weight_bytes, command_line()};
        result = run::run_classification_trial(settings, context);
      } else {
        run::GenerationContext context{*backend, *decoder,     *meter,
                                       &rapl,    weight_bytes, command_line()};
        result = run::run_generation_trial(settings, args.generation, context);
      }
      report::OutputPaths paths = report::resolve_output_paths(
          settings.output, precision_name(precision), settings.trial, stamp, args.results_dir);
      if (base.output.empty() || !single_trial) {
        // Several trials share a timestamp: name each by its batch size as well.
        if (batch_sizes.size() > 1) {
          const auto suffix = fmt::format("_bs{}", batch_size);
          paths.csv.replace_filename(paths.csv.stem().string() + suffix + ".csv");
          paths.json.replace_filename(paths.json.stem().string() + suffix + ".json");
        }
        paths = report::avoid_existing(paths);
      }
      report::write_result_files(result, paths);
      fmt::print("\n{} batch {}: wrote {} and {}\n", precision_name(precision), batch_size,
                 paths.csv.string(), paths.json.string());
      fmt::print("{}", report::to_text_table(result));
      if (task == "generation") {
        fmt::print("{}", report::to_text_table(result, kGenerationFields));
      }
      if (const auto* notes = result.find("energy_quality_notes"); notes && !notes->is_null()) {
        const std::string text = report::format_value(notes->value);
        if (!text.empty()) fmt::print("energy quality: {}\n", text);
      }
      results.push_back(std::move(result));
    }
  }
  if (results.size() > 1) {
    static const std::vector<std::string> generation_columns = {"precision",
                                                                "batch_size",
                                                                "time_to_first_token_s",
                                                                "decode_tokens_per_s",
                                                                "prefill_energy_per_prompt_mj",
                                                                "energy_per_inference_mj",
                                                                "dynamic_energy_per_inference_mj",
                                                                "mean_power_w",
                                                                "energy_quality"};
    fmt::print("\n{}", report::to_markdown_table(
                           results, task == "generation" ? generation_columns : kSummaryColumns));
  }
  return 0;
}

}  // namespace

Command measure_command() {
  return {
      "measure",
      "Measure accuracy, latency, throughput, power and energy per inference (the seed's main job)",
      [](CLI::App& app) {
        auto args = std::make_shared<MeasureArgs>();
        run::MeasureSettings& s = args->base;
        app.add_option("--model", s.model,
                       "Model folder (Hugging Face layout) or hub name in the local cache "
                       "(default: the bundled models/sentiment-distilbert)");
        app.add_option("--precision", args->precisions,
                       "fp32, tf32, fp16, fp16-autocast, bf16, int8, int8-static, int8-wo, fp8; a "
                       "comma-separated list; or all (every precision the device supports)")
            ->required();
        app.add_option("--dataset", s.dataset,
                       "Pre-tokenized dataset folder (dataset.safetensors), e.g. "
                       "datasets/sentiment-small (required for classification)");
        app.add_option("--task", args->task,
                       "classification, generation, or auto (the model's natural task)");
        app.add_option("--prompt-len", args->generation.prompt_len,
                       "Generation: prompt tokens per row");
        app.add_option("--new-tokens", args->generation.new_tokens,
                       "Generation: greedy tokens generated per prompt");
        app.add_option("--calibration-file", args->calibration_file,
                       "int8-static: activation scales from `eaq calibrate` or an earlier run");
        app.add_option("--calibration-dataset", args->calibration_dataset,
                       "int8-static: calibrate over this pre-tokenized dataset (fp32, on the CPU) "
                       "and save the scales beside the results");
        app.add_option("--calibration-batches", args->calibration_batches,
                       "int8-static: calibration batches of 32 examples (0 = the whole dataset)");
        app.add_option("--calibration-method", args->calibration_method,
                       "int8-static: max or percentile");
        app.add_option("--calibration-percentile", args->calibration_percentile,
                       "int8-static: the percentile of |activation| for --calibration-method "
                       "percentile");
        app.add_option("--prompt-text", args->generation.prompt_text,
                       "Generation: text repeated to --prompt-len tokens (default: the opening of "
                       "Pride and Prejudice)");
        app.add_option("--num_iters,--num-iters", s.num_iters, "Measured iterations (batches)");
        app.add_option("--warmup_steps,--warmup-steps", s.warmup_steps, "Warm-up iterations");
        app.add_option("--power_sample_interval,--power-sample-interval",
                       s.power_sample_interval_ms, "Power sampling interval (ms)");
        app.add_option("--device", s.device, "cuda, cpu, or auto (cuda when a GPU is usable)");
        app.add_option("--gpu_id,--gpu-id", s.gpu_id, "CUDA device index");
        app.add_option("--output", s.output,
                       "Output path: x.csv or x.json (the other file beside it), or a folder "
                       "ending in / (default: results/<precision>/trial_<N>_<timestamp>)");
        app.add_option("--results-dir", args->results_dir, "Root of the automatic output paths");
        app.add_option("--trial", s.trial, "Trial number (part of the file name)");
        app.add_flag("--no_warmup,--no-warmup", s.no_warmup, "Skip warm-up (not recommended)");
        app.add_flag("--verbose", s.verbose, "Print the model, its layers and the GEMM paths");
        app.add_option("--batch-size,--batch_size", args->batch_sizes,
                       "Samples per iteration; a comma-separated list runs each");
        app.add_option("--power-source", args->power_source,
                       "nvml (sampling thread + energy counter), nvidia-smi (the seed's logger; "
                       "the counter is still read), or none");
        app.add_option("--idle-seconds", s.idle_seconds,
                       "Idle baseline before the run (s); 0 skips it");
        app.add_option("--min-duration-s", args->min_duration,
                       "Extend the measured loop to at least this many seconds; auto = 10 "
                       "energy-counter update periods (measured) and 11 power-sample intervals, "
                       "0 = exactly --num_iters");
        app.add_flag("--no-sync-each-iter", args->no_sync_each_iter,
                     "Synchronize only at the end of the loop (default: after each iteration, as "
                     "the seed did; per-iteration latencies need it)");
        app.add_flag("--sync-each-iter", args->sync_each_iter,
                     "Synchronize after each iteration (the default)");
        app.add_flag("--no-cuda-graphs", args->no_cuda_graphs,
                     "Launch kernels one by one instead of replaying a captured CUDA graph");
        return std::function<int()>([args] { return run_measure(*args); });
      }};
}

}  // namespace eaq::cli
