// The public API (include/eaq/eaq.hpp) as a thin layer over the internal harness: the same code
// paths `eaq measure` uses.
#include "eaq/eaq.hpp"

#include "backend/factory.hpp"
#include "io/dataset.hpp"
#include "io/json_file.hpp"
#include "io/model_folder.hpp"
#include "measure/clock.hpp"
#include "measure/energy.hpp"
#include "measure/energy_window.hpp"
#include "measure/nvml.hpp"
#include "measure/power_logger.hpp"
#include "model/encoder.hpp"
#include "run/classification_harness.hpp"
#include "run/timed_loop.hpp"

namespace eaq {

// --- datasets
// -------------------------------------------------------------------------------------

struct PreTokenizedDataset::Impl {
  Dataset dataset;
};

PreTokenizedDataset::PreTokenizedDataset(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PreTokenizedDataset::~PreTokenizedDataset() = default;
PreTokenizedDataset::PreTokenizedDataset(PreTokenizedDataset&&) noexcept = default;
PreTokenizedDataset& PreTokenizedDataset::operator=(PreTokenizedDataset&&) noexcept = default;
const std::string& PreTokenizedDataset::path() const {
  return impl_->dataset.path();
}
std::int64_t PreTokenizedDataset::size() const {
  return impl_->dataset.size();
}
std::int64_t PreTokenizedDataset::sequence_length() const {
  return impl_->dataset.sequence_length();
}
bool PreTokenizedDataset::has_labels() const {
  return impl_->dataset.labels() != nullptr;
}
const std::map<std::string, std::string>& PreTokenizedDataset::metadata() const {
  return impl_->dataset.metadata();
}

PreTokenizedDataset load_pre_tokenized(const std::string& path) {
  return PreTokenizedDataset(std::make_unique<PreTokenizedDataset::Impl>(
      PreTokenizedDataset::Impl{Dataset::load(path, std::nullopt)}));
}

// --- models
// ---------------------------------------------------------------------------------------

struct Model::Impl {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<EncoderModel> model;
  std::unique_ptr<measure::GpuMeter> meter;
  // The harness of the last (dataset, batch size): its device copy and graph are reused.
  const PreTokenizedDataset* data = nullptr;
  std::int64_t batch_size = 0;
  std::unique_ptr<run::ClassificationHarness> harness;

  run::ClassificationHarness& harness_for(const PreTokenizedDataset& d, std::int64_t batch) {
    if (!harness || data != &d || batch_size != batch) {
      harness.reset();
      harness = std::make_unique<run::ClassificationHarness>(*backend, *model, d.impl().dataset,
                                                             batch, backend->is_cuda());
      data = &d;
      batch_size = batch;
    }
    return *harness;
  }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() {
  if (impl_) impl_->harness.reset();  // before the model and backend it uses
}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
std::string Model::architecture() const {
  return impl_->model->config().architecture;
}
std::string Model::precision() const {
  return std::string(precision_name(impl_->backend->precision()));
}
std::string Model::backend() const {
  return impl_->backend->name();
}
std::int64_t Model::num_parameters() const {
  return impl_->model->num_parameters();
}

Model load_model(const std::string& name_or_dir, const std::string& precision,
                 const std::string& device, int gpu_id) {
  auto impl = std::make_unique<Model::Impl>();
  impl->backend = make_backend({device, parse_precision(precision, "precision"), gpu_id});
  impl->model = EncoderModel::load(resolve_model_path(name_or_dir), *impl->backend);
  if (impl->backend->is_cuda()) {
    impl->meter = measure::open_nvml_meter_by_pci_bus_id(impl->backend->pci_bus_id());
  }
  return Model(std::move(impl));
}

void warmup(Model& model, const PreTokenizedDataset& data, std::int64_t num_steps,
            std::int64_t batch_size) {
  run::ClassificationHarness& harness = model.impl().harness_for(data, batch_size);
  for (std::int64_t i = 0; i < num_steps; ++i) harness.run_iteration(i);
  harness.synchronize();
}

InferenceResults run_inference(Model& model, const PreTokenizedDataset& data,
                               std::int64_t num_iters, std::int64_t batch_size) {
  run::ClassificationHarness& harness = model.impl().harness_for(data, batch_size);
  const measure::GpuMeter* meter = model.impl().meter.get();
  measure::EnergyMark start, end;
  run::TimedLoopOptions options;
  options.num_iters = num_iters;
  const run::TimedLoopResult timing = run::run_timed_loop(
      [&](std::int64_t i) { harness.run_iteration(i); }, [&] { harness.synchronize(); }, options,
      [&] {
        if (meter) start = measure::mark_energy(*meter);
      },
      [&] {
        if (meter) end = measure::mark_energy(*meter);
      });
  InferenceResults results;
  results.latencies_s = timing.latencies_s;
  results.total_time_s = timing.total_time_s();
  results.num_iters = timing.iterations;
  results.num_inferences = timing.iterations * batch_size;
  results.window_start_s = timing.t0_s;
  results.window_end_s = timing.t1_s;
  if (start.energy_mj && end.energy_mj) {
    results.energy_counter_start_mj = *start.energy_mj;
    results.energy_counter_end_mj = *end.energy_mj;
  }
  return results;
}

// --- power
// ----------------------------------------------------------------------------------------

struct PowerLogger::Impl {
  std::unique_ptr<measure::GpuMeter> meter;
  std::unique_ptr<measure::PowerLogger> logger;
};

PowerLogger::PowerLogger(int sample_interval_ms, int gpu_id) : impl_(std::make_unique<Impl>()) {
  impl_->meter = measure::open_nvml_meter(static_cast<unsigned>(gpu_id));
  measure::PowerLoggerOptions options;
  options.interval = std::chrono::milliseconds(sample_interval_ms);
  impl_->logger = std::make_unique<measure::PowerLogger>(*impl_->meter, options);
}
PowerLogger::~PowerLogger() = default;
bool PowerLogger::start() {
  return impl_->logger->start();
}
void PowerLogger::stop() {
  impl_->logger->stop();
}
std::string PowerLogger::unavailable_reason() const {
  return impl_->logger->unavailable_reason();
}

std::vector<PowerSample> PowerLogger::read() const {
  std::vector<PowerSample> out;
  for (const measure::PowerSample& s : impl_->logger->samples()) {
    out.push_back({s.t_s, s.power_w, s.instant_power_w, s.energy_mj});
  }
  return out;
}

EnergyReport compute_energy(const std::vector<PowerSample>& samples,
                            const InferenceResults& results) {
  measure::EnergyInputs in;
  in.t0_s = results.window_start_s;
  in.t1_s = results.window_end_s;
  in.num_inferences = static_cast<std::uint64_t>(results.num_inferences);
  if (results.energy_counter_start_mj && results.energy_counter_end_mj) {
    in.counter = measure::nvml_energy_delta(*results.energy_counter_start_mj,
                                            *results.energy_counter_end_mj);
  } else {
    in.counter.joules = measure::Reading<double>::unavailable("no energy counter was read");
  }
  std::vector<measure::PowerSample> internal;
  for (const PowerSample& s : samples)
    internal.push_back({s.t_s, s.power_w, s.instant_power_w, s.energy_mj});
  const std::vector<measure::CounterReading> counter = measure::energy_counter_series(internal);
  in.counter_update_period_s = measure::counter_update_period_s(counter);
  const auto series = measure::power_series(internal);
  if (series.empty()) {
    in.power_samples_w =
        measure::Reading<std::vector<measure::TimedValue>>::unavailable("no power samples");
  } else {
    in.power_samples_w = measure::Reading<std::vector<measure::TimedValue>>::ok(series);
  }
  in.idle_power_w = measure::Reading<double>::unavailable("the API measures no idle baseline");
  const measure::EnergyResult energy = measure::compute_energy(in);
  EnergyReport report;
  report.total_energy_j = energy.total_energy_j.optional();
  report.energy_per_inference_j = energy.energy_per_inference_j.optional();
  report.energy_per_inference_mj = energy.energy_per_inference_mj.optional();
  report.inferences_per_joule = energy.inferences_per_joule.optional();
  if (energy.power_w) report.mean_power_w = energy.power_w->mean;
  report.num_power_samples = energy.num_power_samples;
  report.source = energy.energy_source;
  report.quality = energy.quality.summary();
  if (!energy.total_energy_j) report.unavailable_reason = energy.total_energy_j.reason();
  return report;
}

}  // namespace eaq
