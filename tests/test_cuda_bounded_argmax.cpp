// The bounded LM head (bounded_argmax.cu, each form of its scores kernel) against the full head
// (layer_norm_linear, then argmax_rows) on the GPU: the same token for random heads and rows, tied
// and nearly tied rows, logits past f16's range and rows of NaN, and the same greedy tokens from a
// GPT-2 model with and without it. The bound itself is checked on the host
// (test_argmax_bounds.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cuda_test_util.hpp"
#include "golden.hpp"
#include "gpt2_test_util.hpp"
#include "model/gpt2.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

HostTensor normal(Shape shape, float mean, float stddev, std::mt19937& rng) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
  for (float& x : v) x = dist(rng);
  return HostTensor::from_f32(std::move(shape), std::move(v));
}

// One head on one backend, and the two ways to pick a row's token.
class HeadCase {
 public:
  HeadCase(Backend& backend, const HostTensor& w, std::mt19937& rng)
      : backend_(backend), n_(w.dim(0)), k_(w.dim(1)) {
    LinearOptions options;
    options.name = "lm_head";
    head_ = backend.prepare_linear(w, nullptr, options);
    gamma_ = backend.upload(normal({k_}, 1.0f, 0.1f, rng), DType::F32);
    beta_ = backend.upload(normal({k_}, 0.0f, 0.05f, rng), DType::F32);
  }
  ~HeadCase() {
    for (DeviceTensor* t : {&gamma_, &beta_}) backend_.release(*t);
  }

  struct Picks {
    std::int64_t full = -1, bounded = -1;
    std::int64_t shifting = -1;  // bounded, with the scores kernel's first (shifting) loop
    std::int64_t f32_x = -1;     // bounded, with x in f32 (EAQ_SCORES_INT8=0), not int8
    std::int64_t warp_x = -1;    // bounded, every warp reading x (EAQ_STAGE_X=0)
    std::int64_t one_sum = -1;   // bounded, a warp's row sums one at a time (EAQ_SHARED_SHUFFLES=0)
    std::int64_t eager_x = -1;   // bounded, every select warp reading x first (EAQ_SELECT_LAZY_X=0)
    std::int64_t fenced =
        -1;  // bounded, select blocks arriving behind a fence (EAQ_SELECT_ACQ_REL=0)
    // Counters {7, -1, 40} after a bounded pick that advances them: in the select kernel's last
    // block, and in a kernel of its own (EAQ_SELECT_INCREMENT=0).
    std::vector<std::int64_t> advanced, advanced_apart;
    std::int64_t advancing = -1;  // the token picked while advancing them
    bool took = false;            // layer_norm_linear_argmax ran
    bool same_normed = false;     // and stored the LayerNorm as layer_norm_linear does
  };
  Picks pick(const HostTensor& x) {
    const DType act = backend_.activation_dtype();
    const std::int64_t rows = x.numel() / k_;
    DeviceTensor dx = backend_.upload(x, act);
    DeviceTensor normed = backend_.allocate(act, {rows, k_});
    DeviceTensor normed2 = backend_.allocate(act, {rows, k_});
    DeviceTensor logits = backend_.allocate(act, {rows, n_});
    DeviceTensor ids = backend_.allocate(DType::I32, {rows});
    Picks p;
    backend_.layer_norm_linear(dx, nullptr, gamma_, beta_, 1e-5f, normed, *head_, Activation::None,
                               logits);
    backend_.argmax_rows(logits, ids);
    p.full = backend_.download(ids).to_i64()[0];
    p.took = backend_.layer_norm_linear_argmax(dx, gamma_, beta_, 1e-5f, normed2, *head_, ids);
    if (p.took) {
      p.bounded = backend_.download(ids).to_i64()[0];
      p.same_normed =
          test::max_relative_error(backend_.download(normed2), backend_.download(normed)) == 0.0;
      // The bounded pick again with one switch set (each a form that must pick alike).
      const auto bounded_with = [&](const char* name, const char* value) {
        const test::ScopedEnv form(name, value);
        backend_.layer_norm_linear_argmax(dx, gamma_, beta_, 1e-5f, normed2, *head_, ids);
        return backend_.download(ids).to_i64()[0];
      };
      p.warp_x = bounded_with("EAQ_STAGE_X", "0");
      p.one_sum = bounded_with("EAQ_SHARED_SHUFFLES", "0");
      p.eager_x = bounded_with("EAQ_SELECT_LAZY_X", "0");
      p.fenced = bounded_with("EAQ_SELECT_ACQ_REL", "0");
      p.shifting = bounded_with("EAQ_SCORES_ROTATE", "0");
      p.f32_x = bounded_with("EAQ_SCORES_INT8", "0");
      for (const char* folded : {"1", "0"}) {
        const test::ScopedEnv fold("EAQ_SELECT_INCREMENT", folded);
        DeviceTensor counters = backend_.upload(HostTensor::from_i32({3}, {7, -1, 40}), DType::I32);
        EXPECT_TRUE(backend_.layer_norm_linear_argmax(dx, gamma_, beta_, 1e-5f, normed2, *head_,
                                                      ids, nullptr, &counters));
        (std::string(folded) == "1" ? p.advanced : p.advanced_apart) =
            backend_.download(counters).to_i64();
        p.advancing = backend_.download(ids).to_i64()[0];
        backend_.release(counters);
      }
    }
    for (DeviceTensor* t : {&dx, &normed, &normed2, &logits, &ids}) backend_.release(*t);
    return p;
  }

 private:
  Backend& backend_;
  std::int64_t n_, k_;
  std::unique_ptr<LinearWeights> head_;
  DeviceTensor gamma_, beta_;
};

void expect_same(const HeadCase::Picks& p, const std::string& what) {
  EXPECT_TRUE(p.took) << what;
  EXPECT_EQ(p.bounded, p.full) << what;
  EXPECT_EQ(p.shifting, p.full) << what << " (EAQ_SCORES_ROTATE=0)";
  EXPECT_EQ(p.f32_x, p.full) << what << " (EAQ_SCORES_INT8=0)";
  EXPECT_EQ(p.warp_x, p.full) << what << " (EAQ_STAGE_X=0)";
  EXPECT_EQ(p.one_sum, p.full) << what << " (EAQ_SHARED_SHUFFLES=0)";
  EXPECT_EQ(p.eager_x, p.full) << what << " (EAQ_SELECT_LAZY_X=0)";
  EXPECT_EQ(p.fenced, p.full) << what << " (EAQ_SELECT_ACQ_REL=0)";
  EXPECT_EQ(p.advancing, p.full) << what << " (advancing counters)";
  const std::vector<std::int64_t> plus_one = {8, 0, 41};
  EXPECT_EQ(p.advanced, plus_one) << what << " (counters advanced in the select kernel)";
  EXPECT_EQ(p.advanced_apart, plus_one) << what << " (EAQ_SELECT_INCREMENT=0)";
  EXPECT_TRUE(p.same_normed) << what;
}

// Rows set to x's direction, so they lead by far.
void set_row(HostTensor& w, std::int64_t row, const HostTensor& values, float scale) {
  const std::int64_t k = w.dim(1);
  for (std::int64_t j = 0; j < k; ++j)
    w.mutable_data<float>()[row * k + j] = scale * values.data<float>()[j];
}

const Precision kPrecisions[] = {Precision::Fp16, Precision::Bf16};

TEST(CudaBoundedArgmax, PicksTheFullHeadsTokenForRandomRows) {
  for (Precision precision : kPrecisions) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    std::mt19937 rng(5);
    // GPT-2's vocabulary and width, GPT-2's initialization; and a narrow head of odd size.
    for (const auto& [n, k] : {std::pair<std::int64_t, std::int64_t>{50257, 768}, {1003, 64}}) {
      HeadCase head(*gpu, normal({n, k}, 0.0f, 0.02f, rng), rng);
      for (int trial = 0; trial < 12; ++trial) {
        const float spread = trial % 3 == 0 ? 0.3f : 3.0f;
        expect_same(head.pick(normal({1, k}, 0.5f, spread, rng)),
                    fmt::format("{} n {} trial {}", precision_name(precision), n, trial));
      }
    }
  }
}

TEST(CudaBoundedArgmax, TiesGoToTheFirstRowAsInArgmaxRows) {
  for (Precision precision : kPrecisions) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    std::mt19937 rng(7);
    const std::int64_t n = 20000, k = 768;
    HostTensor w = normal({n, k}, 0.0f, 0.02f, rng);
    const HostTensor x = normal({1, k}, 0.0f, 1.0f, rng);
    // The same leading row at 17000, 12345 and 40 (different blocks of both kernels), and a row
    // one f16 step away from it at 5: the full head rounds them to the same or to neighbouring
    // logits; either way both ways must agree, and the first of the equal ones wins.
    for (std::int64_t row : {17000, 12345, 40}) set_row(w, row, x, 0.05f);
    set_row(w, 5, x, 0.05f);
    w.mutable_data<float>()[5 * k + 3] *= 1.001f;
    HeadCase head(*gpu, w, rng);
    const HeadCase::Picks p = head.pick(x);
    expect_same(p, std::string(precision_name(precision)));
    EXPECT_TRUE(p.full == 40 || p.full == 5) << p.full;
    // Many equal rows: every copy is a candidate.
    HostTensor copies = normal({n, k}, 0.0f, 0.02f, rng);
    for (std::int64_t row = 3000; row < n; row += 97) set_row(copies, row, x, 0.05f);
    HeadCase many(*gpu, copies, rng);
    const HeadCase::Picks q = many.pick(x);
    expect_same(q, std::string(precision_name(precision)) + " many copies");
    EXPECT_EQ(q.full, 3000);
  }
}

TEST(CudaBoundedArgmax, LogitsPastTheRangeAndNanRowsPickAsTheFullHead) {
  EAQ_CUDA_BACKEND_OR_SKIP(gpu, Precision::Fp16);
  std::mt19937 rng(9);
  const std::int64_t n = 4000, k = 256;
  HostTensor w = normal({n, k}, 0.0f, 0.02f, rng);
  const HostTensor x = normal({1, k}, 0.0f, 1.0f, rng);
  // Logits past 65504 round to +inf in f16: the bounds cannot separate them, so every row is a
  // candidate and the first infinite one wins, as in the full head.
  for (std::int64_t row : {3999, 2500, 700}) set_row(w, row, x, 500.0f);
  HeadCase big(*gpu, w, rng);
  const HeadCase::Picks p = big.pick(x);
  expect_same(p, "logits past f16's range");
  EXPECT_EQ(p.full, 700);

  HeadCase head(*gpu, normal({n, k}, 0.0f, 0.02f, rng), rng);
  HostTensor nan_row = normal({1, k}, 0.0f, 1.0f, rng);
  nan_row.mutable_data<float>()[17] = NAN;
  const HeadCase::Picks q = head.pick(nan_row);
  EXPECT_TRUE(q.took);
  EXPECT_EQ(q.bounded, q.full);
  EXPECT_EQ(q.full, 0);  // no number at all: row 0
}

TEST(CudaBoundedArgmax, DeclinesWhatItDoesNotTake) {
  EAQ_CUDA_BACKEND_OR_SKIP(gpu, Precision::Fp16);
  std::mt19937 rng(3);
  HeadCase head(*gpu, normal({300, 64}, 0.0f, 0.02f, rng), rng);
  EXPECT_FALSE(head.pick(normal({2, 64}, 0.0f, 1.0f, rng)).took);  // two rows
  {
    const test::ScopedEnv off("EAQ_BOUNDED_ARGMAX", "0");
    EXPECT_FALSE(head.pick(normal({1, 64}, 0.0f, 1.0f, rng)).took);
  }
  EXPECT_TRUE(head.pick(normal({1, 64}, 0.0f, 1.0f, rng)).took);
  HeadCase wide(*gpu, normal({300, 1024}, 0.0f, 0.02f, rng), rng);  // k > 768
  EXPECT_FALSE(wide.pick(normal({1, 1024}, 0.0f, 1.0f, rng)).took);
  EAQ_CUDA_BACKEND_OR_SKIP(f32, Precision::Fp32);
  HeadCase f32_head(*f32, normal({300, 64}, 0.0f, 0.02f, rng), rng);
  EXPECT_FALSE(f32_head.pick(normal({1, 64}, 0.0f, 1.0f, rng)).took);
}

// Greedy tokens of a random GPT-2 at batch 1: prefill_greedy and greedy_step (bounded head)
// against prefill or decode_step + select_greedy (every logit), in every precision whose head runs
// in f16 or bf16.
TEST(CudaBoundedArgmax, Gpt2GreedyStepsGiveTheSameTokens) {
  test::TempDir dir;
  test::RandomGpt2Spec spec;
  spec.vocab = 2003;  // padded to 2008 rows on the GPU, as GPT-2's 50,257
  spec.positions = 128;
  spec.hidden = 128;
  spec.heads = 2;
  spec.layers = 2;
  spec.inner = 256;
  spec.weight_scale = 0.1f;
  test::write_random_gpt2(dir.path(), spec);
  std::vector<std::int32_t> prompt(20);
  for (std::size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = static_cast<std::int32_t>((i * 37 + 11) % 1999);
  const HostTensor ids = HostTensor::from_i32({1, 20}, prompt);
  for (Precision precision : {Precision::Fp16, Precision::Bf16, Precision::Int8,
                              Precision::Int8WeightOnly, Precision::Fp8}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto model = Gpt2Model::load(dir.path(), *gpu);
    DeviceTensor device_ids = gpu->upload(ids, DType::I32);
    std::vector<std::int64_t> tokens[2];
    std::int64_t bounded_steps[2] = {0, 0}, bounded_prompts[2] = {0, 0};
    for (int way = 0; way < 2; ++way) {
      auto session = model->start_session(1, 64);
      if (way == 0) {
        model->prefill(*session, device_ids);
        model->select_greedy(*session);
      } else {
        model->prefill_greedy(*session, device_ids);
      }
      tokens[way].push_back(gpu->download(session->next_ids()).to_i64()[0]);
      bounded_prompts[way] = session->bounded_head_prompts();
      for (int t = 0; t < 30; ++t) {
        if (way == 0) {
          model->decode_step(*session, session->next_ids());
          model->select_greedy(*session);
        } else {
          model->greedy_step(*session);
        }
        tokens[way].push_back(gpu->download(session->next_ids()).to_i64()[0]);
      }
      bounded_steps[way] = session->bounded_head_steps();
    }
    std::printf("[ bounded   ] %-8s greedy tokens %s, %lld bounded steps\n",
                std::string(precision_name(precision)).c_str(),
                tokens[0] == tokens[1] ? "identical" : "DIFFER",
                static_cast<long long>(bounded_steps[1]));
    EXPECT_EQ(tokens[0], tokens[1]) << precision_name(precision);
    EXPECT_EQ(bounded_steps[0], 0);
    EXPECT_EQ(bounded_steps[1], 30) << precision_name(precision);
    EXPECT_EQ(bounded_prompts[0], 0);
    EXPECT_EQ(bounded_prompts[1], 1) << precision_name(precision);
    gpu->release(device_ids);
  }
}

}  // namespace
}  // namespace eaq
