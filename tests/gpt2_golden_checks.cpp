#include "gpt2_golden_checks.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "golden.hpp"
#include "gpt2_test_util.hpp"
#include "io/safetensors.hpp"
#include "model/gpt2.hpp"
#include "model/gpt2_generate.hpp"
#include "run/perplexity.hpp"
#include "test_util.hpp"

namespace eaq::test {
namespace {

void report(const std::string& backend, const std::string& fixture, const std::string& what,
            double error, double tolerance) {
  std::printf("[ decoder   ] %-28s %-14s %-26s rel. error %.2e (tolerance %.0e)\n", backend.c_str(),
              fixture.c_str(), what.c_str(), error, tolerance);
}

struct Uploads {
  explicit Uploads(Backend& b) : backend(b) {}
  ~Uploads() {
    for (DeviceTensor& t : owned) backend.release(t);
  }
  DeviceTensor i32(const HostTensor& host) {
    owned.push_back(backend.upload(host, DType::I32));
    return owned.back();
  }
  Backend& backend;
  std::vector<DeviceTensor> owned;
};

// Teacher-forced decode steps feeding columns [first, last) of ids; returns each step's logits
// stacked as [B * steps, V] in (row, step) order, like the fixtures' [B, steps, V].
HostTensor teacher_forced_steps(Gpt2Model& model, DecodeSession& session, const HostTensor& ids,
                                std::int64_t first, std::int64_t last) {
  Backend& backend = model.backend();
  const std::int64_t batch = ids.dim(0), steps = last - first, vocab = model.config().vocab_size;
  HostTensor out = HostTensor::empty(DType::F32, {batch * steps, vocab});
  for (std::int64_t s = 0; s < steps; ++s) {
    DeviceTensor column =
        backend.upload(columns(ids, first + s, first + s + 1).reshaped({batch}), DType::I32);
    const HostTensor logits = backend.download(model.decode_step(session, column));
    backend.release(column);
    for (std::int64_t b = 0; b < batch; ++b) {
      std::copy(logits.data<float>() + b * vocab, logits.data<float>() + (b + 1) * vocab,
                out.mutable_data<float>() + (b * steps + s) * vocab);
    }
  }
  return out;
}

}  // namespace

void check_gpt2_fixture(Backend& backend, const std::string& fixture, const Gpt2Tolerance& tol) {
  const std::filesystem::path dir = golden_dir() / fixture;
  ASSERT_TRUE(std::filesystem::exists(dir / "reference.safetensors"))
      << dir << " is missing: run tools/make_golden.py (see tools/README.md)";
  const SafetensorsFile ref = SafetensorsFile::open((dir / "reference.safetensors").string());
  auto model = Gpt2Model::load(dir, backend);
  const std::string name = backend.name() + " " + std::string(precision_name(backend.precision()));
  Uploads up(backend);
  const auto expect_close = [&](const std::string& what, const HostTensor& ours,
                                const HostTensor& hf) {
    const double error = max_relative_error(ours, hf);
    report(name, fixture, what, error, tol.logits);
    EXPECT_LE(error, tol.logits) << fixture << ": " << what;
  };

  // (a) Full logits of an unpadded batch.
  {
    const HostTensor& ids = ref.tensor("full_input_ids");
    validate_gpt2_inputs(model->config(), ids, nullptr, false, "full_input_ids");
    const HostTensor logits = backend.download(model->forward_logits(up.i32(ids)));
    expect_close("full logits", logits, ref.tensor("full_logits"));
  }
  // (b) Left-padded batch with generate()'s position ids: only positions whose mask is 1.
  {
    const HostTensor& mask = ref.tensor("padded_attention_mask");
    const DeviceTensor ids = up.i32(ref.tensor("padded_input_ids"));
    const DeviceTensor m = up.i32(mask), pos = up.i32(ref.tensor("padded_position_ids"));
    const HostTensor logits = backend.download(model->forward_logits(ids, &m, &pos));
    expect_close("padded logits (mask 1)", rows_where(logits, mask.to_i64()),
                 rows_where(ref.tensor("padded_logits"), mask.to_i64()));
  }
  if (!ref.contains("kv_input_ids")) return;

  // (c) KV cache: prefill 8 tokens, then 8 teacher-forced single-token steps.
  {
    const HostTensor& ids = ref.tensor("kv_input_ids");
    auto session = model->start_session(ids.dim(0), ids.dim(1));
    DeviceTensor all;
    const HostTensor last =
        backend.download(model->prefill(*session, up.i32(columns(ids, 0, 8)), nullptr, &all));
    expect_close("kv prefill logits", backend.download(all), ref.tensor("kv_prefill_logits"));
    expect_close("kv prefill last logits", last,
                 positions_of(ref.tensor("kv_prefill_logits"), 7, 8));
    expect_close("kv step logits", teacher_forced_steps(*model, *session, ids, 8, 16),
                 ref.tensor("kv_step_logits"));
  }
  // (c2) KV cache after a left-padded prompt.
  {
    const HostTensor& ids = ref.tensor("kvpad_input_ids");
    const HostTensor prompt_mask = columns(ref.tensor("kvpad_attention_mask"), 0, 8);
    auto session = model->start_session(ids.dim(0), ids.dim(1));
    const DeviceTensor m = up.i32(prompt_mask);
    DeviceTensor all;
    model->prefill(*session, up.i32(columns(ids, 0, 8)), &m, &all);
    expect_close("kvpad prefill logits (mask 1)",
                 rows_where(backend.download(all), prompt_mask.to_i64()),
                 rows_where(ref.tensor("kvpad_prefill_logits"), prompt_mask.to_i64()));
    expect_close("kvpad step logits", teacher_forced_steps(*model, *session, ids, 8, 14),
                 ref.tensor("kvpad_step_logits"));
  }
  // (d) Greedy generation: per-step logits and tokens, direct and graph-replayed.
  {
    const HostTensor& prompt = ref.tensor("gen_prompt_ids");
    const HostTensor& expected = ref.tensor("gen_new_tokens");
    const std::int64_t steps = expected.dim(1);
    auto session = model->start_session(1, prompt.dim(1) + steps - 1);
    HostTensor step_logits = HostTensor::empty(DType::F32, {steps, model->config().vocab_size});
    const auto keep = [&](std::int64_t s, const DeviceTensor& logits) {
      const HostTensor h = backend.download(logits);
      std::copy(h.data<float>(), h.data<float>() + h.numel(),
                step_logits.mutable_data<float>() + s * h.numel());
    };
    keep(0, model->prefill(*session, up.i32(prompt)));
    model->select_greedy(*session);
    for (std::int64_t s = 1; s < steps; ++s) {
      keep(s, model->decode_step(*session, session->next_ids()));
      model->select_greedy(*session);
    }
    expect_close("greedy step logits", step_logits, ref.tensor("gen_step_logits"));
    if (tol.tokens) {
      for (bool graph : {false, true}) {
        const HostTensor tokens = greedy_generate(*model, prompt, nullptr, steps, {graph});
        EXPECT_EQ(tokens.to_i64(), expected.to_i64())
            << fixture << ": greedy tokens, graph " << graph;
        const HostTensor& batch_prompt = ref.tensor("genbatch_prompt_ids");
        const HostTensor& batch_mask = ref.tensor("genbatch_prompt_attention_mask");
        const HostTensor batch_tokens =
            greedy_generate(*model, batch_prompt, &batch_mask, steps, {graph});
        EXPECT_EQ(batch_tokens.to_i64(), ref.tensor("genbatch_new_tokens").to_i64())
            << fixture << ": batched left-padded greedy tokens, graph " << graph;
      }
    }
  }
  // (e) Sliding-window perplexity.
  {
    const std::vector<std::int64_t> ids64 = ref.tensor("ppl_input_ids").to_i64();
    const std::vector<std::int32_t> ids(ids64.begin(), ids64.end());
    const run::PerplexityResult r = run::evaluate_perplexity(
        *model, ids, ref.tensor("ppl_context").to_i64()[0], ref.tensor("ppl_stride").to_i64()[0]);
    const std::vector<std::int64_t> windows = ref.tensor("ppl_windows").to_i64();
    ASSERT_EQ(windows.size(), r.windows.size() * 5);
    for (std::size_t w = 0; w < r.windows.size(); ++w) {
      const run::PerplexityWindow& ours = r.windows[w];
      EXPECT_EQ((std::vector<std::int64_t>{ours.begin, ours.end, ours.trg_len, ours.score_begin,
                                           ours.doc_weight}),
                std::vector<std::int64_t>(windows.begin() + 5 * w, windows.begin() + 5 * w + 5))
          << "window " << w;
    }
    std::vector<float> nll(r.token_nll.begin(), r.token_nll.end());
    const double nll_error =
        max_relative_error(HostTensor::from_f32({static_cast<std::int64_t>(nll.size())}, nll),
                           ref.tensor("ppl_token_nll"));
    report(name, fixture, "per-token NLL", nll_error, tol.perplexity);
    EXPECT_LE(nll_error, tol.perplexity);
    const double exact = ref.tensor("ppl_exact").to_f32().data<float>()[0];
    const double doc = ref.tensor("ppl_doc").to_f32().data<float>()[0];
    report(name, fixture, "perplexity (exact)", std::fabs(r.exact_perplexity - exact) / exact,
           tol.perplexity);
    report(name, fixture, "perplexity (doc)", std::fabs(r.doc_perplexity - doc) / doc,
           tol.perplexity);
    EXPECT_NEAR(r.exact_perplexity, exact, tol.perplexity * exact);
    EXPECT_NEAR(r.doc_perplexity, doc, tol.perplexity * doc);
    EXPECT_EQ(r.exact_tokens, ref.tensor("ppl_exact_n_tokens").to_i64()[0]);
    EXPECT_EQ(r.doc_tokens, ref.tensor("ppl_doc_n_tokens").to_i64()[0]);
  }
}

void check_bundled_gpt2(Backend& backend, const Gpt2Tolerance& tol) {
  const std::filesystem::path model_dir =
      std::filesystem::path(source_dir()) / "models" / "gpt2-mini";
  const std::filesystem::path ref_path = golden_dir() / "bundled" / "gpt2_reference.safetensors";
  ASSERT_TRUE(std::filesystem::exists(ref_path)) << ref_path;
  const SafetensorsFile ref = SafetensorsFile::open(ref_path.string());
  auto model = Gpt2Model::load(model_dir, backend);
  const std::string name = backend.name() + " " + std::string(precision_name(backend.precision()));
  const HostTensor& ids = ref.tensor("input_ids");
  validate_gpt2_inputs(model->config(), ids, nullptr, false, "gpt2_reference input_ids");
  DeviceTensor device_ids = backend.upload(ids, DType::I32);
  const HostTensor logits = backend.download(model->forward_logits(device_ids));
  backend.release(device_ids);
  std::vector<std::int64_t> keep(static_cast<std::size_t>(ids.dim(1)), 0);
  for (std::int64_t p : ref.tensor("positions").to_i64()) keep[static_cast<std::size_t>(p)] = 1;
  const double error = max_relative_error(rows_where(logits, keep), ref.tensor("logits"));
  report(name, "gpt2-mini", "logits at 4 positions", error, tol.logits);
  EXPECT_LE(error, tol.logits);

  const std::vector<std::int64_t> ids64 = ids.to_i64();
  const run::PerplexityResult r = run::evaluate_perplexity(
      *model, std::vector<std::int32_t>(ids64.begin(), ids64.end()), ids.dim(1), ids.dim(1));
  std::vector<float> nll(r.token_nll.begin(), r.token_nll.end());
  const double nll_error = max_relative_error(
      HostTensor::from_f32({static_cast<std::int64_t>(nll.size())}, nll), ref.tensor("token_nll"));
  report(name, "gpt2-mini", "per-token NLL", nll_error, tol.perplexity);
  EXPECT_LE(nll_error, tol.perplexity);
  const double expected = std::stod(ref.metadata().at("perplexity_of_these_63_tokens"));
  EXPECT_NEAR(r.exact_perplexity, expected, tol.perplexity * expected);
  EXPECT_EQ(r.exact_tokens, ids.dim(1) - 1);
}

}  // namespace eaq::test
