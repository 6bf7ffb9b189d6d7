#include "model/gpt2.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/json_file.hpp"
#include "model/gpt2_weights.hpp"
#include "model/model_linear.hpp"

namespace eaq {

struct Gpt2Model::Layer {
  DeviceTensor ln_1_weight, ln_1_bias, ln_2_weight, ln_2_bias;
  std::unique_ptr<LinearWeights> c_attn;     // [3E, E]: q, k, v
  std::unique_ptr<LinearWeights> attn_proj;  // [E, E]
  std::unique_ptr<LinearWeights> c_fc;       // [I, E]
  std::unique_ptr<LinearWeights> mlp_proj;   // [E, I]
  float attention_scale = 1.0f;
};

// Activation buffers for one [B, L]; graphs captured over them stay valid while it lives.
struct Gpt2Model::Workspace {
  std::int64_t batch = 0, seq = 0;
  DeviceTensor arange_positions;  // I32 [B, L]: 0..L-1 in every row
  DeviceTensor mask_positions;    // I32 [B, L]: prefill's positions from the mask
  DeviceTensor ones_mask;         // I32 [B, L]: the mask of a prefill called without one
  DeviceTensor last_rows;         // I32 [B]: b * L + L - 1
  DeviceTensor hidden, normed, qkv, context, projected, ffn;  // [B * L, ...]
  DeviceTensor logits;  // [B * L, V], allocated when full logits are first asked for
};

// The activation buffers the blocks run over: a workspace's B * L rows or a session's B rows.
struct Gpt2Model::Rows {
  DeviceTensor hidden, normed, qkv, context, projected, ffn;
};

// run_blocks' default: every layer runs on all rows.
struct Gpt2Model::KeepRows {
  Rows& operator()(Rows& rows) const { return rows; }
};

namespace {

// Hugging Face's Conv1D stores [in, out]; Linear layers (and prepare_linear) want [out, in].
HostTensor conv1d_to_linear(const HostTensor& weight) {
  const HostTensor w = weight.to_f32();
  const std::int64_t in = w.dim(0), out = w.dim(1);
  HostTensor t = HostTensor::empty(DType::F32, {out, in});
  const float* src = w.data<float>();
  float* dst = t.mutable_data<float>();
  for (std::int64_t i = 0; i < in; ++i) {
    for (std::int64_t o = 0; o < out; ++o) dst[o * in + i] = src[i * out + o];
  }
  return t;
}

void check_i32(const DeviceTensor& t, const Shape& shape, const char* what) {
  EAQ_CHECK(t.data != nullptr && t.dtype == DType::I32 && t.shape == shape,
            "{}: expected an I32 tensor of shape {}, got {} {}", what, shape_str(shape),
            dtype_name(t.dtype), shape_str(t.shape));
}

}  // namespace

// --- loading
// --------------------------------------------------------------------------------------

std::unique_ptr<Gpt2Model> Gpt2Model::load(const std::filesystem::path& dir, Backend& backend,
                                           const QuantizationPlan& plan) {
  const std::filesystem::path config_path = dir / "config.json";
  EAQ_CHECK(std::filesystem::exists(config_path), "{}: no config.json in the model folder",
            dir.string());
  std::unique_ptr<Gpt2Model> model(new Gpt2Model(backend));
  model->folder_ = dir;
  model->config_ = parse_gpt2_config(read_json_file(config_path), config_path);
  const Gpt2Config& c = model->config_;

  const Checkpoint checkpoint = Checkpoint::open_folder(dir);
  const LoadedWeights weights = LoadedWeights::load(
      checkpoint, gpt2_weight_specs(c), gpt2_base_prefix(),
      fmt::format("config.json of a {} with n_embd {}, n_layer {}, n_inner {}, vocab {}, "
                  "n_positions {}",
                  c.architecture, c.hidden, c.layers, c.inner, c.vocab_size, c.positions));
  model->num_parameters_ = weights.num_parameters();
  model->stored_bytes_ = weights.stored_bytes();
  model->stored_dtype_ = weights.stored_dtype();
  model->unused_tensors_ = weights.unused();

  const DType act = backend.activation_dtype();
  const auto upload = [&](const HostTensor& host, DType dtype) {
    model->owned_.push_back(backend.upload(host, dtype));
    return model->owned_.back();
  };
  const auto linear = [&](const std::string& name, const HostTensor& w, const HostTensor* b,
                          bool quantize) {
    return prepare_model_linear(backend, plan, name, w, b, quantize, model->linear_reports_);
  };

  model->wte_ = upload(weights.get("wte.weight"), act);
  model->wpe_ = upload(weights.get("wpe.weight"), act);
  for (std::int64_t i = 0; i < c.layers; ++i) {
    const auto key = [&](const char* what) { return fmt::format("h.{}.{}", i, what); };
    Layer layer;
    layer.ln_1_weight = upload(weights.get(key("ln_1.weight")), DType::F32);
    layer.ln_1_bias = upload(weights.get(key("ln_1.bias")), DType::F32);
    layer.ln_2_weight = upload(weights.get(key("ln_2.weight")), DType::F32);
    layer.ln_2_bias = upload(weights.get(key("ln_2.bias")), DType::F32);
    layer.c_attn =
        linear(key("attn.c_attn"), conv1d_to_linear(weights.get(key("attn.c_attn.weight"))),
               &weights.get(key("attn.c_attn.bias")), plan.encoder_linears);
    layer.attn_proj =
        linear(key("attn.c_proj"), conv1d_to_linear(weights.get(key("attn.c_proj.weight"))),
               &weights.get(key("attn.c_proj.bias")), plan.encoder_linears);
    layer.c_fc = linear(key("mlp.c_fc"), conv1d_to_linear(weights.get(key("mlp.c_fc.weight"))),
                        &weights.get(key("mlp.c_fc.bias")), plan.encoder_linears);
    layer.mlp_proj =
        linear(key("mlp.c_proj"), conv1d_to_linear(weights.get(key("mlp.c_proj.weight"))),
               &weights.get(key("mlp.c_proj.bias")), plan.encoder_linears);
    layer.attention_scale = c.attention_scale(i);
    model->layers_.push_back(std::move(layer));
  }
  model->ln_f_weight_ = upload(weights.get("ln_f.weight"), DType::F32);
  model->ln_f_bias_ = upload(weights.get("ln_f.bias"), DType::F32);
  model->lm_head_ =
      linear("lm_head", weights.get(c.tie_word_embeddings ? "wte.weight" : "lm_head.weight"),
             nullptr, plan.head);
  return model;
}

Gpt2Model::Gpt2Model(Backend& backend) : backend_(backend) {}

Gpt2Model::~Gpt2Model() {
  release_workspace();
  for (DeviceTensor& t : owned_) backend_.release(t);
}

// --- workspaces and sessions
// ----------------------------------------------------------------------

void Gpt2Model::release_workspace() {
  if (!workspace_) return;
  Workspace& ws = *workspace_;
  for (DeviceTensor* t :
       {&ws.arange_positions, &ws.mask_positions, &ws.ones_mask, &ws.last_rows, &ws.hidden,
        &ws.normed, &ws.qkv, &ws.context, &ws.projected, &ws.ffn, &ws.logits}) {
    backend_.release(*t);
  }
  workspace_.reset();
}

Gpt2Model::Workspace& Gpt2Model::ensure_workspace(std::int64_t batch, std::int64_t seq) {
  if (workspace_ && workspace_->batch == batch && workspace_->seq == seq) return *workspace_;
  release_workspace();
  const Gpt2Config& c = config_;
  const DType act = backend_.activation_dtype();
  const std::int64_t tokens = batch * seq;
  auto ws = std::make_unique<Workspace>();
  ws->batch = batch;
  ws->seq = seq;
  std::vector<std::int32_t> arange(static_cast<std::size_t>(tokens));
  for (std::int64_t t = 0; t < tokens; ++t) arange[t] = static_cast<std::int32_t>(t % seq);
  std::vector<std::int32_t> last(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) last[b] = static_cast<std::int32_t>(b * seq + seq - 1);
  ws->arange_positions = backend_.upload(HostTensor::from_i32({batch, seq}, arange), DType::I32);
  ws->ones_mask = backend_.upload(
      HostTensor::from_i32({batch, seq}, std::vector<std::int32_t>(arange.size(), 1)), DType::I32);
  ws->last_rows = backend_.upload(HostTensor::from_i32({batch}, last), DType::I32);
  ws->mask_positions = backend_.allocate(DType::I32, {batch, seq});
  ws->hidden = backend_.allocate(act, {tokens, c.hidden});
  ws->normed = backend_.allocate(act, {tokens, c.hidden});
  ws->qkv = backend_.allocate(act, {tokens, 3 * c.hidden});
  ws->context = backend_.allocate(act, {tokens, c.hidden});
  ws->projected = backend_.allocate(act, {tokens, c.hidden});
  ws->ffn = backend_.allocate(act, {tokens, c.inner});
  workspace_ = std::move(ws);
  return *workspace_;
}

std::unique_ptr<DecodeSession> Gpt2Model::start_session(std::int64_t batch,
                                                        std::int64_t capacity) const {
  const Gpt2Config& c = config_;
  EAQ_CHECK(batch >= 1, "a decode session needs a batch of at least 1 row, got {}", batch);
  EAQ_CHECK(capacity >= 1 && capacity <= c.positions,
            "a decode session of {} positions does not fit the model's context: n_positions is {} "
            "(prompt length + new tokens - 1 must be at most that)",
            capacity, c.positions);
  const DType act = backend_.activation_dtype();
  std::unique_ptr<DecodeSession> s(new DecodeSession(*this, backend_));
  s->batch_ = batch;
  s->capacity_ = capacity;
  for (std::int64_t i = 0; i < c.layers; ++i) {
    s->kv_.push_back(s->own(backend_.allocate(act, {batch, capacity, 2 * c.hidden})));
  }
  s->counters_ = s->own(backend_.allocate(DType::I32, {1 + batch}));
  s->counters_backup_ = s->own(backend_.allocate(DType::I32, {1 + batch}));
  s->slot_ = s->counters_.rows(0, 1);
  s->positions_ = s->counters_.rows(1, batch);
  s->key_mask_ = s->own(backend_.allocate(DType::I32, {batch, capacity}));
  s->tokens_ = s->own(backend_.allocate(DType::I32, {batch, capacity}));
  s->next_ids_ = s->own(backend_.allocate(DType::I32, {batch}));
  s->next_ids_backup_ = s->own(backend_.allocate(DType::I32, {batch}));
  s->rewind_counters_ = s->own(backend_.allocate(DType::I32, {1 + batch}));
  s->rewind_mask_ = s->own(backend_.allocate(DType::I32, {batch, capacity}));
  s->rewind_next_ids_ = s->own(backend_.allocate(DType::I32, {batch}));
  s->hidden_ = s->own(backend_.allocate(act, {batch, c.hidden}));
  s->normed_ = s->own(backend_.allocate(act, {batch, c.hidden}));
  s->qkv_ = s->own(backend_.allocate(act, {batch, 3 * c.hidden}));
  s->context_ = s->own(backend_.allocate(act, {batch, c.hidden}));
  s->projected_ = s->own(backend_.allocate(act, {batch, c.hidden}));
  s->ffn_ = s->own(backend_.allocate(act, {batch, c.inner}));
  s->finished_ = s->own(backend_.allocate(act, {batch, c.hidden}));
  for (DeviceTensor& sum : s->pending_) {
    sum = s->own(backend_.allocate(DType::I64, Backend::pending_residual_shape(c.hidden)));
  }
  s->attention_pending_ = s->own(backend_.upload(
      HostTensor::empty(DType::I64, Backend::pending_residual_shape(c.hidden)), DType::I64));
  s->logits_ = s->own(backend_.allocate(act, {batch, c.vocab_size}));
  s->logits_backup_ = s->own(backend_.allocate(act, {batch, c.vocab_size}));
  s->whole_step_ = describe_step(*s);  // the same every step but for the ids
  return s;
}

DecodeSession::~DecodeSession() {
  for (DeviceTensor& t : owned_) backend_.release(t);
}

// --- the forward
// ----------------------------------------------------------------------------------

template <class Attend, class Narrow>
void Gpt2Model::run_blocks(Rows& r, const Attend& attend, const Narrow& narrow) {
  const float eps = config_.layer_norm_eps;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const Layer& layer = layers_[i];
    // The fused pairs let a backend save launches (CUDA decode: LayerNorm inside the GEMV, the
    // residual added in its epilogue); `projected` is the scratch of backends that do not fuse.
    attend(i, layer);
    // After the last layer's attention (which stores its keys and values) the caller may keep
    // fewer rows: those whose output it reads.
    Rows& t = i + 1 == layers_.size() ? narrow(r) : r;
    backend_.linear_residual(t.context, *layer.attn_proj, t.hidden, t.projected, t.hidden);
    backend_.layer_norm_linear(t.hidden, nullptr, layer.ln_2_weight, layer.ln_2_bias, eps, t.normed,
                               *layer.c_fc, config_.activation, t.ffn);
    backend_.linear_residual(t.ffn, *layer.mlp_proj, t.hidden, t.projected, t.hidden);
  }
}

void Gpt2Model::sequence_forward(Workspace& ws, const DeviceTensor& ids, const DeviceTensor* mask,
                                 const DeviceTensor& positions, DecodeSession* session,
                                 bool last_rows_only) {
  const std::int64_t batch = ws.batch, seq = ws.seq, e = config_.hidden;
  const DType act = backend_.activation_dtype();
  const std::size_t element = dtype_size(act);
  const DeviceTensor flat_positions = positions.reshaped({batch * seq});
  backend_.embed(ids.reshaped({batch * seq}), wte_, &flat_positions, &wpe_, nullptr, nullptr,
                 ws.hidden);
  EAQ_ASSERT(!last_rows_only || session != nullptr);
  Rows rows{ws.hidden, ws.normed, ws.qkv, ws.context, ws.projected, ws.ffn};
  Rows last;
  char* qkv = static_cast<char*>(ws.qkv.data);
  const auto attend = [&](std::size_t layer, const Layer& weights) {
    backend_.layer_norm_linear(rows.hidden, nullptr, weights.ln_1_weight, weights.ln_1_bias,
                               config_.layer_norm_eps, rows.normed, *weights.c_attn,
                               Activation::None, rows.qkv);
    AttentionArgs a;
    if (session != nullptr) {
      // The prompt's keys and values go into the cache rows [0, seq) as attention reads them.
      char* cache = static_cast<char*>(session->kv_[layer].data);
      a.store_k = cache;
      a.store_v = cache + e * element;
      a.store_batch_stride = session->capacity_ * 2 * e;
      a.store_row_stride = 2 * e;
    }
    a.q = qkv;
    a.k = qkv + e * element;
    a.v = qkv + 2 * e * element;
    a.out = ws.context.data;
    a.q_batch_stride = a.kv_batch_stride = seq * 3 * e;
    a.q_row_stride = a.kv_row_stride = 3 * e;
    a.out_batch_stride = seq * e;
    a.out_row_stride = e;
    a.key_mask = mask ? static_cast<const std::int32_t*>(mask->data) : nullptr;
    a.mask_batch_stride = seq;
    a.batch = batch;
    a.q_len = a.kv_len = seq;
    a.heads = config_.heads;
    a.head_dim = config_.head_dim();
    a.q_position_offset = 0;
    a.causal = true;
    a.scale = weights.attention_scale;
    backend_.attention(a);
  };
  const auto narrow = [&](Rows& all) -> Rows& {
    if (!last_rows_only) return all;
    // The last layer's projection and MLP on each row's last token only (left padding puts it
    // in the last column), into the session's one-row buffers: at batch 1 the rows are views.
    if (batch == 1) {
      last = Rows{ws.hidden.rows(seq - 1, 1),  session->normed_,    session->qkv_,
                  ws.context.rows(seq - 1, 1), session->projected_, session->ffn_};
    } else {
      backend_.gather_rows(ws.hidden, ws.last_rows, session->hidden_);
      backend_.gather_rows(ws.context, ws.last_rows, session->context_);
      last = Rows{session->hidden_,  session->normed_,    session->qkv_,
                  session->context_, session->projected_, session->ffn_};
    }
    return last;
  };
  run_blocks(rows, attend, narrow);
}

void Gpt2Model::full_logits(Workspace& ws) {
  if (ws.logits.data == nullptr) {
    ws.logits =
        backend_.allocate(backend_.activation_dtype(), {ws.batch * ws.seq, config_.vocab_size});
  }
  backend_.layer_norm_linear(ws.hidden, nullptr, ln_f_weight_, ln_f_bias_, config_.layer_norm_eps,
                             ws.normed, *lm_head_, Activation::None, ws.logits);
}

void Gpt2Model::check_ids(const DeviceTensor& ids, const char* what) const {
  EAQ_CHECK(ids.data != nullptr && ids.dtype == DType::I32 && ids.rank() == 2 && ids.dim(0) > 0 &&
                ids.dim(1) > 0,
            "{}: expected non-empty I32 token ids of shape [batch, seq], got {} {}", what,
            dtype_name(ids.dtype), shape_str(ids.shape));
  EAQ_CHECK(ids.dim(1) <= config_.positions,
            "{}: a sequence of {} tokens is longer than the model's context (n_positions {})", what,
            ids.dim(1), config_.positions);
}

DeviceTensor Gpt2Model::forward_logits(const DeviceTensor& ids, const DeviceTensor* mask,
                                       const DeviceTensor* position_ids) {
  check_ids(ids, "forward_logits");
  if (mask) check_i32(*mask, ids.shape, "forward_logits attention mask");
  if (position_ids) check_i32(*position_ids, ids.shape, "forward_logits position ids");
  Workspace& ws = ensure_workspace(ids.dim(0), ids.dim(1));
  sequence_forward(ws, ids, mask, position_ids ? *position_ids : ws.arange_positions, nullptr,
                   false);
  full_logits(ws);
  return ws.logits;
}

// --- incremental decoding
// -------------------------------------------------------------------------

DeviceTensor Gpt2Model::prefill_hidden(DecodeSession& s, const DeviceTensor& ids,
                                       const DeviceTensor* mask, bool all_positions) {
  EAQ_CHECK(&s.model_ == this, "prefill: the session belongs to another model");
  check_ids(ids, "prefill");
  const std::int64_t batch = ids.dim(0), seq = ids.dim(1);
  EAQ_CHECK(batch == s.batch_, "prefill: {} prompt rows for a session of batch {}", batch,
            s.batch_);
  EAQ_CHECK(seq <= s.capacity_,
            "prefill: a prompt of {} tokens does not fit the session's cache of {} positions", seq,
            s.capacity_);
  if (mask) check_i32(*mask, ids.shape, "prefill attention mask");
  Workspace& ws = ensure_workspace(batch, seq);
  const DeviceTensor& m = mask ? *mask : ws.ones_mask;

  // The session's state: mask and tokens of the prompt in cache positions [0, seq), each row's
  // next position id, and the next free slot.
  PromptState state;
  state.mask = static_cast<const std::int32_t*>(m.data);
  state.ids = static_cast<const std::int32_t*>(ids.data);
  state.position_ids = static_cast<std::int32_t*>(ws.mask_positions.data);
  state.key_mask = static_cast<std::int32_t*>(s.key_mask_.data);
  state.tokens = static_cast<std::int32_t*>(s.tokens_.data);
  state.counters = static_cast<std::int32_t*>(s.counters_.data);
  state.batch = batch;
  state.len = seq;
  state.capacity = s.capacity_;
  backend_.start_prompt(state);

  // Only each row's last token feeds the first generated token, so unless every position's
  // logits are asked for, the last layer's projection and MLP run on those rows alone (its keys
  // and values, which the cache keeps, are computed for every row before).
  const bool last_rows_only = !all_positions;
  sequence_forward(ws, ids, &m, ws.mask_positions, &s, last_rows_only);
  s.length_ = seq;
  s.prefilled_ = true;
  // Left padding puts every row's last token in the last column: LM head on those rows only (at
  // batch 1 that row is a view, no copy).
  if (batch == 1) return ws.hidden.rows(seq - 1, 1);
  if (!last_rows_only) backend_.gather_rows(ws.hidden, ws.last_rows, s.hidden_);
  return s.hidden_;
}

bool Gpt2Model::head(DecodeSession& s, const DeviceTensor& last, bool greedy,
                     const DeviceTensor* pending, bool advance) {
  if (greedy && backend_.layer_norm_linear_argmax(
                    last, ln_f_weight_, ln_f_bias_, config_.layer_norm_eps, s.normed_, *lm_head_,
                    s.next_ids_, pending, advance ? &s.counters_ : nullptr)) {
    return true;
  }
  const DeviceTensor* row = &last;
  if (pending != nullptr) {
    backend_.finish_pending(last, *pending, s.finished_);
    row = &s.finished_;
  }
  backend_.layer_norm_linear(*row, nullptr, ln_f_weight_, ln_f_bias_, config_.layer_norm_eps,
                             s.normed_, *lm_head_, Activation::None, s.logits_);
  return false;
}

bool Gpt2Model::can_leave_mlp_pending(const DecodeSession& s) const {
  if (s.batch_ != 1 || layers_.empty()) return false;
  for (const Layer& layer : layers_) {
    if (!backend_.can_leave_mlp_pending(s.hidden_, *layer.c_fc, *layer.mlp_proj)) return false;
  }
  return true;
}

bool Gpt2Model::can_leave_attention_pending(const DecodeSession& s) const {
  if (s.batch_ != 1 || layers_.empty()) return false;
  for (const Layer& layer : layers_) {
    if (!backend_.can_leave_attention_pending(s.hidden_, *layer.c_attn, *layer.attn_proj))
      return false;
  }
  return true;
}

const DeviceTensor& Gpt2Model::prefill(DecodeSession& s, const DeviceTensor& ids,
                                       const DeviceTensor* mask, DeviceTensor* all_logits) {
  head(s, prefill_hidden(s, ids, mask, all_logits != nullptr), false);
  if (all_logits != nullptr) {
    full_logits(*workspace_);
    *all_logits = workspace_->logits;
  }
  return s.logits_;
}

const DeviceTensor& Gpt2Model::prefill_greedy(DecodeSession& s, const DeviceTensor& ids,
                                              const DeviceTensor* mask) {
  if (head(s, prefill_hidden(s, ids, mask, false), true)) {
    ++s.bounded_head_prompts_;
  } else {
    backend_.argmax_rows(s.logits_, s.next_ids_);
  }
  return s.next_ids_;
}

const DeviceTensor& Gpt2Model::decode_step(DecodeSession& s, const DeviceTensor& next_ids) {
  step(s, next_ids, false);
  return s.logits_;
}

const DeviceTensor& Gpt2Model::greedy_step(DecodeSession& s) {
  if (!step(s, s.next_ids_, true)) backend_.argmax_rows(s.logits_, s.next_ids_);
  return s.next_ids_;
}

bool Gpt2Model::step(DecodeSession& s, const DeviceTensor& next_ids, bool greedy) {
  EAQ_CHECK(&s.model_ == this, "decode_step: the session belongs to another model");
  EAQ_CHECK(s.prefilled_, "decode_step: the session has no prompt yet; call prefill first");
  EAQ_CHECK(
      next_ids.data != nullptr && next_ids.dtype == DType::I32 && next_ids.numel() == s.batch_,
      "decode_step: expected I32 token ids, one per row ({}), got {} {}", s.batch_,
      dtype_name(next_ids.dtype), shape_str(next_ids.shape));
  EAQ_CHECK(s.length_ < s.capacity_,
            "decode_step: the session's cache of {} positions is full (make the session with a "
            "larger capacity, at most n_positions {})",
            s.capacity_, config_.positions);
  // One call when the backend has a whole-step kernel (CUDA at batch 1), else op by op.
  s.whole_step_.ids = &next_ids;
  s.whole_step_.gate = s.gate_;
  const bool fused = backend_.decoder_step(s.whole_step_);
  s.whole_step_.ids = nullptr;
  s.whole_step_.gate = nullptr;
  bool chose = false;
  if (fused) {
    ++s.fused_steps_;
  } else {
    chose = unfused_step(s, next_ids, greedy);
    if (chose) ++s.bounded_head_steps_;
  }
  // The next slot, and every row's next position id (a head that chose the token did it).
  if (!chose) backend_.increment(s.counters_);
  ++s.length_;
  return chose;
}

DecoderStep Gpt2Model::describe_step(DecodeSession& s) const {
  DecoderStep step;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const Layer& layer = layers_[i];
    DecoderBlock block;
    block.ln_1_weight = &layer.ln_1_weight;
    block.ln_1_bias = &layer.ln_1_bias;
    block.qkv = layer.c_attn.get();
    block.attn_out = layer.attn_proj.get();
    block.ln_2_weight = &layer.ln_2_weight;
    block.ln_2_bias = &layer.ln_2_bias;
    block.mlp_in = layer.c_fc.get();
    block.mlp_out = layer.mlp_proj.get();
    block.attention_scale = layer.attention_scale;
    block.kv_cache = s.kv_[i].data;
    step.blocks.push_back(block);
  }
  step.word_table = &wte_;
  step.position_table = &wpe_;
  step.ln_f_weight = &ln_f_weight_;
  step.ln_f_bias = &ln_f_bias_;
  step.lm_head = lm_head_.get();
  step.slot = &s.slot_;
  step.positions = &s.positions_;
  step.key_mask = &s.key_mask_;
  step.tokens = &s.tokens_;
  step.hidden = &s.hidden_;
  step.qkv = &s.qkv_;
  step.ffn = &s.ffn_;
  step.logits = &s.logits_;
  step.batch = s.batch_;
  step.capacity = s.capacity_;
  step.heads = config_.heads;
  step.layer_norm_eps = config_.layer_norm_eps;
  step.activation = config_.activation;
  return step;
}

bool Gpt2Model::unfused_step(DecodeSession& s, const DeviceTensor& next_ids, bool greedy) {
  const std::int64_t batch = s.batch_, e = config_.hidden, capacity = s.capacity_;
  const DType act = backend_.activation_dtype();
  const std::size_t element = dtype_size(act);
  const auto* slot = static_cast<const std::int32_t*>(s.slot_.data);

  DecodeStart start;
  start.ids = &next_ids;
  start.slot = &s.slot_;
  start.key_mask = &s.key_mask_;
  start.tokens = &s.tokens_;
  start.word_table = &wte_;
  start.positions = &s.positions_;
  start.position_table = &wpe_;
  start.hidden = &s.hidden_;
  start.gate = s.gate_;
  backend_.start_decode_step(start);
  char* qkv = static_cast<char*>(s.qkv_.data);
  const auto attention_args = [&](std::size_t layer, const Layer& weights) {
    char* cache = static_cast<char*>(s.kv_[layer].data);
    // Attend over the whole cache; the key mask (prompt mask, then one 1 per step) hides padding
    // and the positions not filled yet, so nothing here depends on the step number. The op
    // appends this step's K and V (adjacent in the qkv row) at the slot first.
    AttentionArgs a;
    a.q = qkv;
    a.k = cache;
    a.v = cache + e * element;
    a.out = s.context_.data;
    a.q_batch_stride = a.q_row_stride = 3 * e;
    a.kv_batch_stride = capacity * 2 * e;
    a.kv_row_stride = 2 * e;
    a.out_batch_stride = a.out_row_stride = e;
    a.key_mask = static_cast<const std::int32_t*>(s.key_mask_.data);
    a.mask_batch_stride = capacity;
    a.batch = batch;
    a.q_len = 1;
    a.kv_len = capacity;
    a.heads = config_.heads;
    a.head_dim = config_.head_dim();
    a.causal = false;
    a.scale = weights.attention_scale;
    a.append_k = qkv + e * element;
    a.append_v = qkv + 2 * e * element;
    a.append_batch_stride = 3 * e;
    a.append_slot = slot;
    return a;
  };
  const auto attend = [&](std::size_t layer, const Layer& weights, const PendingResidual* pending) {
    // One call, so a backend can keep q, k and v on chip (CUDA at batch 1: one kernel).
    backend_.layer_norm_linear_attention(s.hidden_, weights.ln_1_weight, weights.ln_1_bias,
                                         config_.layer_norm_eps, s.normed_, *weights.c_attn, s.qkv_,
                                         attention_args(layer, weights), pending);
  };
  if (can_leave_attention_pending(s)) {
    // run_blocks' ops, with each attention block's projection left pending: layer i's attention
    // op adds it into attention_pending_, c_fc's op finishes hidden + that sum into finished_ (the
    // MLP projection's residual), and the MLP projection's op zeroes the sum for layer i + 1.
    ++s.pending_attention_steps_;
    const float eps = config_.layer_norm_eps;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const Layer& layer = layers_[i];
      backend_.layer_norm_attention_pending(
          s.hidden_, layer.ln_1_weight, layer.ln_1_bias, eps, s.normed_, *layer.c_attn, s.qkv_,
          attention_args(i, layer), *layer.attn_proj, s.attention_pending_);
      backend_.layer_norm_linear_pending(s.hidden_, s.attention_pending_, s.finished_,
                                         layer.ln_2_weight, layer.ln_2_bias, eps, s.normed_,
                                         *layer.c_fc, config_.activation, s.ffn_);
      backend_.linear_residual_zeroing(s.ffn_, *layer.mlp_proj, s.finished_, s.projected_,
                                       s.hidden_, s.attention_pending_);
    }
    return head(s, s.hidden_, greedy, nullptr, true);
  }
  if (!can_leave_mlp_pending(s)) {
    Rows rows{s.hidden_, s.normed_, s.qkv_, s.context_, s.projected_, s.ffn_};
    run_blocks(rows,
               [&](std::size_t layer, const Layer& weights) { attend(layer, weights, nullptr); });
    // next_ids was read by the embedding and the token write above; the head may overwrite it.
    return head(s, s.hidden_, greedy, nullptr, true);
  }
  // run_blocks' ops, with each feed-forward block's sum left pending for the op after it: layer i
  // adds into pending_[i % 2], which layer i's attention op zeroes (layer i - 1's sum is the other
  // one, still being read), and layer i + 1's attention op (or the head) finishes. The attention
  // op writes the finished row into finished_, the attention projection's residual.
  ++s.pending_mlp_steps_;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const Layer& layer = layers_[i];
    PendingResidual pending;
    pending.in = i == 0 ? nullptr : &s.pending_[(i - 1) % 2];
    pending.finished = &s.finished_;
    pending.zero = &s.pending_[i % 2];
    attend(i, layer, &pending);
    backend_.linear_residual(s.context_, *layer.attn_proj, s.finished_, s.projected_, s.hidden_);
    backend_.layer_norm_mlp_pending(s.hidden_, layer.ln_2_weight, layer.ln_2_bias,
                                    config_.layer_norm_eps, *layer.c_fc, config_.activation,
                                    *layer.mlp_proj, s.pending_[i % 2]);
  }
  return head(s, s.hidden_, greedy, &s.pending_[(layers_.size() - 1) % 2], true);
}

const DeviceTensor& Gpt2Model::select_greedy(DecodeSession& s) {
  EAQ_CHECK(&s.model_ == this, "select_greedy: the session belongs to another model");
  backend_.argmax_rows(s.logits_, s.next_ids_);
  return s.next_ids_;
}

namespace {

// Replays a captured greedy step and keeps the session's host-side length (and its capacity
// check) in step with the device.
class GreedyStepGraph final : public CapturedGraph {
 public:
  GreedyStepGraph(std::unique_ptr<CapturedGraph> graph, std::int64_t& length, std::int64_t capacity)
      : graph_(std::move(graph)), length_(length), capacity_(capacity) {}
  void launch() override {
    EAQ_CHECK(length_ < capacity_,
              "greedy decode graph: the session's cache of {} positions is full", capacity_);
    const std::int64_t before = length_;
    graph_->launch();
    length_ = before + 1;  // the CPU backend's "graph" runs decode_step, which counts already
  }

 private:
  std::unique_ptr<CapturedGraph> graph_;
  std::int64_t& length_;
  std::int64_t capacity_;
};

}  // namespace

std::unique_ptr<CapturedGraph> Gpt2Model::capture_greedy_step(DecodeSession& s,
                                                              const StepGate* gate) {
  EAQ_CHECK(&s.model_ == this, "capture_greedy_step: the session belongs to another model");
  EAQ_CHECK(s.prefilled_, "capture_greedy_step: call prefill (and select_greedy) first");
  EAQ_CHECK(s.length_ < s.capacity_,
            "capture_greedy_step: the session's cache of {} positions is full", s.capacity_);
  const std::int64_t length = s.length_;
  const auto step = [this, &s] { greedy_step(s); };
  // One step outside the capture creates what a first call creates (GEMM plans, scratch). It
  // writes the same cache position, mask bit and token the real step will write; the counters,
  // the next ids and the logits are put back.
  backend_.copy(s.counters_, s.counters_backup_);
  backend_.copy(s.next_ids_, s.next_ids_backup_);
  backend_.copy(s.logits_, s.logits_backup_);
  step();
  backend_.copy(s.counters_backup_, s.counters_);
  backend_.copy(s.next_ids_backup_, s.next_ids_);
  backend_.copy(s.logits_backup_, s.logits_);
  s.length_ = length;
  // Only the captured step is gated: the one above ran at once, with nobody to open a gate.
  s.gate_ = gate;
  std::unique_ptr<CapturedGraph> graph;
  try {
    graph = backend_.capture(step);
  } catch (...) {
    s.gate_ = nullptr;
    throw;
  }
  s.gate_ = nullptr;
  s.length_ = length;
  return std::make_unique<GreedyStepGraph>(std::move(graph), s.length_, s.capacity_);
}

void Gpt2Model::mark_rewind_point(DecodeSession& s) {
  EAQ_CHECK(&s.model_ == this, "mark_rewind_point: the session belongs to another model");
  EAQ_CHECK(s.prefilled_, "mark_rewind_point: call prefill first");
  backend_.copy(s.counters_, s.rewind_counters_);
  backend_.copy(s.key_mask_, s.rewind_mask_);
  backend_.copy(s.next_ids_, s.rewind_next_ids_);
  s.rewind_length_ = s.length_;
}

void Gpt2Model::rewind(DecodeSession& s) {
  EAQ_CHECK(s.rewind_length_ >= 0, "rewind: call mark_rewind_point first");
  backend_.copy(s.rewind_counters_, s.counters_);
  backend_.copy(s.rewind_mask_, s.key_mask_);
  backend_.copy(s.rewind_next_ids_, s.next_ids_);
  s.length_ = s.rewind_length_;
}

}  // namespace eaq
