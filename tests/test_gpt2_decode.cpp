// Incremental decoding on the CPU reference: KV-cache steps equal a full forward, left-padded rows
// equal the same rows alone, a captured greedy step equals direct steps, sessions are reusable,
// and misuse gets clear errors.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "backend/cpu/cpu_backend.hpp"
#include "core/error.hpp"
#include "golden.hpp"
#include "gpt2_test_util.hpp"
#include "model/gpt2.hpp"
#include "model/gpt2_generate.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

using ::eaq::test::error_of;

std::vector<std::int32_t> random_ids(int count, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(count));
  for (auto& id : ids) id = static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab));
  return ids;
}

class Gpt2Decode : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.inner = 40;
    spec_.activation = "gelu";
    test::write_random_gpt2(dir_.path(), spec_);
    cpu_ = make_cpu_backend(Precision::Fp32);
    model_ = Gpt2Model::load(dir_.path(), *cpu_);
  }
  void TearDown() override {
    for (DeviceTensor& t : uploads_) cpu_->release(t);
  }
  DeviceTensor upload(const HostTensor& host) {
    uploads_.push_back(cpu_->upload(host, DType::I32));
    return uploads_.back();
  }
  HostTensor step(DecodeSession& session, std::vector<std::int32_t> ids) {
    const auto batch = static_cast<std::int64_t>(ids.size());
    return cpu_->download(
        model_->decode_step(session, upload(HostTensor::from_i32({batch}, std::move(ids)))));
  }

  test::TempDir dir_;
  test::RandomGpt2Spec spec_;
  std::unique_ptr<Backend> cpu_;
  std::unique_ptr<Gpt2Model> model_;
  std::vector<DeviceTensor> uploads_;
};

// The state a prompt leaves (Backend::start_prompt), by hand for a left-padded row and a full
// one: generate()'s positions, the key mask zeroed past the prompt, the tokens, and the counters.
TEST(CpuStartPrompt, WritesPositionsMaskTokensAndCounters) {
  auto cpu = make_cpu_backend(Precision::Fp32);
  const std::vector<std::int32_t> mask = {0, 0, 1, 1, 1, 1, 1, 1}, ids = {5, 6, 7, 8, 1, 2, 3, 4};
  std::vector<std::int32_t> positions(8, -9), key_mask(12, 9), tokens(12, -1), counters(3, -9);
  PromptState state;
  state.mask = mask.data();
  state.ids = ids.data();
  state.position_ids = positions.data();
  state.key_mask = key_mask.data();
  state.tokens = tokens.data();
  state.counters = counters.data();
  state.batch = 2;
  state.len = 4;
  state.capacity = 6;
  cpu->start_prompt(state);
  EXPECT_EQ(positions, (std::vector<std::int32_t>{1, 1, 0, 1, 0, 1, 2, 3}));
  EXPECT_EQ(key_mask, (std::vector<std::int32_t>{0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(tokens, (std::vector<std::int32_t>{5, 6, 7, 8, -1, -1, 1, 2, 3, 4, -1, -1}));
  EXPECT_EQ(counters, (std::vector<std::int32_t>{4, 2, 4}));
}

TEST_F(Gpt2Decode, CachedStepsEqualTheFullForward) {
  const std::vector<std::int32_t> ids = random_ids(11, spec_.vocab, 3);
  const HostTensor full =
      cpu_->download(model_->forward_logits(upload(HostTensor::from_i32({1, 11}, ids))));
  auto session = model_->start_session(1, 11);
  const HostTensor prefill = cpu_->download(model_->prefill(
      *session, upload(HostTensor::from_i32({1, 5}, {ids.begin(), ids.begin() + 5}))));
  EXPECT_LE(
      test::max_relative_error(prefill, test::rows_where(full, {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})),
      1e-5);
  for (int t = 5; t < 11; ++t) {
    std::vector<std::int64_t> keep(11, 0);
    keep[static_cast<std::size_t>(t)] = 1;
    const HostTensor logits = step(*session, {ids[static_cast<std::size_t>(t)]});
    EXPECT_LE(test::max_relative_error(logits, test::rows_where(full, keep)), 1e-5)
        << "position " << t;
  }
  EXPECT_EQ(session->length(), 11);
  EXPECT_ERROR_HAS(step(*session, {1}), "cache of 11 positions is full");
}

TEST_F(Gpt2Decode, LeftPaddedRowsEqualEachRowAlone) {
  const std::vector<std::int32_t> long_row = random_ids(6, spec_.vocab, 5);
  const std::vector<std::int32_t> short_row = random_ids(2, spec_.vocab, 6);
  const std::vector<std::int32_t> pad(4, static_cast<std::int32_t>(spec_.vocab - 1));
  std::vector<std::int32_t> batch_ids = long_row;
  batch_ids.insert(batch_ids.end(), pad.begin(), pad.end());
  batch_ids.insert(batch_ids.end(), short_row.begin(), short_row.end());
  const HostTensor mask = HostTensor::from_i32({2, 6}, {1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1});
  const DeviceTensor device_mask = upload(mask);
  auto batch = model_->start_session(2, 10);
  const HostTensor first = cpu_->download(
      model_->prefill(*batch, upload(HostTensor::from_i32({2, 6}, batch_ids)), &device_mask));
  auto alone_long = model_->start_session(1, 10);
  auto alone_short = model_->start_session(1, 10);
  const HostTensor expected_long =
      cpu_->download(model_->prefill(*alone_long, upload(HostTensor::from_i32({1, 6}, long_row))));
  const HostTensor expected_short = cpu_->download(
      model_->prefill(*alone_short, upload(HostTensor::from_i32({1, 2}, short_row))));
  EXPECT_LE(test::max_relative_error(test::rows_where(first, {1, 0}), expected_long), 1e-5);
  EXPECT_LE(test::max_relative_error(test::rows_where(first, {0, 1}), expected_short), 1e-5);
  for (int t = 0; t < 4; ++t) {
    const std::vector<std::int32_t> next =
        random_ids(2, spec_.vocab, 100 + static_cast<unsigned>(t));
    const HostTensor both = step(*batch, next);
    EXPECT_LE(
        test::max_relative_error(test::rows_where(both, {1, 0}), step(*alone_long, {next[0]})),
        1e-5)
        << t;
    EXPECT_LE(
        test::max_relative_error(test::rows_where(both, {0, 1}), step(*alone_short, {next[1]})),
        1e-5)
        << t;
  }
  // The session's bookkeeping: the tokens fed and which cache positions hold real tokens.
  EXPECT_EQ(
      cpu_->download(batch->key_mask()).to_i64(),
      (std::vector<std::int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}));
  const std::vector<std::int64_t> tokens = cpu_->download(batch->tokens()).to_i64();
  EXPECT_EQ(std::vector<std::int64_t>(tokens.begin(), tokens.begin() + 6),
            std::vector<std::int64_t>(long_row.begin(), long_row.end()));
}

TEST_F(Gpt2Decode, CapturedGreedyStepEqualsDirectSteps) {
  const HostTensor prompt = HostTensor::from_i32({2, 4}, {5, 17, 3, 40, 96, 96, 8, 21});
  const HostTensor mask = HostTensor::from_i32({2, 4}, {1, 1, 1, 1, 0, 0, 1, 1});
  const HostTensor direct = greedy_generate(*model_, prompt, &mask, 12, {false});
  const HostTensor graphed = greedy_generate(*model_, prompt, &mask, 12, {true});
  EXPECT_EQ(direct.to_i64(), graphed.to_i64());
  // The same through the session API: a greedy step by hand equals the graph's.
  auto session = model_->start_session(2, 4 + 11);
  const DeviceTensor m = upload(mask);
  model_->prefill(*session, upload(prompt), &m);
  model_->select_greedy(*session);
  auto graph = model_->capture_greedy_step(*session);
  EXPECT_EQ(session->length(), 4) << "the capture's warm-up step must not count";
  for (int t = 1; t < 12; ++t) graph->launch();
  EXPECT_EQ(session->length(), 15);
  const std::vector<std::int64_t> last = cpu_->download(session->next_ids()).to_i64();
  EXPECT_EQ(last, (std::vector<std::int64_t>{direct.to_i64()[11], direct.to_i64()[23]}));
  EXPECT_ERROR_HAS(graph->launch(), "cache of 15 positions is full");
}

// prefill_greedy is prefill then select_greedy: the same first tokens (padded batch and batch 1),
// the same cache and the same next steps. The CPU has no bounded head: it counts no prompt.
TEST_F(Gpt2Decode, PrefillGreedyEqualsPrefillThenSelect) {
  const HostTensor prompt = HostTensor::from_i32({2, 4}, {5, 17, 3, 40, 96, 96, 8, 21});
  const HostTensor mask = HostTensor::from_i32({2, 4}, {1, 1, 1, 1, 0, 0, 1, 1});
  const DeviceTensor m = upload(mask);
  for (std::int64_t rows : {2, 1}) {
    const HostTensor ids = rows == 2 ? prompt : HostTensor::from_i32({1, 4}, {5, 17, 3, 40});
    auto two_ops = model_->start_session(rows, 10);
    auto one_call = model_->start_session(rows, 10);
    const DeviceTensor device_ids = upload(ids);
    model_->prefill(*two_ops, device_ids, rows == 2 ? &m : nullptr);
    const std::vector<std::int64_t> expected =
        cpu_->download(model_->select_greedy(*two_ops)).to_i64();
    const std::vector<std::int64_t> got =
        cpu_->download(model_->prefill_greedy(*one_call, device_ids, rows == 2 ? &m : nullptr))
            .to_i64();
    EXPECT_EQ(got, expected) << rows << " rows";
    EXPECT_EQ(one_call->length(), 4);
    EXPECT_EQ(one_call->bounded_head_prompts(), 0);
    for (int t = 0; t < 3; ++t) {
      EXPECT_EQ(cpu_->download(model_->greedy_step(*one_call)).to_i64(),
                cpu_->download(model_->greedy_step(*two_ops)).to_i64())
          << rows << " rows, step " << t;
    }
  }
  auto session = model_->start_session(1, 8);
  EXPECT_ERROR_HAS(
      model_->prefill_greedy(*session, upload(HostTensor::from_i32({2, 2}, {1, 2, 3, 4}))),
      "2 prompt rows for a session of batch 1");
}

// The CPU reference never leaves a feed-forward block's sum pending (Backend::PendingResidual):
// its steps run the block's two ops, and the ops of a pending sum refuse with the backend's name.
TEST_F(Gpt2Decode, TheCpuLeavesNoResidualPending) {
  auto session = model_->start_session(1, 10);
  model_->prefill_greedy(*session, upload(HostTensor::from_i32({1, 4}, {5, 17, 3, 40})));
  for (int t = 0; t < 3; ++t) model_->greedy_step(*session);
  EXPECT_EQ(session->pending_mlp_steps(), 0);
  DeviceTensor row =
      cpu_->upload(HostTensor::from_f32({1, 4}, {1.0f, 2.0f, 3.0f, 4.0f}), DType::F32);
  DeviceTensor sum = cpu_->allocate(DType::I64, Backend::pending_residual_shape(4));
  DeviceTensor out = cpu_->allocate(DType::F32, {1, 4});
  EXPECT_ERROR_HAS(cpu_->finish_pending(row, sum, out),
                   "finish_pending: backend 'cpu' never leaves a residual pending");
  cpu_->release(row);
  cpu_->release(sum);
  cpu_->release(out);
}

TEST_F(Gpt2Decode, RewindRepeatsTheSameTokensWithoutAnotherPrefill) {
  const HostTensor prompt = HostTensor::from_i32({2, 4}, {5, 17, 3, 40, 96, 96, 8, 21});
  const HostTensor mask = HostTensor::from_i32({2, 4}, {1, 1, 1, 1, 0, 0, 1, 1});
  auto session = model_->start_session(2, 4 + 8);
  const DeviceTensor m = upload(mask);
  model_->prefill(*session, upload(prompt), &m);
  model_->select_greedy(*session);
  model_->mark_rewind_point(*session);
  auto graph = model_->capture_greedy_step(*session);
  const auto run = [&] {
    std::vector<std::int64_t> tokens;
    for (int t = 0; t < 8; ++t) {
      graph->launch();
      for (std::int64_t id : cpu_->download(session->next_ids()).to_i64()) tokens.push_back(id);
    }
    return tokens;
  };
  const std::vector<std::int64_t> first = run();
  EXPECT_EQ(session->length(), 12);
  model_->rewind(*session);
  EXPECT_EQ(session->length(), 4);
  EXPECT_EQ(run(), first);
  // Rewinding works from any point, and the graph keeps working after it.
  model_->rewind(*session);
  graph->launch();
  EXPECT_EQ(cpu_->download(session->next_ids()).to_i64(),
            (std::vector<std::int64_t>{first[0], first[1]}));
}

TEST_F(Gpt2Decode, SessionsAreReusable) {
  const HostTensor long_prompt = HostTensor::from_i32({1, 7}, random_ids(7, spec_.vocab, 9));
  const HostTensor short_prompt = HostTensor::from_i32({1, 3}, random_ids(3, spec_.vocab, 10));
  auto reused = model_->start_session(1, 12);
  model_->prefill(*reused, upload(long_prompt));
  for (int t = 0; t < 4; ++t) step(*reused, {static_cast<std::int32_t>(t + 1)});
  const HostTensor again = cpu_->download(model_->prefill(*reused, upload(short_prompt)));
  auto fresh = model_->start_session(1, 12);
  EXPECT_EQ(test::max_relative_error(again,
                                     cpu_->download(model_->prefill(*fresh, upload(short_prompt)))),
            0.0);
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(test::max_relative_error(step(*reused, {static_cast<std::int32_t>(t + 7)}),
                                       step(*fresh, {static_cast<std::int32_t>(t + 7)})),
              0.0)
        << "step " << t << " sees a stale cache position";
  }
}

TEST_F(Gpt2Decode, MisuseGetsClearErrors) {
  auto session = model_->start_session(2, 8);
  const DeviceTensor two = upload(HostTensor::from_i32({2}, {1, 2}));
  EXPECT_ERROR_HAS(model_->decode_step(*session, two), "call prefill first");
  EXPECT_ERROR_HAS(model_->prefill(*session, upload(HostTensor::from_i32({1, 3}, {1, 2, 3}))),
                   "1 prompt rows for a session of batch 2");
  EXPECT_ERROR_HAS(model_->prefill(*session, upload(HostTensor::from_i32(
                                                 {2, 9}, std::vector<std::int32_t>(18, 1)))),
                   "a prompt of 9 tokens does not fit the session's cache of 8 positions");
  EXPECT_ERROR_HAS(model_->start_session(1, 49), "n_positions is 48");
  EXPECT_ERROR_HAS(model_->forward_logits(
                       upload(HostTensor::from_i32({1, 49}, std::vector<std::int32_t>(49, 1)))),
                   "a sequence of 49 tokens is longer than the model's context (n_positions 48)");
  model_->prefill(*session, upload(HostTensor::from_i32({2, 2}, {1, 2, 3, 4})));
  EXPECT_ERROR_HAS(model_->decode_step(*session, upload(HostTensor::from_i32({3}, {1, 2, 3}))),
                   "one per row (2)");
  // Prompts longer than the context, right padding, ids outside the vocabulary.
  const HostTensor prompt = HostTensor::from_i32({1, 40}, std::vector<std::int32_t>(40, 1));
  EXPECT_ERROR_HAS(greedy_generate(*model_, prompt, nullptr, 10),
                   "a prompt of 40 tokens plus 10 new tokens needs 49 positions, more than the "
                   "model's context (n_positions 48)");
  EXPECT_NO_THROW(greedy_generate(*model_, prompt, nullptr, 9));
  const HostTensor right_padded = HostTensor::from_i32({1, 3}, {1, 1, 0});
  EXPECT_ERROR_HAS(
      greedy_generate(*model_, HostTensor::from_i32({1, 3}, {4, 5, 6}), &right_padded, 2),
      "row 0 has padding at position 2 after a token; prompts must be LEFT-padded");
  EXPECT_ERROR_HAS(greedy_generate(*model_, HostTensor::from_i32({1, 2}, {4, 97}), nullptr, 2),
                   "token id [0, 1] = 97 is outside the model's vocabulary of 97 tokens");
}

}  // namespace
}  // namespace eaq
