// eaq's C++ API: the seed's Python API (load_pre_tokenized, load_model, warmup, PowerLogger,
// run_inference, compute_energy) with the same flow:
//
//   auto data = eaq::load_pre_tokenized("datasets/sentiment-small");
//   auto model = eaq::load_model("models/sentiment-distilbert", "fp16");
//   eaq::warmup(model, data, 100);
//   eaq::PowerLogger logger(100);
//   logger.start();
//   auto results = eaq::run_inference(model, data, 1000);
//   logger.stop();
//   auto energy = eaq::compute_energy(logger.read(), results);
//
// Link with find_package(eaq) and target eaq::eaq. Errors are thrown as std::runtime_error with a
// message naming the file, flag or value at fault.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace eaq {

// A pre-tokenized dataset folder (dataset.safetensors), loaded into host memory.
class PreTokenizedDataset {
 public:
  ~PreTokenizedDataset();
  PreTokenizedDataset(PreTokenizedDataset&&) noexcept;
  PreTokenizedDataset& operator=(PreTokenizedDataset&&) noexcept;

  const std::string& path() const;
  std::int64_t size() const;             // examples
  std::int64_t sequence_length() const;  // tokens per example (padded)
  bool has_labels() const;
  const std::map<std::string, std::string>& metadata() const;

  struct Impl;
  explicit PreTokenizedDataset(std::unique_ptr<Impl> impl);
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

PreTokenizedDataset load_pre_tokenized(const std::string& path);

// A classifier loaded onto a device in one precision ("fp32", "fp16", "int8", ...).
class Model {
 public:
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  std::string architecture() const;  // e.g. "DistilBertForSequenceClassification"
  std::string precision() const;
  std::string backend() const;  // e.g. "cuda:0 NVIDIA H100 80GB HBM3 (sm_90)" or "cpu"
  std::int64_t num_parameters() const;

  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// `name_or_dir`: a Hugging Face model folder or a hub name in the local cache. `device`: "cuda"
// or "cpu".
Model load_model(const std::string& name_or_dir, const std::string& precision,
                 const std::string& device = "cuda", int gpu_id = 0);

// Runs `num_steps` batches and waits for the device.
void warmup(Model& model, const PreTokenizedDataset& data, std::int64_t num_steps = 100,
            std::int64_t batch_size = 32);

struct InferenceResults {
  std::vector<double> latencies_s;  // per iteration (one batch), after a device sync
  double total_time_s = 0;
  std::int64_t num_iters = 0;
  std::int64_t num_inferences = 0;  // num_iters x batch_size
  double window_start_s = 0;        // steady clock, for compute_energy
  double window_end_s = 0;
  // The GPU's energy counter read after a sync at both ends (empty without NVML or on the CPU).
  std::optional<std::uint64_t> energy_counter_start_mj;
  std::optional<std::uint64_t> energy_counter_end_mj;
};

// The measured loop: no I/O, no host-device copies, a sync after each iteration.
InferenceResults run_inference(Model& model, const PreTokenizedDataset& data,
                               std::int64_t num_iters = 1000, std::int64_t batch_size = 32);

struct PowerSample {
  double t_s = 0;  // steady clock seconds (the clock InferenceResults' window uses)
  std::optional<double> power_w;
  std::optional<double> instant_power_w;
  std::optional<std::uint64_t> energy_mj;  // the NVML total-energy counter
};

// A thread sampling GPU power through NVML (loaded at run time; unavailable without it).
class PowerLogger {
 public:
  explicit PowerLogger(int sample_interval_ms = 100, int gpu_id = 0);
  ~PowerLogger();
  PowerLogger(const PowerLogger&) = delete;
  PowerLogger& operator=(const PowerLogger&) = delete;

  bool start();  // false when no power source is available: see unavailable_reason()
  void stop();
  std::vector<PowerSample> read() const;
  std::string unavailable_reason() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct EnergyReport {
  // Each value is empty when it cannot be measured; `unavailable_reason` says why.
  std::optional<double> total_energy_j;
  std::optional<double> energy_per_inference_j;
  std::optional<double> energy_per_inference_mj;
  std::optional<double> inferences_per_joule;
  std::optional<double> mean_power_w;
  std::size_t num_power_samples = 0;
  std::string source;   // "nvml_counter", "nvml_power_samples" or "none"
  std::string quality;  // "ok" or quality flags joined by ';'
  std::string unavailable_reason;
};

// Energy over the results' window: the energy counter's delta when the samples carry it, else
// the trapezoid integral of the power samples.
EnergyReport compute_energy(const std::vector<PowerSample>& samples,
                            const InferenceResults& results);

}  // namespace eaq
