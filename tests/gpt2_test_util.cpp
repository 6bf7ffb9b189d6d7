#include "gpt2_test_util.hpp"

#include <fmt/format.h>

#include <cstring>

#include "io/safetensors.hpp"
#include "test_util.hpp"

namespace eaq::test {

nlohmann::json random_gpt2_config(const RandomGpt2Spec& s) {
  nlohmann::json c;
  c["model_type"] = "gpt2";
  c["architectures"] = {s.prefixed ? "GPT2LMHeadModel" : "GPT2Model"};
  c["vocab_size"] = s.vocab;
  c["n_positions"] = s.positions;
  c["n_embd"] = s.hidden;
  c["n_layer"] = s.layers;
  c["n_head"] = s.heads;
  c["n_inner"] = s.inner > 0 ? nlohmann::json(s.inner) : nlohmann::json(nullptr);
  c["activation_function"] = s.activation;
  c["layer_norm_epsilon"] = 1e-5;
  c["tie_word_embeddings"] = s.tied;
  c["bos_token_id"] = s.vocab - 1;
  c["eos_token_id"] = s.vocab - 1;
  return c;
}

void write_random_gpt2(const std::filesystem::path& dir, const RandomGpt2Spec& s) {
  std::filesystem::create_directories(dir);
  write_text(dir / "config.json", random_gpt2_config(s).dump(2));
  std::vector<std::pair<std::string, HostTensor>> tensors;
  unsigned seed = s.seed * 1000;
  const std::string base = s.prefixed ? "transformer." : "";
  const auto add = [&](const std::string& name, Shape shape) {
    tensors.emplace_back(base + name, random_f32(std::move(shape), ++seed, s.weight_scale));
  };
  const auto add_norm = [&](const std::string& name) {
    HostTensor w = random_f32({s.hidden}, ++seed, 0.1f);
    for (std::int64_t i = 0; i < w.numel(); ++i) w.mutable_data<float>()[i] += 1.0f;
    tensors.emplace_back(base + name + ".weight", w);
    add(name + ".bias", {s.hidden});
  };
  const int inner = s.inner > 0 ? s.inner : 4 * s.hidden;
  add("wte.weight", {s.vocab, s.hidden});
  add("wpe.weight", {s.positions, s.hidden});
  for (int l = 0; l < s.layers; ++l) {
    const std::string h = fmt::format("h.{}.", l);
    add_norm(h + "ln_1");
    add(h + "attn.c_attn.weight", {s.hidden, 3 * s.hidden});
    add(h + "attn.c_attn.bias", {3 * s.hidden});
    add(h + "attn.c_proj.weight", {s.hidden, s.hidden});
    add(h + "attn.c_proj.bias", {s.hidden});
    add_norm(h + "ln_2");
    add(h + "mlp.c_fc.weight", {s.hidden, inner});
    add(h + "mlp.c_fc.bias", {inner});
    add(h + "mlp.c_proj.weight", {inner, s.hidden});
    add(h + "mlp.c_proj.bias", {s.hidden});
    if (s.legacy_buffers) {
      tensors.emplace_back(base + h + "attn.bias",
                           HostTensor::empty(DType::F32, {1, 1, s.positions, s.positions}));
      tensors.emplace_back(base + h + "attn.masked_bias", HostTensor::from_f32({}, {-1e4f}));
    }
  }
  add_norm("ln_f");
  if (!s.tied)
    tensors.emplace_back("lm_head.weight", random_f32({s.vocab, s.hidden}, ++seed, s.weight_scale));
  write_safetensors((dir / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

HostTensor columns(const HostTensor& x, std::int64_t begin, std::int64_t end) {
  const std::vector<std::int64_t> values = x.to_i64();
  const std::int64_t rows = x.dim(0), width = x.dim(1);
  std::vector<std::int32_t> out;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = begin; c < end; ++c)
      out.push_back(static_cast<std::int32_t>(values[r * width + c]));
  }
  return HostTensor::from_i32({rows, end - begin}, out);
}

HostTensor rows_where(const HostTensor& x, const std::vector<std::int64_t>& keep) {
  const HostTensor f = x.to_f32();
  const std::int64_t rows = static_cast<std::int64_t>(keep.size());
  const std::int64_t width = f.numel() / rows;
  std::vector<float> out;
  for (std::int64_t r = 0; r < rows; ++r) {
    if (keep[r] == 0) continue;
    out.insert(out.end(), f.data<float>() + r * width, f.data<float>() + (r + 1) * width);
  }
  return HostTensor::from_f32({static_cast<std::int64_t>(out.size()) / width, width}, out);
}

HostTensor positions_of(const HostTensor& x, std::int64_t begin, std::int64_t end) {
  const HostTensor f = x.to_f32();
  const std::int64_t batch = f.dim(0), len = f.dim(1);
  const std::int64_t width = f.numel() / (batch * len);
  std::vector<float> out;
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* base = f.data<float>() + (b * len + begin) * width;
    out.insert(out.end(), base, base + (end - begin) * width);
  }
  return HostTensor::from_f32({batch * (end - begin), width}, out);
}

std::vector<std::int64_t> ones(std::int64_t count) {
  return std::vector<std::int64_t>(static_cast<std::size_t>(count), 1);
}

}  // namespace eaq::test
