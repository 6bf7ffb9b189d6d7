#include "run/generation_measurement.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "measure/stats.hpp"
#include "report/result_fill.hpp"
#include "run/gated_steps.hpp"
#include "run/timed_loop.hpp"
#include "run/trial_common.hpp"
#include "text/tokenizer_loader.hpp"

namespace eaq::run {
namespace {

// The default prompt: public-domain English (the opening of Pride and Prejudice), repeated to the
// prompt length. Timing does not depend on the words; the bundled gpt2-mini was trained on such
// text, so its continuation reads as text too.
constexpr const char* kDefaultPrompt =
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be "
    "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of some one or other of "
    "their daughters. ";

using report::Section;

void add_metric(report::Result& result, const std::string& name, const std::string& unit,
                const measure::Reading<double>& value) {
  if (value)
    result.add(Section::Metrics, name, unit, *value);
  else
    result.add(Section::Metrics, name, unit, std::monostate{}, value.reason());
}

}  // namespace

HostTensor generation_prompt(const std::filesystem::path& model_dir, const std::string& text,
                             std::int64_t prompt_len, std::int64_t batch) {
  EAQ_CHECK(prompt_len > 0, "--prompt-len must be positive, got {}", prompt_len);
  const text::Tokenizer tokenizer = text::load_tokenizer(model_dir);
  const std::string source = text.empty() ? kDefaultPrompt : text;
  const std::vector<std::int32_t> pieces = tokenizer.tokenize(source);
  EAQ_CHECK(!pieces.empty(), "--prompt-text: the text has no tokens");
  std::vector<std::int32_t> ids;
  ids.reserve(static_cast<std::size_t>(prompt_len * batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t t = 0; t < prompt_len; ++t)
      ids.push_back(pieces[t % static_cast<std::int64_t>(pieces.size())]);
  }
  return HostTensor::from_i32({batch, prompt_len}, ids);
}

report::Result run_generation_trial(const MeasureSettings& settings,
                                    const GenerationSettings& generation,
                                    GenerationContext& context) {
  Backend& backend = context.backend;
  Gpt2Model& model = context.model;
  const Gpt2Config& config = model.config();
  const std::int64_t batch = settings.batch_size;
  const std::int64_t prompt_len = generation.prompt_len, new_tokens = generation.new_tokens;
  EAQ_CHECK(new_tokens > 0, "--new-tokens must be positive, got {}", new_tokens);
  EAQ_CHECK(prompt_len + new_tokens <= config.positions,
            "--prompt-len {} + --new-tokens {} exceed the model's context of {} positions "
            "(n_positions in {})",
            prompt_len, new_tokens, config.positions, (model.folder() / "config.json").string());

  report::Result result = report::Result::from_schema();
  fill_configuration(result, settings);
  result.set_unavailable("dataset", "generation uses --prompt-text");
  result.add(Section::Configuration, "task", "", std::string("generation"));
  result.add(Section::Configuration, "prompt_len", "tokens", prompt_len);
  result.add(Section::Configuration, "new_tokens", "tokens", new_tokens);
  const measure::SystemSnapshot start_snapshot = measure::take_system_snapshot(context.meter);

  const HostTensor prompt =
      generation_prompt(model.folder(), generation.prompt_text, prompt_len, batch);
  DeviceTensor prompt_ids = backend.upload(prompt, DType::I32);
  auto session = model.start_session(batch, prompt_len + new_tokens);
  const bool graphs = settings.cuda_graphs && backend.is_cuda();

  // Prefill: the prompt through every layer, then the first token (chosen on the device, as
  // every step's: the bounded head where the backend has it, else argmax over every logit).
  const auto prefill = [&] { model.prefill_greedy(*session, prompt_ids); };
  prefill();
  backend.synchronize();
  std::unique_ptr<CapturedGraph> prefill_graph = graphs ? backend.capture(prefill) : nullptr;
  const auto run_prefill = [&] {
    if (prefill_graph)
      prefill_graph->launch();
    else
      prefill();
  };

  EnergySessionOptions energy_options;
  energy_options.source = settings.power_source;
  energy_options.sample_interval = std::chrono::milliseconds(settings.power_sample_interval_ms);
  energy_options.idle_seconds = settings.idle_seconds;
  energy_options.smi_gpu_index = context.meter.index();
  EnergySession prefill_energy(context.meter, context.rapl, energy_options);
  backend.synchronize();
  prefill_energy.measure_idle();

  if (!settings.no_warmup) {
    for (std::int64_t i = 0; i < std::min<std::int64_t>(settings.warmup_steps, 50); ++i)
      run_prefill();
    backend.synchronize();
  }
  TimedLoopOptions loop;
  loop.num_iters = settings.num_iters;
  loop.sync_each_iter = settings.sync_each_iter;
  loop.min_duration_s =
      settings.min_duration_s ? *settings.min_duration_s : prefill_energy.min_window_s();
  loop.read_counter = prefill_energy.counter_reader();
  loop.counter_wait_s = prefill_energy.counter_wait_s();
  prefill_energy.start_sampling();
  const TimedLoopResult prefill_timing =
      run_timed_loop([&](std::int64_t) { run_prefill(); }, [&] { backend.synchronize(); }, loop,
                     [&] { prefill_energy.mark_start(); }, [&] { prefill_energy.mark_end(); });
  prefill_energy.stop_sampling();
  const auto prompts = static_cast<std::uint64_t>(prefill_timing.iterations * batch);
  const measure::EnergyResult prefill_result =
      prefill_energy.result(prefill_timing.t0_s, prefill_timing.t1_s, prompts);

  // Decode: one greedy token per row per step; every `new_tokens` steps the session rewinds to
  // the end of the prompt (device-to-device copies), so no prefill runs inside this window.
  prefill();
  model.mark_rewind_point(*session);
  // With a sync after every step, each step waits on the device behind a gate the host opens once
  // it has seen the step before finish (gated_steps.hpp), so the launch is off the host's path.
  std::unique_ptr<StepGate> gate =
      settings.sync_each_iter && graphs ? backend.make_step_gate() : nullptr;
  std::unique_ptr<CapturedGraph> step_graph = model.capture_greedy_step(*session, gate.get());
  // How the prompt's and the steps' heads pick the token (the same token either way:
  // argmax_bounds.hpp).
  const auto head_kind = [](bool bounded) {
    return std::string(bounded ? "bounded argmax (int8 scores of every row, exact logits of the "
                                 "candidates; EAQ_BOUNDED_ARGMAX=0 computes every logit)"
                               : "every logit, then argmax");
  };
  result.add(Section::Configuration, "greedy_head", "",
             head_kind(session->bounded_head_steps() > 0));
  result.add(Section::Configuration, "greedy_head_prompt", "",
             head_kind(session->bounded_head_prompts() > 0));
  result.add(Section::Configuration, "step_gate", "",
             std::string(gate ? "each step enqueued while the one before runs, held on the device "
                                "until the host has seen that one finish"
                              : "none: each step is launched when the one before has been seen "
                                "to finish, or without a sync"));
  const auto step = [&](std::int64_t i) {
    if (i > 0 && i % new_tokens == 0) model.rewind(*session);
    step_graph->launch();
  };
  // The steps i = 0, 1, ... of one loop (a fresh GatedSteps for each loop: it counts from 0).
  std::unique_ptr<GatedSteps> gated;
  const auto iteration = [&](std::int64_t i) {
    if (gated)
      gated->run(i);
    else
      step(i);
  };
  const auto sync = [&] {
    if (gated)
      gated->sync();
    else
      backend.synchronize();
  };
  // After a gated loop: the step enqueued ahead runs too (outside the loop's window).
  const auto finish_loop = [&] {
    if (gated) gated->drain();
    gated.reset();
  };
  if (!settings.no_warmup) {
    if (gate) gated = std::make_unique<GatedSteps>(*gate, step);
    for (std::int64_t i = 0; i < new_tokens; ++i) {
      iteration(i);
      if (gated) gated->sync();
    }
    finish_loop();
    model.rewind(*session);
    backend.synchronize();
  }
  EnergySession decode_energy(context.meter, context.rapl, energy_options);
  TimedLoopOptions decode_loop = loop;
  decode_loop.num_iters = std::max<std::int64_t>(new_tokens, settings.num_iters);
  decode_loop.read_counter = decode_energy.counter_reader();
  if (gate) gated = std::make_unique<GatedSteps>(*gate, step);
  decode_energy.start_sampling();
  const TimedLoopResult decode_timing = run_timed_loop(
      iteration, sync, decode_loop, [&] { decode_energy.mark_start(); },
      [&] { decode_energy.mark_end(); });
  decode_energy.stop_sampling();
  finish_loop();
  const auto tokens = static_cast<std::uint64_t>(decode_timing.iterations * batch);
  // The decode window reuses the prefill window's idle baseline (same GPU, a minute apart).
  measure::EnergyResult decode_result =
      decode_energy.result(decode_timing.t0_s, decode_timing.t1_s, tokens);
  if (!decode_result.idle_power_w && prefill_result.idle_power_w) {
    const double idle = *prefill_result.idle_power_w;
    decode_result.idle_power_w = measure::Reading<double>::ok(idle);
    if (decode_result.total_energy_j) {
      const double dynamic =
          measure::dynamic_energy_j(*decode_result.total_energy_j, idle, decode_result.duration_s);
      decode_result.dynamic_energy_j = measure::Reading<double>::ok(dynamic);
      decode_result.dynamic_energy_per_inference_mj =
          measure::Reading<double>::ok(1e3 * dynamic / static_cast<double>(tokens));
    }
  }

  // The seed's fields describe the decode phase: an "inference" is one generated token.
  if (decode_timing.latencies_s.empty()) {
    const std::vector<double> single = {decode_timing.total_time_s() /
                                        static_cast<double>(decode_timing.iterations)};
    report::fill_latency(result, single, decode_timing.total_time_s(), tokens);
    for (const char* name : {"std_latency", "min_latency", "max_latency", "median_latency",
                             "p95_latency", "p99_latency"}) {
      result.set_unavailable(name, "per-step latency needs --sync-each-iter");
    }
  } else {
    report::fill_latency(result, decode_timing.latencies_s, decode_timing.total_time_s(), tokens);
  }
  report::fill_energy(result, decode_result);
  result.set("energy_window_edges", describe_window_edges(decode_loop, decode_timing));
  if (prefill_energy.idle())
    result.set("idle_power_source", prefill_energy.idle()->idle_power_source);
  for (const char* name : {"accuracy", "num_correct", "num_samples_accuracy"}) {
    result.set_unavailable(name, "generation task (see eaq perplexity for model quality)");
  }

  // Prefill and per-generation figures.
  const double prefill_mean =
      prefill_timing.total_time_s() / static_cast<double>(prefill_timing.iterations);
  measure::Reading<double> prefill_median = measure::Reading<double>::ok(prefill_mean);
  if (!prefill_timing.latencies_s.empty()) {
    if (const auto summary = measure::summarize(prefill_timing.latencies_s)) {
      prefill_median = measure::Reading<double>::ok(summary->median);
    }
  }
  add_metric(result, "time_to_first_token_s", "s", prefill_median);
  add_metric(result, "prefill_tokens_per_s", "tokens/s",
             measure::Reading<double>::ok(static_cast<double>(prompts * prompt_len) /
                                          prefill_timing.total_time_s()));
  add_metric(result, "prefill_energy_per_prompt_mj", "mJ", prefill_result.energy_per_inference_mj);
  add_metric(result, "prefill_dynamic_energy_per_prompt_mj", "mJ",
             prefill_result.dynamic_energy_per_inference_mj);
  result.add(Section::Metrics, "prefill_energy_quality", "", prefill_result.quality.summary());
  result.add(Section::Metrics, "prefill_energy_window_edges", "",
             describe_window_edges(loop, prefill_timing));
  add_metric(
      result, "decode_tokens_per_s", "tokens/s",
      measure::Reading<double>::ok(static_cast<double>(tokens) / decode_timing.total_time_s()));
  measure::Reading<double> per_generation = measure::Reading<double>::unavailable(
      prefill_result.energy_per_inference_mj ? decode_result.energy_per_inference_mj.reason()
                                             : prefill_result.energy_per_inference_mj.reason());
  if (prefill_result.energy_per_inference_mj && decode_result.energy_per_inference_mj) {
    per_generation = measure::Reading<double>::ok(*prefill_result.energy_per_inference_mj +
                                                  static_cast<double>(new_tokens) *
                                                      *decode_result.energy_per_inference_mj);
  }
  add_metric(result, "energy_per_generation_mj", "mJ", per_generation);

  fill_model_fields(result, backend, model.linear_layers(), model.num_parameters(),
                    context.weight_bytes);
  fill_provenance(result, start_snapshot, context.meter, context.command_line);
  step_graph.reset();
  gate.reset();  // after the graph that polls it
  prefill_graph.reset();
  session.reset();
  backend.release(prompt_ids);
  return result;
}

}  // namespace eaq::run
