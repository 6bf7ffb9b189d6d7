// A Backend decorator for calibration: forwards every op to the wrapped backend and records the
// absolute values of the input of each linear() call, by Linear name. It downloads every Linear
// input to the host (a synchronization per call), which is fine because calibration is not timed.
//
// Inputs whose row count equals the token mask's length are taken to be per-token: rows whose
// mask entry is 0 (padding) are left out of the statistics. Other inputs (e.g. a classifier
// head's [batch, hidden]) are recorded whole.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "quant/calibration_stats.hpp"

namespace eaq::quant {

class CalibratingBackend final : public Backend {
 public:
  explicit CalibratingBackend(Backend& inner, int histogram_bins = 4096)
      : inner_(inner), bins_(histogram_bins) {}

  // 1 = real token, 0 = padding, over the [batch * seq] rows of the next forward.
  void set_token_mask(std::vector<std::uint8_t> mask) { token_mask_ = std::move(mask); }
  const std::map<std::string, AbsHistogram>& statistics() const { return statistics_; }

  std::string name() const override { return "calibrating " + inner_.name(); }
  Precision precision() const override { return inner_.precision(); }
  DType activation_dtype() const override { return inner_.activation_dtype(); }
  bool is_cuda() const override { return inner_.is_cuda(); }
  std::string pci_bus_id() const override { return inner_.pci_bus_id(); }
  std::string attention_kernel() const override { return inner_.attention_kernel(); }

  DeviceTensor allocate(DType dtype, Shape shape) override {
    return inner_.allocate(dtype, std::move(shape));
  }
  void release(DeviceTensor& tensor) override { inner_.release(tensor); }
  DeviceTensor upload(const HostTensor& host, DType dtype) override {
    return inner_.upload(host, dtype);
  }
  HostTensor download(const DeviceTensor& device) override { return inner_.download(device); }
  void copy(const DeviceTensor& src, DeviceTensor& dst) override { inner_.copy(src, dst); }
  void synchronize() override { inner_.synchronize(); }
  MemoryStats memory_stats() const override { return inner_.memory_stats(); }

  std::unique_ptr<LinearWeights> prepare_linear(const HostTensor& weight, const HostTensor* bias,
                                                const LinearOptions& options) override {
    return inner_.prepare_linear(weight, bias, options);
  }

  void embed(const DeviceTensor& ids, const DeviceTensor& word_table,
             const DeviceTensor* position_ids, const DeviceTensor* position_table,
             const DeviceTensor* type_ids, const DeviceTensor* type_table,
             DeviceTensor& out) override {
    inner_.embed(ids, word_table, position_ids, position_table, type_ids, type_table, out);
  }
  void layer_norm(const DeviceTensor& x, const DeviceTensor* residual, const DeviceTensor& gamma,
                  const DeviceTensor& beta, float eps, DeviceTensor& out) override {
    inner_.layer_norm(x, residual, gamma, beta, eps, out);
  }
  void linear(const DeviceTensor& x, const LinearWeights& weights, Activation activation,
              DeviceTensor& y) override;
  void attention(const AttentionArgs& args) override { inner_.attention(args); }
  void add(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out) override {
    inner_.add(a, b, out);
  }
  void gather_rows(const DeviceTensor& x, const DeviceTensor& index, DeviceTensor& out) override {
    inner_.gather_rows(x, index, out);
  }
  void copy_rows_strided(const void* src, std::int64_t src_row_stride, void* dst,
                         std::int64_t dst_row_stride, std::int64_t rows, std::int64_t cols,
                         DType dtype) override {
    inner_.copy_rows_strided(src, src_row_stride, dst, dst_row_stride, rows, cols, dtype);
  }
  void start_prompt(const PromptState& state) override { inner_.start_prompt(state); }
  void write_cache(const CacheWrite& args) override { inner_.write_cache(args); }
  void mark_cache_slot(const DeviceTensor& slot, DeviceTensor& key_mask) override {
    inner_.mark_cache_slot(slot, key_mask);
  }
  void increment(DeviceTensor& values) override { inner_.increment(values); }
  void argmax_rows(const DeviceTensor& x, DeviceTensor& out) override {
    inner_.argmax_rows(x, out);
  }
  void token_nll(const DeviceTensor& logits, const DeviceTensor& targets,
                 DeviceTensor& nll) override {
    inner_.token_nll(logits, targets, nll);
  }
  // layer_norm_linear and feed_forward keep Backend's defaults, which call this->linear: every
  // Linear input passes through the recorder.

  std::unique_ptr<CapturedGraph> capture(const std::function<void()>& body) override;

 private:
  Backend& inner_;
  int bins_;
  std::vector<std::uint8_t> token_mask_;
  std::map<std::string, AbsHistogram> statistics_;
};

}  // namespace eaq::quant
