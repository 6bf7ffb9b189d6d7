// GPT-2 (GPT2LMHeadModel) written once over backend ops: token + learned position embeddings,
// pre-LN blocks (ln_1 -> causal self-attention -> residual; ln_2 -> MLP -> residual), ln_f and
// the LM head (tied to the token embeddings unless the checkpoint says otherwise).
//
// Two ways to run it:
// - forward_logits: every position's logits for a [B, L] batch, no cache (parity, perplexity).
// - a DecodeSession: prefill a [B, P] prompt into per-layer KV caches, then decode one token per
//   row per step. Everything a step changes (the cache slot it fills, each row's position id, the
//   attention mask over the cache, the next token) lives in device buffers updated by kernels,
//   so prefill and decode_step never synchronize with the host and a captured step replays
//   correctly at every position (capture_greedy_step).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "model/encoder.hpp"  // QuantizationPlan, LinearReport
#include "model/gpt2_config.hpp"

namespace eaq {

class Gpt2Model;

// The state of incremental decoding for a batch of B rows and a cache of `capacity` positions.
// Made by Gpt2Model::start_session; must not outlive the model (nor its backend). Reusable: every
// prefill starts over.
class DecodeSession {
 public:
  ~DecodeSession();
  DecodeSession(const DecodeSession&) = delete;
  DecodeSession& operator=(const DecodeSession&) = delete;

  std::int64_t batch() const { return batch_; }
  std::int64_t capacity() const { return capacity_; }
  // Cache positions filled so far (prompt width + decode steps), as counted by the host; graph
  // replays through capture_greedy_step's graph count too.
  std::int64_t length() const { return length_; }

  // Logits [B, V] (activation dtype) of the last prefill or decode step.
  const DeviceTensor& logits() const { return logits_; }
  // I32 [B]: written by Gpt2Model::select_greedy; pass it to decode_step to feed it back.
  const DeviceTensor& next_ids() const { return next_ids_; }
  // I32 [B, capacity]: the token at each filled cache position (the prompt, then each token a
  // decode step fed). Columns at or past length() are undefined.
  const DeviceTensor& tokens() const { return tokens_; }
  // I32 [B, capacity]: 1 where a cache position holds a real (not padding) token.
  const DeviceTensor& key_mask() const { return key_mask_; }
  // Decode steps the backend ran as one call (Backend::decoder_step) rather than op by op; the
  // replays of a captured step count once, when it was captured.
  std::int64_t fused_steps() const { return fused_steps_; }
  // Greedy steps whose token the backend chose without computing every logit
  // (Backend::layer_norm_linear_argmax); counted as fused_steps() is.
  std::int64_t bounded_head_steps() const { return bounded_head_steps_; }
  // Prompts whose first token prefill_greedy chose that way.
  std::int64_t bounded_head_prompts() const { return bounded_head_prompts_; }
  // Decode steps whose feed-forward blocks left their residual sums pending for the op after them
  // (Backend::layer_norm_mlp_pending: one kernel a block instead of two); counted as fused_steps()
  // is.
  std::int64_t pending_mlp_steps() const { return pending_mlp_steps_; }
  // Decode steps whose attention blocks left their output projection's sums pending for c_fc's op
  // (Backend::layer_norm_attention_pending); counted as fused_steps() is.
  std::int64_t pending_attention_steps() const { return pending_attention_steps_; }

 private:
  friend class Gpt2Model;
  DecodeSession(const Gpt2Model& model, Backend& backend) : model_(model), backend_(backend) {}
  DeviceTensor own(DeviceTensor t) {
    owned_.push_back(t);
    return t;
  }

  const Gpt2Model& model_;
  Backend& backend_;
  std::int64_t batch_ = 0, capacity_ = 0, length_ = 0, fused_steps_ = 0, bounded_head_steps_ = 0,
               bounded_head_prompts_ = 0, pending_mlp_steps_ = 0, pending_attention_steps_ = 0;
  bool prefilled_ = false;
  const StepGate* gate_ = nullptr;  // set only while capture_greedy_step captures a gated step
  std::vector<DeviceTensor> owned_;
  DecoderStep whole_step_;        // what decode_step offers Backend::decoder_step (made once)
  std::vector<DeviceTensor> kv_;  // per layer [B, capacity, 2E]: K in columns [0, E), V in [E, 2E)
  // I32 [1 + B]: the cache slot the next token fills, then each row's next position id. One
  // increment advances all of them after a step.
  DeviceTensor counters_, counters_backup_;
  DeviceTensor slot_, positions_;  // views into counters_
  DeviceTensor key_mask_, tokens_, next_ids_;
  DeviceTensor hidden_, normed_, qkv_, context_, projected_, ffn_,
      logits_;  // one row per batch row
  // A step that leaves its MLP sums pending (batch 1): each layer's finished input row, and the
  // two pending sums the layers use in turn (Backend::pending_residual_shape, I64).
  DeviceTensor finished_, pending_[2];
  // A step that leaves its attention projections' sums pending (batch 1): the one sum every layer
  // uses, zero between layers (Backend::pending_residual_shape, I64; allocated zero).
  DeviceTensor attention_pending_;
  // What capture_greedy_step's warm-up step changes and puts back.
  DeviceTensor next_ids_backup_, logits_backup_;
  // The state mark_rewind_point() saved, which rewind() restores.
  DeviceTensor rewind_counters_, rewind_mask_, rewind_next_ids_;
  std::int64_t rewind_length_ = -1;
};

class Gpt2Model {
 public:
  // Loads config.json and the weights of a GPT-2 folder (Hugging Face layout). The blocks' Linear
  // layers follow plan.encoder_linears (quantized where the precision is), lm_head plan.head.
  static std::unique_ptr<Gpt2Model> load(const std::filesystem::path& dir, Backend& backend,
                                         const QuantizationPlan& plan = {});
  ~Gpt2Model();
  Gpt2Model(const Gpt2Model&) = delete;
  Gpt2Model& operator=(const Gpt2Model&) = delete;

  const Gpt2Config& config() const { return config_; }
  const std::filesystem::path& folder() const { return folder_; }
  Backend& backend() const { return backend_; }

  // Logits of every position, [B * L, V], for ids I32 [B, L]. mask (I32 [B, L], 1 = token) hides
  // padded keys; position_ids (I32 [B, L]) default to 0..L-1, as a Hugging Face forward without
  // position_ids. The result views a buffer owned by the model, valid until the next call with
  // another [B, L] (the first call of a shape allocates: run it once before capturing a graph).
  DeviceTensor forward_logits(const DeviceTensor& ids, const DeviceTensor* mask = nullptr,
                              const DeviceTensor* position_ids = nullptr);

  // A session for B rows and a cache of `capacity` positions (<= n_positions).
  std::unique_ptr<DecodeSession> start_session(std::int64_t batch, std::int64_t capacity) const;

  // Runs the prompt ids I32 [B, P] (LEFT-padded where rows differ in length; mask I32 [B, P], or
  // null for all ones) and fills cache positions [0, P). Position ids are Hugging Face
  // generate()'s: cumsum(mask) - 1, 1 on padding. Returns session.logits(): the last position's
  // logits of each row. With all_logits, also writes every position's logits [B * P, V] there
  // (a view of a model-owned buffer, as forward_logits). Stream-ordered, no host sync: capturable
  // once a prefill of the same [B, P] has run.
  const DeviceTensor& prefill(DecodeSession& session, const DeviceTensor& ids,
                              const DeviceTensor* mask = nullptr,
                              DeviceTensor* all_logits = nullptr);
  // prefill(session, ids, mask) then select_greedy(session): the same first token per row, but a
  // backend may choose it without computing every logit (CUDA at batch 1: the bounded head of
  // greedy_step), and then leaves session.logits() unspecified. Returns session.next_ids().
  const DeviceTensor& prefill_greedy(DecodeSession& session, const DeviceTensor& ids,
                                     const DeviceTensor* mask = nullptr);
  // Feeds one token per row (I32 [B], e.g. session.next_ids()) at the next cache position and
  // returns session.logits(). Stream-ordered, no host sync.
  const DeviceTensor& decode_step(DecodeSession& session, const DeviceTensor& next_ids);
  // session.next_ids() = argmax of session.logits() per row (on the device).
  const DeviceTensor& select_greedy(DecodeSession& session);
  // decode_step(session, session.next_ids()) then select_greedy(session): the same tokens, but a
  // backend may choose them without computing every logit (CUDA at batch 1), and then leaves
  // session.logits() unspecified. Returns session.next_ids().
  const DeviceTensor& greedy_step(DecodeSession& session);
  // A graph of greedy_step(session): one greedy token per launch. Call it after prefill (and
  // select_greedy); it runs one step outside the capture first (to create GEMM plans and scratch
  // buffers) and then restores the session, so the tokens produced are the same as without it.
  // Each launch checks the capacity. With a gate (Backend::make_step_gate), each replay holds
  // after its first kernel until the gate opens (StepGate, backend.hpp); the gate must outlive the
  // graph.
  std::unique_ptr<CapturedGraph> capture_greedy_step(DecodeSession& session,
                                                     const StepGate* gate = nullptr);

  // Remembers the session as it is now (typically right after prefill and select_greedy), so that
  // rewind() can return to it: decoding can then be repeated, and timed, without repeating the
  // prefill. Cache positions past the mark are simply written again by the next steps.
  void mark_rewind_point(DecodeSession& session);
  // Device-to-device copies back to the marked state; stream-ordered, no host sync.
  void rewind(DecodeSession& session);

  std::int64_t num_parameters() const { return num_parameters_; }
  std::size_t stored_bytes() const { return stored_bytes_; }
  DType stored_dtype() const { return stored_dtype_; }
  const std::vector<LinearReport>& linear_layers() const { return linear_reports_; }
  const std::vector<std::string>& unused_tensors() const { return unused_tensors_; }

 private:
  struct Layer;
  struct Workspace;
  struct Rows;
  explicit Gpt2Model(Backend& backend);
  Workspace& ensure_workspace(std::int64_t batch, std::int64_t seq);
  void release_workspace();
  void check_ids(const DeviceTensor& ids, const char* what) const;
  // The blocks over `rows` tokens; `attend(i, layer)` fills rows.context from rows.hidden (the
  // LayerNorm, the QKV projection and attention), and `narrow(rows)` gives the rows the last
  // layer's projection and MLP run on.
  struct KeepRows;
  template <class Attend, class Narrow = KeepRows>
  void run_blocks(Rows& rows, const Attend& attend, const Narrow& narrow = Narrow{});
  // The prompt through every layer; with `last_rows_only` (prefill into `session`) the last
  // layer's projection and MLP run on each row's last token only, into the session's buffers.
  void sequence_forward(Workspace& ws, const DeviceTensor& ids, const DeviceTensor* mask,
                        const DeviceTensor& positions, DecodeSession* session, bool last_rows_only);
  void full_logits(Workspace& ws);
  // prefill's work up to ln_f: the session's cache and state, and the hidden rows of each row's
  // last token (returned: a view or the session's rows).
  DeviceTensor prefill_hidden(DecodeSession& s, const DeviceTensor& ids, const DeviceTensor* mask,
                              bool all_positions);
  // decode_step's two ways: the whole step as one backend call, or op by op.
  // The session's step as one backend call (Backend::decoder_step), ids left to the caller.
  DecoderStep describe_step(DecodeSession& s) const;
  // One step of either way. With `greedy`, the head may write session.next_ids() itself instead
  // of the logits (Backend::layer_norm_linear_argmax): returns whether it did. unfused_step's head
  // then also advances the counters.
  bool step(DecodeSession& s, const DeviceTensor& next_ids, bool greedy);
  bool unfused_step(DecodeSession& s, const DeviceTensor& next_ids, bool greedy);
  // ln_f and the LM head on `last` (one row per batch row) into the session's logits; with
  // `greedy`, the backend may write session.next_ids() instead (Backend::layer_norm_linear_argmax):
  // returns whether it did.
  // With `pending`, the row is last + pending (PendingResidual). With `advance` (a decode step), a
  // head that wrote next_ids has also advanced the session's counters, the step's last op.
  bool head(DecodeSession& s, const DeviceTensor& last, bool greedy,
            const DeviceTensor* pending = nullptr, bool advance = false);
  // Whether this step's feed-forward blocks can leave their sums pending (batch 1, and the
  // backend's Backend::can_leave_mlp_pending for every layer).
  bool can_leave_mlp_pending(const DecodeSession& s) const;
  // Whether a step's attention blocks leave their projection's sums pending
  // (Backend::can_leave_attention_pending for every layer).
  bool can_leave_attention_pending(const DecodeSession& s) const;

  Backend& backend_;
  std::filesystem::path folder_;
  Gpt2Config config_;
  std::vector<DeviceTensor> owned_;
  DeviceTensor wte_, wpe_, ln_f_weight_, ln_f_bias_;
  std::vector<Layer> layers_;
  std::unique_ptr<LinearWeights> lm_head_;
  std::unique_ptr<Workspace> workspace_;
  std::int64_t num_parameters_ = 0;
  std::size_t stored_bytes_ = 0;
  DType stored_dtype_ = DType::F32;
  std::vector<LinearReport> linear_reports_;
  std::vector<std::string> unused_tensors_;
};

}  // namespace eaq
