// GPT-2 on the CUDA backend: Hugging Face parity in fp32 (the golden checks the CPU runs), a
// tolerance per precision against the CPU reference (full forward and KV-cache decode), decode vs
// full forward on the GPU, graph-replayed greedy steps vs direct ones, and greedy tokens of the
// bundled gpt2-mini identical to the CPU's. Skips without a GPU.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "backend/cpu/cpu_backend.hpp"
#include "cuda_test_util.hpp"
#include "golden.hpp"
#include "gpt2_golden_checks.hpp"
#include "gpt2_test_util.hpp"
#include "io/safetensors.hpp"
#include "model/gpt2.hpp"
#include "model/gpt2_generate.hpp"
#include "run/gated_steps.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

// max |gpu - cpu| / max |cpu| on logits, per precision (as test_cuda_encoder.cpp).
const std::map<Precision, double> kLogitTolerance = {
    {Precision::Fp32, 1e-4},         {Precision::Tf32, 5e-3}, {Precision::Fp16, 1e-2},
    {Precision::Fp16Autocast, 1e-2}, {Precision::Bf16, 5e-2},
};

class CudaGpt2Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaGpt2Golden, Fp32MatchesHuggingFace) {
  EAQ_CUDA_BACKEND_OR_SKIP(gpu, Precision::Fp32);
  test::check_gpt2_fixture(*gpu, GetParam(), {});
}

INSTANTIATE_TEST_SUITE_P(HuggingFace, CudaGpt2Golden,
                         ::testing::ValuesIn(test::golden_fixtures_with_prefix({"gpt2"})));

TEST(CudaBundledGpt2, Fp32MatchesHuggingFaceAndTheCpusGreedyTokens) {
  EAQ_CUDA_BACKEND_OR_SKIP(gpu, Precision::Fp32);
  test::check_bundled_gpt2(*gpu, {});
  const SafetensorsFile ref = SafetensorsFile::open(
      (test::golden_dir() / "bundled" / "gpt2_reference.safetensors").string());
  const HostTensor prompt = test::columns(ref.tensor("input_ids"), 0, 16);
  const std::filesystem::path dir =
      std::filesystem::path(test::source_dir()) / "models" / "gpt2-mini";
  auto cpu = make_cpu_backend(Precision::Fp32);
  auto cpu_model = Gpt2Model::load(dir, *cpu);
  auto gpu_model = Gpt2Model::load(dir, *gpu);
  const HostTensor expected = greedy_generate(*cpu_model, prompt, nullptr, 48);
  for (bool graph : {false, true}) {
    const HostTensor tokens = greedy_generate(*gpu_model, prompt, nullptr, 48, {graph});
    EXPECT_EQ(tokens.to_i64(), expected.to_i64()) << "graph " << graph;
  }
}

// A random GPT-2 with head_dim 64 (the tensor-core attention path in f16/bf16 prefill).
struct RandomCase {
  test::TempDir dir;
  test::RandomGpt2Spec spec;
  HostTensor ids, mask, positions;  // left-padded prompt [3, 40] and generate()'s positions
  HostTensor steps;                 // [3, 8] tokens fed after the prompt
  RandomCase() {
    spec.vocab = 500;
    spec.positions = 128;
    spec.hidden = 128;
    spec.heads = 2;
    spec.layers = 3;
    spec.inner = 256;
    spec.weight_scale = 0.1f;
    test::write_random_gpt2(dir.path(), spec);
    std::mt19937 rng(11);
    const int batch = 3, width = 40;
    std::vector<std::int32_t> id(batch * width), m(id.size()), pos(id.size()), step(batch * 8);
    for (int b = 0; b < batch; ++b) {
      const int pad = b * 13;  // rows of 40, 27 and 14 tokens
      for (int t = 0; t < width; ++t) {
        id[b * width + t] = static_cast<std::int32_t>(rng() % 499);
        m[b * width + t] = t >= pad ? 1 : 0;
        pos[b * width + t] = t >= pad ? t - pad : 1;
      }
    }
    for (auto& s : step) s = static_cast<std::int32_t>(rng() % 499);
    ids = HostTensor::from_i32({batch, width}, id);
    mask = HostTensor::from_i32({batch, width}, m);
    positions = HostTensor::from_i32({batch, width}, pos);
    steps = HostTensor::from_i32({batch, 8}, step);
  }
};

struct Outputs {
  HostTensor full;      // forward_logits at mask-1 positions
  HostTensor decode;    // the 8 step logits [3 * 8, V] in (step, row) order
  HostTensor replayed;  // full-sequence logits at the 8 decoded positions, same order
};

Outputs run_case(Backend& backend, const RandomCase& c) {
  auto model = Gpt2Model::load(c.dir.path(), backend);
  Outputs out;
  std::vector<DeviceTensor> owned;
  const auto up = [&](const HostTensor& h) {
    owned.push_back(backend.upload(h, DType::I32));
    return owned.back();
  };
  const DeviceTensor mask = up(c.mask), positions = up(c.positions);
  out.full = test::rows_where(backend.download(model->forward_logits(up(c.ids), &mask, &positions)),
                              c.mask.to_i64());
  auto session = model->start_session(3, 48);
  model->prefill(*session, up(c.ids), &mask);
  std::vector<float> decoded;
  for (int s = 0; s < 8; ++s) {
    const HostTensor logits = backend.download(
        model->decode_step(*session, up(test::columns(c.steps, s, s + 1).reshaped({3}))));
    decoded.insert(decoded.end(), logits.data<float>(), logits.data<float>() + logits.numel());
  }
  const std::int64_t vocab = model->config().vocab_size;
  out.decode = HostTensor::from_f32({24, vocab}, decoded);
  // The same 48 tokens in one forward: prompt + steps, positions continuing each row's count.
  std::vector<std::int32_t> ids, m, pos;
  const auto prompt_ids = c.ids.to_i64(), prompt_mask = c.mask.to_i64(),
             prompt_pos = c.positions.to_i64();
  const auto step_ids = c.steps.to_i64();
  for (int b = 0; b < 3; ++b) {
    for (int t = 0; t < 40; ++t) {
      ids.push_back(static_cast<std::int32_t>(prompt_ids[b * 40 + t]));
      m.push_back(static_cast<std::int32_t>(prompt_mask[b * 40 + t]));
      pos.push_back(static_cast<std::int32_t>(prompt_pos[b * 40 + t]));
    }
    for (int s = 0; s < 8; ++s) {
      ids.push_back(static_cast<std::int32_t>(step_ids[b * 8 + s]));
      m.push_back(1);
      pos.push_back(static_cast<std::int32_t>(40 - b * 13 + s));
    }
  }
  const DeviceTensor all_mask = up(HostTensor::from_i32({3, 48}, m));
  const DeviceTensor all_pos = up(HostTensor::from_i32({3, 48}, pos));
  const HostTensor full = backend.download(
      model->forward_logits(up(HostTensor::from_i32({3, 48}, ids)), &all_mask, &all_pos));
  std::vector<float> replayed;
  for (int s = 0; s < 8; ++s) {
    for (int b = 0; b < 3; ++b) {
      const float* row = full.data<float>() + (b * 48 + 40 + s) * vocab;
      replayed.insert(replayed.end(), row, row + vocab);
    }
  }
  out.replayed = HostTensor::from_f32({24, vocab}, replayed);
  for (DeviceTensor& t : owned) backend.release(t);
  return out;
}

TEST(CudaGpt2, EveryFloatPrecisionWithinTolerance) {
  RandomCase c;
  auto cpu = make_cpu_backend(Precision::Fp32);
  const Outputs expected = run_case(*cpu, c);
  EXPECT_LE(test::max_relative_error(expected.decode, expected.replayed), 1e-5)
      << "CPU decode vs full";
  for (const auto& [precision, tolerance] : kLogitTolerance) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    const Outputs got = run_case(*gpu, c);
    const double full = test::max_relative_error(got.full, expected.full);
    const double decode = test::max_relative_error(got.decode, expected.decode);
    const double self = test::max_relative_error(got.decode, got.replayed);
    std::printf(
        "[ decoder   ] gpt2 E128 L3 %-14s full %.2e, decode %.2e, decode vs own full %.2e "
        "(tolerance %.0e)\n",
        std::string(precision_name(precision)).c_str(), full, decode, self, tolerance);
    EXPECT_LE(full, tolerance) << precision_name(precision) << " full forward";
    EXPECT_LE(decode, tolerance) << precision_name(precision) << " KV-cache decode";
    EXPECT_LE(self, tolerance) << precision_name(precision) << " decode vs full forward on the GPU";
  }
}

// The quantized precisions' decode steps (3 rows: the GEMV of quantized_gemv.cu for every
// Linear but the LM head) against the same model on the GEMM path (EAQ_QUANTIZED_GEMV=0), and
// against the full forward (GEMMs either way). The two paths quantize the same values except
// where a LayerNorm or a residual sum rounds differently by an f16 ulp, which can move a
// quantized value by a step; the tolerances are those of each precision's quantization noise
// (on this model the GEMM path's fp8 decode is itself 5.6e-2 from its full forward).
TEST(CudaGpt2, QuantizedDecodeGemvMatchesTheGemmPath) {
  RandomCase c;
  const std::map<Precision, double> tolerance = {
      {Precision::Int8, 5e-2}, {Precision::Int8WeightOnly, 1e-2}, {Precision::Fp8, 1e-1}};
  for (const auto& [precision, allowed] : tolerance) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    const Outputs gemv = run_case(*gpu, c);
    const Outputs gemm = [&] {
      const test::ScopedEnv gemm_path("EAQ_QUANTIZED_GEMV", "0");
      return run_case(*gpu, c);
    }();
    const double paths = test::max_relative_error(gemv.decode, gemm.decode);
    const double self = test::max_relative_error(gemv.decode, gemv.replayed);
    const double gemm_self = test::max_relative_error(gemm.decode, gemm.replayed);
    std::printf(
        "[ decoder   ] gpt2 E128 L3 %-8s decode GEMV vs GEMM path %.2e; vs own full forward "
        "%.2e (GEMM path: %.2e; tolerance %.0e)\n",
        std::string(precision_name(precision)).c_str(), paths, self, gemm_self, allowed);
    EXPECT_LE(paths, allowed) << precision_name(precision);
    EXPECT_LE(self, allowed) << precision_name(precision);
    EXPECT_EQ(test::max_relative_error(gemv.full, gemm.full), 0.0) << precision_name(precision);
  }
}

TEST(CudaGpt2, CapturedGreedyStepEqualsDirectSteps) {
  RandomCase c;
  for (Precision precision : {Precision::Fp32, Precision::Fp16, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto model = Gpt2Model::load(c.dir.path(), *gpu);
    const HostTensor direct = greedy_generate(*model, c.ids, &c.mask, 24, {false});
    const HostTensor graphed = greedy_generate(*model, c.ids, &c.mask, 24, {true});
    std::printf("[ decoder   ] graph replay %-14s tokens %s\n",
                std::string(precision_name(precision)).c_str(),
                direct.to_i64() == graphed.to_i64() ? "identical" : "DIFFER");
    EXPECT_EQ(direct.to_i64(), graphed.to_i64()) << precision_name(precision);
    // The logits after the same number of steps, replayed vs direct: bit-identical.
    DeviceTensor ids = gpu->upload(c.ids, DType::I32), mask = gpu->upload(c.mask, DType::I32);
    auto a = model->start_session(3, 64), b = model->start_session(3, 64);
    for (DecodeSession* s : {a.get(), b.get()}) {
      model->prefill(*s, ids, &mask);
      model->select_greedy(*s);
    }
    auto graph = model->capture_greedy_step(*b);
    for (int t = 0; t < 10; ++t) {
      model->decode_step(*a, a->next_ids());
      model->select_greedy(*a);
      graph->launch();
    }
    EXPECT_EQ(test::max_relative_error(gpu->download(b->logits()), gpu->download(a->logits())), 0.0)
        << precision_name(precision);
    gpu->release(ids);
    gpu->release(mask);
  }
}

// start_prompt on the GPU against the CPU: rows longer than one ballot (70 tokens), left padding
// of 0, 13 and 40 positions, a key mask that held garbage past the prompt.
TEST(CudaStartPrompt, MatchesTheCpu) {
  EAQ_CUDA_BACKEND_OR_SKIP(gpu, Precision::Fp16);
  auto cpu = make_cpu_backend(Precision::Fp32);
  const int batch = 3, len = 70, capacity = 90;
  std::vector<std::int32_t> mask(batch * len), ids(batch * len);
  for (int b = 0; b < batch; ++b) {
    const int pad = b == 0 ? 0 : b == 1 ? 13 : 40;
    for (int i = 0; i < len; ++i) {
      mask[b * len + i] = i >= pad ? 1 : 0;
      ids[b * len + i] = 1000 * b + i;
    }
  }
  const auto run = [&](Backend& backend) {
    std::vector<DeviceTensor> t = {
        backend.upload(HostTensor::from_i32({batch, len}, mask), DType::I32),
        backend.upload(HostTensor::from_i32({batch, len}, ids), DType::I32),
        backend.upload(
            HostTensor::from_i32({batch, len}, std::vector<std::int32_t>(batch * len, -9)),
            DType::I32),
        backend.upload(
            HostTensor::from_i32({batch, capacity}, std::vector<std::int32_t>(batch * capacity, 9)),
            DType::I32),
        backend.upload(HostTensor::from_i32({batch, capacity},
                                            std::vector<std::int32_t>(batch * capacity, -1)),
                       DType::I32),
        backend.upload(HostTensor::from_i32({1 + batch}, std::vector<std::int32_t>(1 + batch, -9)),
                       DType::I32)};
    PromptState state;
    state.mask = static_cast<const std::int32_t*>(t[0].data);
    state.ids = static_cast<const std::int32_t*>(t[1].data);
    state.position_ids = static_cast<std::int32_t*>(t[2].data);
    state.key_mask = static_cast<std::int32_t*>(t[3].data);
    state.tokens = static_cast<std::int32_t*>(t[4].data);
    state.counters = static_cast<std::int32_t*>(t[5].data);
    state.batch = batch;
    state.len = len;
    state.capacity = capacity;
    backend.start_prompt(state);
    std::vector<std::vector<std::int64_t>> out;
    for (int i = 2; i < 6; ++i) out.push_back(backend.download(t[i]).to_i64());
    for (DeviceTensor& d : t) backend.release(d);
    return out;
  };
  const auto expected = run(*cpu), got = run(*gpu);
  const char* names[] = {"position ids", "key mask", "tokens", "counters"};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], expected[i]) << names[i];
}

// --- the fused decode step (one kernel per step at batch 1, decode_step.cu) ---------------------

// Row r of an I32 [B, L] tensor as [1, L].
HostTensor row_of(const HostTensor& x, std::int64_t r) {
  const std::vector<std::int64_t> values = x.to_i64();
  const std::int64_t width = x.dim(1);
  std::vector<std::int32_t> row(values.begin() + r * width, values.begin() + (r + 1) * width);
  return HostTensor::from_i32({1, width}, row);
}

struct StepLogits {
  HostTensor logits;  // [steps, V]: the logits after each fed token
  std::int64_t fused_steps = 0;
  std::int64_t pending_mlp_steps = 0;
  std::int64_t pending_attention_steps = 0;
};

// Prefill of a [1, P] prompt, then one decode step per token of `feed` ([1, S]).
StepLogits decode_logits(Backend& backend, const std::filesystem::path& dir, const HostTensor& ids,
                         const HostTensor& mask, const HostTensor& feed, std::int64_t capacity) {
  auto model = Gpt2Model::load(dir, backend);
  DeviceTensor d_ids = backend.upload(ids, DType::I32), d_mask = backend.upload(mask, DType::I32);
  auto session = model->start_session(1, capacity);
  model->prefill(*session, d_ids, &d_mask);
  std::vector<float> all;
  const std::int64_t steps = feed.dim(1);
  for (std::int64_t s = 0; s < steps; ++s) {
    DeviceTensor token = backend.upload(test::columns(feed, s, s + 1).reshaped({1}), DType::I32);
    const HostTensor logits = backend.download(model->decode_step(*session, token));
    all.insert(all.end(), logits.data<float>(), logits.data<float>() + logits.numel());
    backend.release(token);
  }
  StepLogits out;
  out.logits = HostTensor::from_f32({steps, model->config().vocab_size}, all);
  out.fused_steps = session->fused_steps();
  out.pending_mlp_steps = session->pending_mlp_steps();
  out.pending_attention_steps = session->pending_attention_steps();
  backend.release(d_ids);
  backend.release(d_mask);
  return out;
}

// A model of RandomCase's shape with 1024 positions and an unpadded 700-token prompt: long
// enough that decode attention takes several passes over each block's share of the cache.
struct LongPrompt {
  test::TempDir dir;
  HostTensor ids, mask;  // [1, 700]
  LongPrompt(const test::RandomGpt2Spec& base, unsigned model_seed, unsigned id_seed) {
    test::RandomGpt2Spec spec = base;
    spec.positions = 1024;
    spec.seed = model_seed;
    test::write_random_gpt2(dir.path(), spec);
    std::mt19937 rng(id_seed);
    std::vector<std::int32_t> id(700);
    for (auto& t : id) t = static_cast<std::int32_t>(rng() % 499);
    ids = HostTensor::from_i32({1, 700}, id);
    mask = HostTensor::from_i32({1, 700}, std::vector<std::int32_t>(700, 1));
  }
};

// Teacher-forced steps on one of two prompts: row `row` of RandomCase (padded, a cache of 48) or
// the 700-token prompt (a cache of 720), fed row `row` of RandomCase's steps.
struct ForcedSteps {
  std::filesystem::path dir;
  HostTensor ids, mask, feed;
  std::int64_t capacity = 0;
};

ForcedSteps forced_steps(const RandomCase& c, const LongPrompt& long_case, bool long_prompt,
                         std::int64_t row) {
  if (long_prompt) {
    return {long_case.dir.path(), long_case.ids, long_case.mask, row_of(c.steps, row), 720};
  }
  return {c.dir.path(), row_of(c.ids, row), row_of(c.mask, row), row_of(c.steps, row), 48};
}

StepLogits decode_logits(Backend& backend, const ForcedSteps& f) {
  return decode_logits(backend, f.dir, f.ids, f.mask, f.feed, f.capacity);
}

// Fused step vs the CPU reference and vs the same backend op by op, teacher-forced so both see
// the same tokens: row 1 of RandomCase (13 padding positions, so the fused attention skips masked
// keys), then a prompt long enough that the fused attention takes two passes over the cache.
TEST(CudaGpt2, FusedDecodeStepMatchesTheCpuAndTheOpByOpStep) {
  RandomCase c;
  const LongPrompt long_prompt(c.spec, 5, 3);
  struct Prompt {
    const char* name;
    std::filesystem::path dir;
    HostTensor ids, mask, feed;
    std::int64_t capacity;
  };
  const std::vector<Prompt> prompts = {
      {"padded prompt of 27", c.dir.path(), row_of(c.ids, 1), row_of(c.mask, 1), row_of(c.steps, 1),
       48},
      {"prompt of 700", long_prompt.dir.path(), long_prompt.ids, long_prompt.mask,
       row_of(c.steps, 0), 720},
  };
  auto cpu = make_cpu_backend(Precision::Fp32);
  for (const Prompt& p : prompts) {
    const StepLogits expected = decode_logits(*cpu, p.dir, p.ids, p.mask, p.feed, p.capacity);
    for (Precision precision : {Precision::Fp32, Precision::Fp16, Precision::Bf16}) {
      EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
      StepLogits fused, op_by_op;
      {
        const test::ScopedEnv on("EAQ_FUSED_DECODE", "1");
        fused = decode_logits(*gpu, p.dir, p.ids, p.mask, p.feed, p.capacity);
      }
      {
        const test::ScopedEnv off("EAQ_FUSED_DECODE", "0");  // op by op
        op_by_op = decode_logits(*gpu, p.dir, p.ids, p.mask, p.feed, p.capacity);
      }
      const double tolerance = kLogitTolerance.at(precision);
      const double vs_cpu = test::max_relative_error(fused.logits, expected.logits);
      const double vs_ops = test::max_relative_error(fused.logits, op_by_op.logits);
      std::printf(
          "[ decoder   ] fused step %-20s %-5s vs CPU %.2e, vs op by op %.2e (tolerance %.0e)\n",
          p.name, std::string(precision_name(precision)).c_str(), vs_cpu, vs_ops, tolerance);
      // The fused step runs the 16-bit precisions; fp32 decodes op by op.
      const std::int64_t expected_fused = precision == Precision::Fp32 ? 0 : 8;
      EXPECT_EQ(fused.fused_steps, expected_fused) << p.name << " " << precision_name(precision);
      EXPECT_EQ(op_by_op.fused_steps, 0) << p.name << " " << precision_name(precision);
      EXPECT_LE(vs_cpu, tolerance) << p.name << " " << precision_name(precision);
      EXPECT_LE(vs_ops, tolerance) << p.name << " " << precision_name(precision);
    }
  }
}

// The op-by-op step at batch 1, whose LayerNorm + QKV GEMV + attention run as one kernel
// (qkv_attention.cu) unless EAQ_FUSED_QKV_ATTENTION=0: both against the CPU, teacher-forced, on a
// padded prompt (masked keys) and a 700-token prompt (a cache of 720 rows). The quantized
// precisions (8-bit weights in the same kernel) against their two kernels only: their distance
// from the fp32 CPU is quantization noise, which QuantizedDecodeGemvMatchesTheGemmPath bounds.
// Every precision also with its sums one at a time (EAQ_SHARED_SHUFFLES=0), bit for bit.
TEST(CudaGpt2, QkvAttentionKernelStepMatchesTheCpuAndTheTwoKernels) {
  RandomCase c;
  const LongPrompt long_case(c.spec, 6, 4);
  auto cpu = make_cpu_backend(Precision::Fp32);
  const test::ScopedEnv op_by_op("EAQ_FUSED_DECODE", "0");
  for (const bool long_prompt : {false, true}) {
    const ForcedSteps forced = forced_steps(c, long_case, long_prompt, 2);
    const StepLogits expected = decode_logits(*cpu, forced);
    // One kernel vs two: the same q, k and v bits; the attention sums in another order.
    const std::map<Precision, double> tolerance = {{Precision::Fp16, 1e-2},
                                                   {Precision::Bf16, 5e-2},
                                                   {Precision::Int8, 2e-2},
                                                   {Precision::Int8WeightOnly, 1e-2},
                                                   {Precision::Fp8, 5e-2}};
    for (const auto& [precision, allowed] : tolerance) {
      EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
      const StepLogits one = decode_logits(*gpu, forced);
      const StepLogits two = [&] {
        const test::ScopedEnv two_kernels("EAQ_FUSED_QKV_ATTENTION", "0");
        return decode_logits(*gpu, forced);
      }();
      // The rows' sums one at a time (EAQ_SHARED_SHUFFLES=0): the same bits, every kind.
      const StepLogits one_sum_at_a_time = [&] {
        const test::ScopedEnv shuffles("EAQ_SHARED_SHUFFLES", "0");
        return decode_logits(*gpu, forced);
      }();
      EXPECT_EQ(test::max_relative_error(one.logits, one_sum_at_a_time.logits), 0.0)
          << precision_name(precision) << " EAQ_SHARED_SHUFFLES=0";
      const double vs_cpu = test::max_relative_error(one.logits, expected.logits);
      const double vs_two = test::max_relative_error(one.logits, two.logits);
      std::printf(
          "[ decoder   ] qkv+attention kernel, prompt %-4s %-7s vs CPU %.2e, vs two kernels "
          "%.2e (tolerance %.0e)\n",
          long_prompt ? "700" : "14", std::string(precision_name(precision)).c_str(), vs_cpu,
          vs_two, allowed);
      EXPECT_LE(vs_two, allowed) << precision_name(precision);
      if (kLogitTolerance.count(precision) != 0) {
        EXPECT_LE(vs_cpu, kLogitTolerance.at(precision)) << precision_name(precision);
        EXPECT_LE(test::max_relative_error(two.logits, expected.logits),
                  kLogitTolerance.at(precision))
            << precision_name(precision) << " two kernels";
      }
    }
  }
}

// The fused step inside a captured graph (a cooperative launch) gives the tokens of direct fused
// steps, and in fp32 the CPU's greedy tokens.
TEST(CudaGpt2, FusedDecodeStepReplaysInAGraph) {
  RandomCase c;
  const HostTensor prompt = row_of(c.ids, 0);
  auto cpu = make_cpu_backend(Precision::Fp32);
  auto cpu_model = Gpt2Model::load(c.dir.path(), *cpu);
  const HostTensor expected = greedy_generate(*cpu_model, prompt, nullptr, 32);
  const test::ScopedEnv on("EAQ_FUSED_DECODE", "1");
  for (Precision precision : {Precision::Fp32, Precision::Fp16, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto model = Gpt2Model::load(c.dir.path(), *gpu);
    const HostTensor direct = greedy_generate(*model, prompt, nullptr, 32, {false});
    const HostTensor graphed = greedy_generate(*model, prompt, nullptr, 32, {true});
    EXPECT_EQ(direct.to_i64(), graphed.to_i64()) << precision_name(precision);
    if (precision == Precision::Fp32) {
      EXPECT_EQ(direct.to_i64(), expected.to_i64());
    }
  }
}

// Greedy steps replayed behind a step gate (StepGate, run/gated_steps.hpp) give the ungated
// graph's tokens and logits, through the start kernel's gate (the default), the gate kernel in
// front of the op-by-op start (EAQ_STEP_START_KERNEL=0) and in front of the fused step
// (EAQ_FUSED_DECODE=1, batch 1). A gated step does not finish before the host opens the gate.
TEST(CudaGpt2, GatedGreedyStepsGiveTheSameTokensAndWaitForTheGate) {
  RandomCase c;
  struct Way {
    const char* name;
    const char* variable;
    const char* value;
    std::int64_t batch;
  };
  for (const Way& way : {Way{"start kernel", "EAQ_STEP_START_KERNEL", "1", 3},
                         Way{"gate kernel", "EAQ_STEP_START_KERNEL", "0", 3},
                         Way{"fused step", "EAQ_FUSED_DECODE", "1", 1}}) {
    const test::ScopedEnv env(way.variable, way.value);
    for (Precision precision : {Precision::Fp16, Precision::Bf16}) {
      EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
      const std::string what = fmt::format("{} {}", way.name, precision_name(precision));
      auto model = Gpt2Model::load(c.dir.path(), *gpu);
      const HostTensor ids = way.batch == 1 ? row_of(c.ids, 0) : c.ids;
      const HostTensor mask = way.batch == 1 ? row_of(c.mask, 0) : c.mask;
      DeviceTensor ids_d = gpu->upload(ids, DType::I32), mask_d = gpu->upload(mask, DType::I32);
      constexpr std::int64_t kCapacity = 64;
      auto plain = model->start_session(way.batch, kCapacity),
           gated = model->start_session(way.batch, kCapacity);
      for (DecodeSession* s : {plain.get(), gated.get()}) {
        model->prefill(*s, ids_d, &mask_d);
        model->select_greedy(*s);
      }
      std::unique_ptr<StepGate> gate = gpu->make_step_gate();
      ASSERT_NE(gate, nullptr);
      auto plain_graph = model->capture_greedy_step(*plain);
      auto gated_graph = model->capture_greedy_step(*gated, gate.get());
      run::GatedSteps steps(*gate, [&](std::int64_t) { gated_graph->launch(); });
      for (std::int64_t i = 0; i < 12; ++i) {
        plain_graph->launch();
        steps.run(i);
        steps.sync();
      }
      steps.drain();  // the 13th step, enqueued ahead
      plain_graph->launch();
      EXPECT_EQ(gated->length(), plain->length()) << what;
      const auto filled = [&](const DecodeSession& s) {  // tokens[b, 0..length)
        const std::vector<std::int64_t> all = gpu->download(s.tokens()).to_i64();
        std::vector<std::int64_t> kept;
        for (std::int64_t b = 0; b < way.batch; ++b)
          kept.insert(kept.end(), all.begin() + b * kCapacity,
                      all.begin() + b * kCapacity + s.length());
        return kept;
      };
      EXPECT_EQ(filled(*gated), filled(*plain)) << what;
      EXPECT_EQ(gpu->download(gated->next_ids()).to_i64(),
                gpu->download(plain->next_ids()).to_i64())
          << what;
      if (gated->fused_steps() == 0 && gated->bounded_head_steps() == 0) {
        EXPECT_EQ(test::max_relative_error(gpu->download(gated->logits()),
                                           gpu->download(plain->logits())),
                  0.0)
            << what;
      }
      if (std::string(way.name) == "fused step") {
        EXPECT_GT(gated->fused_steps(), 0) << what;
      }

      // One more gated step, opened by another thread 50 ms later: it must not finish first.
      gated_graph->launch();
      const std::int64_t mark = gate->mark();
      std::atomic<bool> opened{false};
      std::thread opener([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        opened.store(true);
        gate->open();
      });
      gate->wait_for_mark(mark);
      EXPECT_TRUE(opened.load()) << what << ": the step finished before its gate opened";
      opener.join();
      gpu->release(ids_d);
      gpu->release(mask_d);
    }
  }
}

// The gate refuses a second opening that no step has used.
TEST(CudaGpt2, StepGateRefusesAnUnusedOpening) {
  EAQ_CUDA_BACKEND_OR_SKIP(gpu, Precision::Fp16);
  std::unique_ptr<StepGate> gate = gpu->make_step_gate();
  ASSERT_NE(gate, nullptr);
  gate->open();
  EXPECT_THROW(gate->open(), Error);
  EXPECT_THROW(gate->wait_for_mark(0), Error);  // no mark made
}

// --- the feed-forward block that leaves its sum pending (mlp_pending.cu) ------------------------

std::vector<float> floats(const HostTensor& t) {
  const HostTensor f = t.to_f32();
  return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
}

// Shapes the one-kernel feed-forward block takes (inner a multiple of 192, heads of 64; opt-in
// with EAQ_MLP_PENDING=1): its steps against the CPU reference, against the two GEMV kernels it
// replaces (the default), and against itself run again: the fixed-point sum gives the same bits
// whatever order the blocks' atomics arrive in. Teacher-forced, so every way sees the same tokens.
TEST(CudaGpt2, PendingMlpStepMatchesTheCpuAndTheTwoKernels) {
  RandomCase c;  // for its prompt and tokens
  auto cpu = make_cpu_backend(Precision::Fp32);
  const test::ScopedEnv op_by_op("EAQ_FUSED_DECODE", "0");
  const test::ScopedEnv pending_on("EAQ_MLP_PENDING", "1");
  struct Shape {
    int hidden, heads, inner;
  };
  for (const Shape shape : {Shape{128, 2, 384}, Shape{256, 4, 768}}) {
    test::TempDir dir;
    test::RandomGpt2Spec spec = c.spec;
    spec.hidden = shape.hidden;
    spec.heads = shape.heads;
    spec.inner = shape.inner;
    spec.seed = 7;
    test::write_random_gpt2(dir.path(), spec);
    const HostTensor ids = row_of(c.ids, 1), mask = row_of(c.mask, 1), feed = row_of(c.steps, 1);
    const std::int64_t steps = feed.dim(1);
    const StepLogits expected = decode_logits(*cpu, dir.path(), ids, mask, feed, 64);
    EXPECT_EQ(expected.pending_mlp_steps, 0);  // the CPU never leaves a sum pending
    // The sum is rounded once instead of twice (the projection's output, then the residual).
    const std::map<Precision, double> tolerance = {{Precision::Fp16, 1e-2},
                                                   {Precision::Bf16, 5e-2}};
    for (const auto& [precision, allowed] : tolerance) {
      EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
      const StepLogits one = decode_logits(*gpu, dir.path(), ids, mask, feed, 64);
      const StepLogits again = decode_logits(*gpu, dir.path(), ids, mask, feed, 64);
      const StepLogits two = [&] {
        const test::ScopedEnv two_kernels("EAQ_MLP_PENDING", "0");
        return decode_logits(*gpu, dir.path(), ids, mask, feed, 64);
      }();
      const double vs_cpu = test::max_relative_error(one.logits, expected.logits);
      const double vs_two = test::max_relative_error(one.logits, two.logits);
      std::printf(
          "[ decoder   ] pending mlp, hidden %d inner %d, %-5s vs CPU %.2e, vs two kernels %.2e "
          "(tolerance %.0e)\n",
          shape.hidden, shape.inner, std::string(precision_name(precision)).c_str(), vs_cpu, vs_two,
          allowed);
      EXPECT_EQ(one.pending_mlp_steps, steps) << precision_name(precision);
      EXPECT_EQ(two.pending_mlp_steps, 0) << precision_name(precision);
      EXPECT_LE(vs_two, allowed) << precision_name(precision);
      EXPECT_LE(vs_cpu, kLogitTolerance.at(precision)) << precision_name(precision);
      EXPECT_EQ(floats(one.logits), floats(again.logits))
          << precision_name(precision) << ": run to run";
    }
  }
}

// The same steps greedy and in a captured graph (the bounded head finishes the last sum): the
// graph's tokens are the direct steps', and their pending sums ran.
TEST(CudaGpt2, PendingMlpGreedyStepsReplayInAGraph) {
  test::TempDir dir;
  test::RandomGpt2Spec spec;
  spec.vocab = 500;
  spec.positions = 128;
  spec.hidden = 128;
  spec.heads = 2;
  spec.layers = 3;
  spec.inner = 384;
  spec.weight_scale = 0.1f;
  test::write_random_gpt2(dir.path(), spec);
  RandomCase c;
  const HostTensor prompt = row_of(c.ids, 0);
  const test::ScopedEnv op_by_op("EAQ_FUSED_DECODE", "0");
  const test::ScopedEnv pending_on("EAQ_MLP_PENDING", "1");
  for (Precision precision : {Precision::Fp16, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto model = Gpt2Model::load(dir.path(), *gpu);
    const HostTensor direct = greedy_generate(*model, prompt, nullptr, 32, {false});
    const HostTensor graphed = greedy_generate(*model, prompt, nullptr, 32, {true});
    EXPECT_EQ(direct.to_i64(), graphed.to_i64()) << precision_name(precision);
    auto session = model->start_session(1, 64);
    DeviceTensor d_prompt = gpu->upload(prompt, DType::I32);
    model->prefill_greedy(*session, d_prompt);
    for (int t = 0; t < 4; ++t) model->greedy_step(*session);
    EXPECT_EQ(session->pending_mlp_steps(), 4) << precision_name(precision);
    EXPECT_EQ(session->bounded_head_steps(), 4) << precision_name(precision);
    gpu->release(d_prompt);
  }
}

// --- the attention projection left pending (opt-in: EAQ_ATTENTION_PENDING=1) -----------------

// Teacher-forced steps whose attention blocks leave their projection's sum pending (folded into
// qkv_attention.cu's kernel, finished by c_fc's) against the CPU, against the projection as its
// own kernel (the default), and against themselves run again (the fixed-point sum
// gives the same bits whatever order the atomics arrive in); on a padded prompt and on a
// 700-token one. fp32 steps never leave it pending.
TEST(CudaGpt2, PendingAttentionStepMatchesTheCpuAndTheProjectionKernel) {
  RandomCase c;
  const LongPrompt long_case(c.spec, 8, 5);
  auto cpu = make_cpu_backend(Precision::Fp32);
  const test::ScopedEnv op_by_op("EAQ_FUSED_DECODE", "0");
  for (const bool long_prompt : {false, true}) {
    const ForcedSteps forced = forced_steps(c, long_case, long_prompt, 1);
    const std::int64_t steps = forced.feed.dim(1);
    const StepLogits expected = decode_logits(*cpu, forced);
    EXPECT_EQ(expected.pending_attention_steps, 0);  // the CPU never leaves a sum pending
    // The sum is rounded once instead of twice (the projection's output, then the residual).
    const std::map<Precision, double> tolerance = {{Precision::Fp16, 1e-2},
                                                   {Precision::Bf16, 5e-2}};
    for (const auto& [precision, allowed] : tolerance) {
      EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
      const std::string name(precision_name(precision));
      const auto folded = [&] {
        const test::ScopedEnv on("EAQ_ATTENTION_PENDING", "1");
        return decode_logits(*gpu, forced);
      };
      const StepLogits one = folded(), again = folded();
      const StepLogits own_kernel = [&] {
        const test::ScopedEnv by_default("EAQ_ATTENTION_PENDING", nullptr);
        return decode_logits(*gpu, forced);
      }();
      const double vs_cpu = test::max_relative_error(one.logits, expected.logits);
      const double vs_own = test::max_relative_error(one.logits, own_kernel.logits);
      std::printf(
          "[ decoder   ] pending attention, prompt %-4s %-5s vs CPU %.2e, vs the projection's "
          "kernel %.2e (tolerance %.0e)\n",
          long_prompt ? "700" : "27", name.c_str(), vs_cpu, vs_own, allowed);
      EXPECT_EQ(one.pending_attention_steps, steps) << name;
      EXPECT_EQ(own_kernel.pending_attention_steps, 0) << name;
      EXPECT_LE(vs_own, allowed) << name;
      EXPECT_LE(vs_cpu, kLogitTolerance.at(precision)) << name;
      EXPECT_EQ(floats(one.logits), floats(again.logits)) << name << ": run to run";
    }
    EAQ_CUDA_BACKEND_OR_SKIP(fp32, Precision::Fp32);
    const test::ScopedEnv on("EAQ_ATTENTION_PENDING", "1");
    EXPECT_EQ(decode_logits(*fp32, forced).pending_attention_steps, 0);
  }
}

// The same greedy and in a captured graph (the bounded head reads the last layer's row): the
// graph's tokens are the direct steps', and their sums were left pending.
TEST(CudaGpt2, PendingAttentionGreedyStepsReplayInAGraph) {
  RandomCase c;
  const HostTensor prompt = row_of(c.ids, 0);
  const test::ScopedEnv op_by_op("EAQ_FUSED_DECODE", "0");
  const test::ScopedEnv on("EAQ_ATTENTION_PENDING", "1");
  for (Precision precision : {Precision::Fp16, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto model = Gpt2Model::load(c.dir.path(), *gpu);
    const HostTensor direct = greedy_generate(*model, prompt, nullptr, 32, {false});
    const HostTensor graphed = greedy_generate(*model, prompt, nullptr, 32, {true});
    EXPECT_EQ(direct.to_i64(), graphed.to_i64()) << precision_name(precision);
    auto session = model->start_session(1, 64);
    DeviceTensor d_prompt = gpu->upload(prompt, DType::I32);
    model->prefill_greedy(*session, d_prompt);
    for (int t = 0; t < 4; ++t) model->greedy_step(*session);
    EXPECT_EQ(session->pending_attention_steps(), 4) << precision_name(precision);
    EXPECT_EQ(session->pending_mlp_steps(), 0) << precision_name(precision);
    EXPECT_EQ(session->bounded_head_steps(), 4) << precision_name(precision);
    gpu->release(d_prompt);
  }
}

// --- early dependent launch (the default; EAQ_EARLY_LAUNCH=0 turns it off) ---------------------

// Letting the next kernel launch before the wait, not after, changes when the step's kernels
// start, not what they compute: the same logits bit for bit, teacher-forced over a 700-token
// cache, in every precision whose step runs the one-row kernels, with the feed-forward block as
// two kernels and as one, and with the attention projection folded in; and the same greedy tokens
// (the bounded head), direct and in a captured graph. A kernel that read, before its wait, what the
// kernel two before it writes would differ.
TEST(CudaGpt2, EarlyLaunchGivesTheSameBits) {
  RandomCase c;  // for its prompt and tokens
  test::RandomGpt2Spec spec = c.spec;
  spec.hidden = 256;  // inner a multiple of 192: the one-kernel feed-forward block takes it
  spec.heads = 4;
  spec.inner = 768;
  const LongPrompt long_case(spec, 5, 4);
  const HostTensor feed = row_of(c.steps, 0), prompt = row_of(c.ids, 0);
  const test::ScopedEnv op_by_op("EAQ_FUSED_DECODE", "0");
  for (Precision precision : {Precision::Fp16, Precision::Bf16, Precision::Int8,
                              Precision::Int8WeightOnly, Precision::Fp8}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    const std::string name(precision_name(precision));
    // The step as the default ops, with the feed-forward block's sum left pending, and with the
    // attention projection's.
    for (const char* pending : {"none", "mlp", "attention"}) {
      const test::ScopedEnv mlp("EAQ_MLP_PENDING", std::string(pending) == "mlp" ? "1" : "0");
      const test::ScopedEnv attention("EAQ_ATTENTION_PENDING",
                                      std::string(pending) == "attention" ? "1" : "0");
      const auto steps = [&](const char* early) {
        const test::ScopedEnv order("EAQ_EARLY_LAUNCH", early);
        return decode_logits(*gpu, long_case.dir.path(), long_case.ids, long_case.mask, feed, 720);
      };
      const StepLogits late = steps("0"), early = steps("1");
      EXPECT_EQ(floats(early.logits), floats(late.logits)) << name << ", pending " << pending;
      EXPECT_EQ(early.pending_mlp_steps, late.pending_mlp_steps) << name;
      EXPECT_EQ(early.pending_attention_steps, late.pending_attention_steps) << name;
    }
    auto model = Gpt2Model::load(long_case.dir.path(), *gpu);
    const auto tokens = [&](const char* early, bool graph) {
      const test::ScopedEnv order("EAQ_EARLY_LAUNCH", early);
      return greedy_generate(*model, prompt, nullptr, 32, {graph}).to_i64();
    };
    const std::vector<std::int64_t> late = tokens("0", false);
    EXPECT_EQ(tokens("1", false), late) << name;
    EXPECT_EQ(tokens("1", true), late) << name << " in a graph";
  }
}

// EAQ_QKV_TIMELINE=1 times the QKV + attention kernel's phases; it must not change what the kernel
// computes: the same logits bit for bit, teacher-forced over a 700-token cache.
TEST(CudaGpt2, QkvTimelineLeavesTheBitsAlone) {
  RandomCase c;
  const LongPrompt long_case(c.spec, 5, 4);
  const HostTensor feed = row_of(c.steps, 0);
  const test::ScopedEnv op_by_op("EAQ_FUSED_DECODE", "0");
  for (Precision precision : {Precision::Fp16, Precision::Int8}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    const auto steps = [&](const char* timed) {
      const test::ScopedEnv timeline("EAQ_QKV_TIMELINE", timed);
      return decode_logits(*gpu, long_case.dir.path(), long_case.ids, long_case.mask, feed, 720);
    };
    EXPECT_EQ(floats(steps("1").logits), floats(steps("0").logits)) << precision_name(precision);
  }
}

// finish_pending: x + the fixed-point sum (2^32 per unit) rounded to the activation dtype, and
// NaN everywhere once a share could not be added (the count after the sums).
TEST(CudaGpt2, FinishPendingAddsTheFixedPointSum) {
  for (Precision precision : {Precision::Fp16, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    const DType act = gpu->activation_dtype();
    const HostTensor x = HostTensor::from_f32({1, 4}, {1.0f, -2.0f, 0.25f, 8.0f});
    const long long unit = 1ll << 32;
    std::vector<std::int64_t> sums = {unit / 2, -3 * unit, -unit / 4, 0, 0};
    HostTensor pending = HostTensor::empty(DType::I64, {5});
    std::copy(sums.begin(), sums.end(), pending.mutable_data<std::int64_t>());
    DeviceTensor d_x = gpu->upload(x, act), d_out = gpu->allocate(act, {1, 4});
    DeviceTensor d_pending = gpu->upload(pending, DType::I64);
    gpu->finish_pending(d_x, d_pending, d_out);
    EXPECT_EQ(floats(gpu->download(d_out)), (std::vector<float>{1.5f, -5.0f, 0.0f, 8.0f}))
        << precision_name(precision);
    pending.mutable_data<std::int64_t>()[4] = 1;  // one share past the range
    gpu->release(d_pending);
    d_pending = gpu->upload(pending, DType::I64);
    gpu->finish_pending(d_x, d_pending, d_out);
    for (float v : floats(gpu->download(d_out))) EXPECT_TRUE(std::isnan(v));
    gpu->release(d_x);
    gpu->release(d_out);
    gpu->release(d_pending);
  }
}

}  // namespace
}  // namespace eaq
