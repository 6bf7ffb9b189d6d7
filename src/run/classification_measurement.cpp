#include "run/classification_measurement.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "measure/system_info.hpp"
#include "report/result_fill.hpp"
#include "run/classification_harness.hpp"
#include "run/timed_loop.hpp"
#include "run/trial_common.hpp"

namespace eaq::run {

void fill_configuration(report::Result& result, const MeasureSettings& s) {
  result.set("model", s.model);
  result.set("precision", std::string(precision_name(s.precision)));
  result.set("dataset", s.dataset);
  result.set("num_iters", s.num_iters);
  result.set("warmup_steps", s.warmup_steps);
  result.set("power_sample_interval", s.power_sample_interval_ms);
  result.set("device", s.device);
  result.set("gpu_id", s.gpu_id);
  result.set("output", s.output.empty() ? std::string("auto") : s.output);
  result.set("trial", s.trial);
  result.set("no_warmup", s.no_warmup);
  result.set("batch_size", s.batch_size);
  result.set("power_source", std::string(power_source_name(s.power_source)));
  result.set("idle_seconds", s.idle_seconds);
  if (s.min_duration_s)
    result.set("min_duration_s", *s.min_duration_s);
  else
    result.set_unavailable("min_duration_s",
                           "auto: 10 energy-counter update periods and 11 power-sample intervals");
  result.set("sync_each_iter", s.sync_each_iter);
  result.add(report::Section::Configuration, "cuda_graphs", "", s.cuda_graphs);
}

report::Result run_classification_trial(const MeasureSettings& settings, TrialContext& context) {
  Backend& backend = context.backend;
  const bool on_gpu = backend.is_cuda();
  report::Result result = report::Result::from_schema();
  fill_configuration(result, settings);

  const measure::SystemSnapshot start_snapshot = measure::take_system_snapshot(context.meter);
  ClassificationHarness harness(backend, context.model, context.dataset, settings.batch_size,
                                settings.cuda_graphs && on_gpu);

  EnergySessionOptions energy_options;
  energy_options.source = settings.power_source;
  energy_options.sample_interval = std::chrono::milliseconds(settings.power_sample_interval_ms);
  energy_options.idle_seconds = settings.idle_seconds;
  energy_options.smi_gpu_index = context.meter.index();
  EnergySession energy(context.meter, context.rapl, energy_options);
  // Idle first: after the warm-up the GPU holds its clocks high for a while.
  harness.synchronize();
  energy.measure_idle();

  if (!settings.no_warmup) {
    for (std::int64_t i = 0; i < settings.warmup_steps; ++i) harness.run_iteration(i);
    harness.synchronize();
  }

  TimedLoopOptions loop;
  loop.num_iters = settings.num_iters;
  loop.sync_each_iter = settings.sync_each_iter;
  loop.min_duration_s = settings.min_duration_s ? *settings.min_duration_s : energy.min_window_s();
  loop.read_counter = energy.counter_reader();
  loop.counter_wait_s = energy.counter_wait_s();
  energy.start_sampling();
  const TimedLoopResult timing = run_timed_loop(
      [&](std::int64_t i) { harness.run_iteration(i); }, [&] { harness.synchronize(); }, loop,
      [&] { energy.mark_start(); }, [&] { energy.mark_end(); });
  energy.stop_sampling();

  const auto num_inferences = static_cast<std::uint64_t>(timing.iterations * settings.batch_size);
  if (timing.latencies_s.empty()) {
    const double mean = timing.total_time_s() / static_cast<double>(timing.iterations);
    const std::vector<double> single = {mean};
    report::fill_latency(result, single, timing.total_time_s(), num_inferences);
    for (const char* name : {"std_latency", "min_latency", "max_latency", "median_latency",
                             "p95_latency", "p99_latency"}) {
      result.set_unavailable(name, "per-iteration latency needs --sync-each-iter");
    }
  } else {
    report::fill_latency(result, timing.latencies_s, timing.total_time_s(), num_inferences);
  }
  report::fill_energy(result, energy.result(timing.t0_s, timing.t1_s, num_inferences));
  result.set("energy_window_edges", describe_window_edges(loop, timing));
  if (energy.idle())
    result.set("idle_power_source", energy.idle()->idle_power_source);
  else
    result.set_unavailable("idle_power_source", energy.no_energy_reason().empty()
                                                    ? "no idle baseline"
                                                    : energy.no_energy_reason());

  if (context.dataset.labels()) {
    const AccuracyResult accuracy = harness.accuracy();
    result.set("accuracy", accuracy.accuracy());
    result.set("num_correct", accuracy.num_correct);
    result.set("num_samples_accuracy", accuracy.num_samples);
  } else {
    for (const char* name : {"accuracy", "num_correct", "num_samples_accuracy"}) {
      result.set_unavailable(name, "the dataset has no labels");
    }
  }

  fill_model_fields(result, backend, context.model.linear_layers(), context.model.num_parameters(),
                    context.weight_bytes);
  fill_provenance(result, start_snapshot, context.meter, context.command_line);
  return result;
}

}  // namespace eaq::run
