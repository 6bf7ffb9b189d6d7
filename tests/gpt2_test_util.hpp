// Helpers of the GPT-2 tests: random GPT-2 checkpoints and slicing of host tensors.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor.hpp"

namespace eaq::test {

struct RandomGpt2Spec {
  int vocab = 97, positions = 48, hidden = 32, layers = 2, heads = 4;
  int inner = 0;  // 0: n_inner null (4 * hidden)
  std::string activation = "gelu_new";
  bool tied = true;
  bool prefixed = true;         // GPT2LMHeadModel's "transformer." prefix
  bool legacy_buffers = false;  // old checkpoints' h.N.attn.bias / masked_bias buffers
  float weight_scale = 0.2f;
  unsigned seed = 1;
};

nlohmann::json random_gpt2_config(const RandomGpt2Spec& spec);
// Writes config.json and model.safetensors (F32, Conv1D layouts) into `dir`.
void write_random_gpt2(const std::filesystem::path& dir, const RandomGpt2Spec& spec);

// Columns [begin, end) of a [B, L] tensor, as I32.
HostTensor columns(const HostTensor& x, std::int64_t begin, std::int64_t end);
// The rows r of x [R, ...] (viewed as [R, rest]) where keep[r] != 0, stacked (F32).
HostTensor rows_where(const HostTensor& x, const std::vector<std::int64_t>& keep);
// x [B, L, ...] restricted to positions [begin, end) of dimension 1, as F32 [B * (end-begin),
// rest].
HostTensor positions_of(const HostTensor& x, std::int64_t begin, std::int64_t end);
std::vector<std::int64_t> ones(std::int64_t count);

}  // namespace eaq::test
