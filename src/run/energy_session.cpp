#include "run/energy_session.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "measure/power_logger.hpp"
#include "measure/smi_logger.hpp"

namespace eaq::run {

PowerSource parse_power_source(const std::string& name) {
  if (name == "nvml") return PowerSource::Nvml;
  if (name == "nvidia-smi") return PowerSource::NvidiaSmi;
  if (name == "none") return PowerSource::None;
  fail("--power-source {}: unknown; choose nvml, nvidia-smi or none", name);
}

const char* power_source_name(PowerSource source) {
  switch (source) {
    case PowerSource::Nvml:
      return "nvml";
    case PowerSource::NvidiaSmi:
      return "nvidia-smi";
    case PowerSource::None:
      return "none";
  }
  return "none";
}

EnergySession::EnergySession(const measure::GpuMeter& meter, const measure::RaplMeter* rapl,
                             EnergySessionOptions options)
    : meter_(meter), rapl_(rapl), options_(options) {
  if (options_.source == PowerSource::None) {
    no_energy_reason_ = "--power-source none";
  } else if (!meter_.available() && !(rapl_ && rapl_->available())) {
    // A GPU run without NVML says so; a CPU run has only RAPL to offer.
    no_energy_reason_ =
        rapl_ && !meter_.available() &&
                meter_.unavailable_reason().find("--device cpu") != std::string::npos
            ? rapl_->unavailable_reason()
            : meter_.unavailable_reason();
  }
  if (!no_energy_reason_.empty() || !meter_.available()) return;
  if (options_.source == PowerSource::Nvml) {
    measure::PowerLoggerOptions logger;
    logger.interval = options_.sample_interval;
    sampler_ = std::make_unique<measure::PowerLogger>(meter_, logger);
  } else {
    measure::SmiLoggerOptions smi;
    smi.gpu_index = options_.smi_gpu_index;
    smi.interval = options_.sample_interval;
    sampler_ = std::make_unique<measure::SmiPowerLogger>(smi);
  }
}

EnergySession::~EnergySession() {
  stop_sampling();
}

void EnergySession::measure_idle() {
  if (!meter_.available() || options_.source == PowerSource::None || options_.idle_seconds <= 0) {
    return;
  }
  measure::PowerLoggerOptions logger;
  logger.interval = options_.sample_interval;
  idle_ = measure::measure_idle_baseline(
      meter_, std::chrono::milliseconds(static_cast<long>(options_.idle_seconds * 1000)), logger);
}

double EnergySession::min_window_s() const {
  double window = 0.0;
  if (idle_ && idle_->counter_update_period_s) {
    window = measure::min_window_for_counter_s(*idle_->counter_update_period_s);
  }
  if (sampler_) {
    // Room for the minimum number of power samples with one interval to spare: a window of
    // exactly 10 intervals often holds only 9 samples.
    const double interval_s = std::chrono::duration<double>(options_.sample_interval).count();
    window = std::max(
        window, static_cast<double>(measure::QualityThresholds{}.min_samples + 1) * interval_s);
  }
  return window;
}

std::function<std::optional<std::uint64_t>()> EnergySession::counter_reader() const {
  if (!no_energy_reason_.empty() || !meter_.available()) return nullptr;
  return [&meter = meter_]() -> std::optional<std::uint64_t> {
    const measure::Reading<std::uint64_t> mj = meter.energy_mj();
    return mj ? std::optional<std::uint64_t>(*mj) : std::nullopt;
  };
}

double EnergySession::counter_wait_s() const {
  const double period_s =
      idle_ && idle_->counter_update_period_s ? *idle_->counter_update_period_s : 0.1;
  return std::max(0.25, 2.5 * period_s);
}

void EnergySession::start_sampling() {
  if (sampler_) sampler_->start();
}

void EnergySession::mark_start() {
  if (!no_energy_reason_.empty()) return;
  if (meter_.available())
    start_mark_ = measure::mark_energy(meter_);
  else if (rapl_ && rapl_->available()) {
    if (auto r = rapl_->read()) rapl_start_ = *r;
  }
}

void EnergySession::mark_end() {
  if (!no_energy_reason_.empty()) return;
  if (meter_.available())
    end_mark_ = measure::mark_energy(meter_);
  else if (rapl_ && rapl_->available()) {
    if (auto r = rapl_->read()) rapl_end_ = *r;
  }
}

void EnergySession::stop_sampling() {
  if (sampler_ && sampler_->running()) sampler_->stop();
}

measure::EnergyResult EnergySession::result(double t0_s, double t1_s,
                                            std::uint64_t num_inferences) const {
  measure::EnergyInputs in;
  in.t0_s = t0_s;
  in.t1_s = t1_s;
  in.num_inferences = num_inferences;
  const std::string reason = no_energy_reason_;
  if (!reason.empty()) {
    in.counter.joules = measure::Reading<double>::unavailable(reason);
    in.power_samples_w = measure::Reading<std::vector<measure::TimedValue>>::unavailable(
        meter_.available() ? reason : "no GPU power meter");
    in.idle_power_w = measure::Reading<double>::unavailable(reason);
    return measure::compute_energy(in);
  }
  if (meter_.available()) {
    in.counter = measure::energy_between(start_mark_, end_mark_);
    in.counter_source = "nvml_counter";
  } else if (rapl_start_ && rapl_end_) {
    in.counter = rapl_->energy_between(*rapl_start_, *rapl_end_);
    in.counter_source = "rapl";
  } else {
    in.counter.joules =
        measure::Reading<double>::unavailable("the energy counter could not be read");
  }
  if (idle_ && idle_->counter_update_period_s) {
    in.counter_update_period_s = *idle_->counter_update_period_s;
  }
  if (sampler_) {
    in.power_samples_w = measure::power_samples_or_reason(*sampler_);
    in.samples_source = sampler_->source_name();
    if (!in.counter_update_period_s) {
      if (const auto* logger = dynamic_cast<const measure::PowerLogger*>(sampler_.get())) {
        if (auto period = logger->observed_counter_update_period_s())
          in.counter_update_period_s = *period;
      }
    }
  } else {
    in.power_samples_w = measure::Reading<std::vector<measure::TimedValue>>::unavailable(
        meter_.available() ? "no power sampler" : "power samples need a GPU (NVML)");
  }
  if (idle_) {
    in.idle_power_w = idle_->idle_power_w;
  } else {
    in.idle_power_w = measure::Reading<double>::unavailable(
        options_.idle_seconds <= 0 ? "--idle-seconds 0" : "no idle baseline on this device");
  }
  return measure::compute_energy(in);
}

}  // namespace eaq::run
