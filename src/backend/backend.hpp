// The op set that model code is written against. A backend (CPU reference, CUDA) owns device
// memory and a stream; every op is stream-ordered and never synchronizes with the host, so a
// whole forward can be captured into a CUDA graph.
//
// Tensors passed to ops are row-major and contiguous unless an op says otherwise. Float
// activations have the backend's activation dtype; LayerNorm parameters are always F32.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/precision.hpp"
#include "core/tensor.hpp"

namespace eaq {

enum class Activation { None, Gelu, GeluTanh, Relu, Tanh };
const char* activation_name(Activation activation);

// A non-owning view of memory on a backend's device.
struct DeviceTensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Shape shape;

  std::int64_t numel() const { return shape_numel(shape); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  std::int64_t dim(int i) const { return shape.at(static_cast<std::size_t>(i)); }
  int rank() const { return static_cast<int>(shape.size()); }
  // Rows [begin, begin + count) along dimension 0.
  DeviceTensor rows(std::int64_t begin, std::int64_t count) const;
  DeviceTensor reshaped(Shape new_shape) const;
};

// What the caller wants of a Linear layer; the backend decides the storage from its precision.
struct LinearOptions {
  std::string name;                 // e.g. "layer.0.attention.qkv": for messages and reports
  bool quantize = false;            // store int8/fp8 weights when the precision is a quantized one
  float static_input_scale = 0.0f;  // int8-static: calibrated activation scale (absmax / 127)
};

// A Linear layer prepared for a backend: y = x W^T + b with W of shape [out, in].
class LinearWeights {
 public:
  virtual ~LinearWeights() = default;
  std::int64_t in_features = 0;
  std::int64_t out_features = 0;
  std::string name;
  std::string kernel;  // the GEMM path that runs, e.g. "cpu-f32", "cublasLt-f16"
};

// Scaled dot-product attention over strided views, one call for all batches and heads.
// Element (b, i, h*head_dim + d) of Q lives at q[b*q_batch_stride + i*q_row_stride + h*head_dim +
// d] and likewise for K, V and the output. Query i sits at absolute position q_position_offset + i;
// with `causal`, it sees keys j <= q_position_offset + i. key_mask (I32, 1 = attend) is read at
// key_mask[b*mask_batch_stride + j] when not null.
struct AttentionArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  std::int64_t q_batch_stride = 0, q_row_stride = 0;
  std::int64_t kv_batch_stride = 0, kv_row_stride = 0;
  std::int64_t out_batch_stride = 0, out_row_stride = 0;
  const std::int32_t* key_mask = nullptr;
  std::int64_t mask_batch_stride = 0;
  std::int64_t batch = 0, q_len = 0, kv_len = 0, heads = 0, head_dim = 0;
  std::int64_t q_position_offset = 0;
  bool causal = false;
  float scale = 1.0f;
  // Decode with a KV cache (optional): this step's key and value rows are first written into k
  // and v at position *append_slot of every batch row, k[b, slot, :] = append_k[b *
  // append_batch_stride + :] over heads * head_dim elements (likewise v), and then attended to like
  // the rest. k and v must be writable. A slot outside [0, kv_len) writes nothing. Doing it here
  // saves a decode step one launch per layer; the CUDA decode kernel reads the new rows straight
  // from append_k/append_v. With an append, the op just before this one must not have written
  // the other cache rows or the key mask (in a decode step they come from earlier steps and from
  // the step's start): the CUDA decode kernel reads them while that op is still finishing.
  const void* append_k = nullptr;
  const void* append_v = nullptr;
  std::int64_t append_batch_stride = 0;
  const std::int32_t* append_slot = nullptr;
  // Prefill into a KV cache (optional): every key and value row is also stored,
  // store_k[b * store_batch_stride + j * store_row_stride + c] = k[b, j, c] for j < kv_len and
  // c < heads * head_dim (likewise store_v), as a CacheWrite would. The CUDA prefill kernel stores
  // the rows it has staged anyway, which saves a prefill one launch per layer.
  void* store_k = nullptr;
  void* store_v = nullptr;
  std::int64_t store_batch_stride = 0, store_row_stride = 0;
};

class StepGate;  // below

// A write into a KV cache (or any [batch, capacity, row] buffer) at a slot the device holds:
// cache[b, start + i, c] = src[b * src_batch_stride + i * src_row_stride + c] for b < batch,
// i < rows, c < cols, with start = *start_slot (a device I32 scalar) or 0 when start_slot is null.
// Reading the slot on the device lets a captured decode step append at a moving position. Rows at
// or past `capacity` are dropped. Strides are in elements of `dtype`.
struct CacheWrite {
  const void* src = nullptr;
  std::int64_t src_batch_stride = 0, src_row_stride = 0;
  void* cache = nullptr;
  std::int64_t cache_batch_stride = 0, cache_row_stride = 0, capacity = 0;
  const std::int32_t* start_slot = nullptr;
  std::int64_t batch = 0, rows = 0, cols = 0;
  DType dtype = DType::F32;
};

// A decode step's first op: with s = *slot, key_mask[b, s] = 1 and tokens[b, s] = ids[b] for every
// row b (nothing where s is outside [0, capacity)); then hidden[b] = word[ids[b]] +
// position[positions[b]] (positions and position_table may be null: no position row). ids,
// positions: I32 [B]; slot: I32 [1]; key_mask, tokens: I32 [B, capacity]; tables: [rows, E];
// hidden: [B, E].
struct DecodeStart {
  const DeviceTensor* ids = nullptr;
  const DeviceTensor* slot = nullptr;
  DeviceTensor* key_mask = nullptr;
  DeviceTensor* tokens = nullptr;
  const DeviceTensor* word_table = nullptr;
  const DeviceTensor* positions = nullptr;
  const DeviceTensor* position_table = nullptr;
  DeviceTensor* hidden = nullptr;
  // With a gate (make_step_gate), the op holds the ops after it until the gate opens.
  const StepGate* gate = nullptr;
};

// A residual sum a batch-1 decode step leaves for the op after it. layer_norm_mlp_pending does not
// write its output row y: it leaves y = x + pending, `pending` being an I64 [E + 1] buffer in the
// backend's own fixed point (CUDA: pending_residual.cuh), and the next op that reads y finishes
// the sum. Saves a kernel boundary per layer. The ops that take one:
struct PendingResidual {
  const DeviceTensor* in = nullptr;  // the op's x is x + *in (null: x as it is)
  DeviceTensor* finished = nullptr;  // receives that x (activation dtype, x's shape); required
  DeviceTensor* zero = nullptr;      // left holding a zero sum for the next layer_norm_mlp_pending
};

// One pre-LN decoder block (GPT-2's) as DecoderStep lists it.
struct DecoderBlock {
  const DeviceTensor *ln_1_weight = nullptr, *ln_1_bias = nullptr;  // F32 [E]
  const LinearWeights* qkv = nullptr;                               // [3E, E]: q, k, v
  const LinearWeights* attn_out = nullptr;                          // [E, E]
  const DeviceTensor *ln_2_weight = nullptr, *ln_2_bias = nullptr;  // F32 [E]
  const LinearWeights* mlp_in = nullptr;                            // [I, E]
  const LinearWeights* mlp_out = nullptr;                           // [E, I]
  float attention_scale = 1.0f;
  void* kv_cache = nullptr;  // [B, capacity, 2E]: K in columns [0, E), V in [E, 2E)
};

// A whole decode step of a pre-LN decoder with a KV cache, as Gpt2Model::decode_step runs it op
// by op: key_mask[b, slot] = 1 and tokens[b, slot] = ids[b]; hidden = word[ids] +
// position[positions]; per block, qkv = ln_1(hidden) W^T + b, K and V written into the cache at
// the slot, attention of q over the cache positions the key mask shows (up to the slot), hidden
// += attn_out(context), hidden += mlp_out(act(mlp_in(ln_2(hidden)))); logits = lm_head(ln_f(
// hidden)). The slot and positions are not advanced. Buffers: one row per batch row; qkv [B, 3E]
// and ffn [B, I] are scratch.
struct DecoderStep {
  std::vector<DecoderBlock> blocks;
  const DeviceTensor *word_table = nullptr, *position_table = nullptr;
  const DeviceTensor *ln_f_weight = nullptr, *ln_f_bias = nullptr;
  const LinearWeights* lm_head = nullptr;
  const DeviceTensor* ids = nullptr;                    // I32 [B]
  const DeviceTensor* slot = nullptr;                   // I32 [1]
  const DeviceTensor* positions = nullptr;              // I32 [B]
  DeviceTensor *key_mask = nullptr, *tokens = nullptr;  // I32 [B, capacity]
  DeviceTensor *hidden = nullptr, *qkv = nullptr, *ffn = nullptr, *logits = nullptr;
  std::int64_t batch = 0, capacity = 0, heads = 0;
  float layer_norm_eps = 1e-5f;
  Activation activation = Activation::GeluTanh;
  const StepGate* gate = nullptr;  // as DecodeStart::gate
};

// What a prompt of B rows of L tokens (LEFT-padded; mask 1 = token) leaves for decoding with caches
// of `capacity` positions, all I32:
// - position_ids[b, i] [B, L]: Hugging Face generate()'s, (number of ones in mask[b, 0..i]) - 1,
//   and 1 where mask[b, i] == 0;
// - key_mask[b, j] [B, capacity]: mask[b, j] for j < L, 0 after;
// - tokens[b, j] [B, capacity]: ids[b, j] for j < L (the rest is left as it is);
// - counters [1 + B]: counters[0] = L, the next free cache slot; counters[1 + b] = the number of
//   ones in row b, the position id of the token that follows.
struct PromptState {
  const std::int32_t* mask = nullptr;  // [B, L]
  const std::int32_t* ids = nullptr;   // [B, L]
  std::int32_t* position_ids = nullptr;
  std::int32_t* key_mask = nullptr;
  std::int32_t* tokens = nullptr;
  std::int32_t* counters = nullptr;
  std::int64_t batch = 0, len = 0, capacity = 0;
};

struct MemoryStats {
  std::size_t allocated_bytes = 0;  // live allocations now
  std::size_t peak_bytes = 0;       // high-water mark of live allocations
  std::size_t reserved_bytes = 0;   // held from the device, including cached free blocks
};

// A recorded sequence of ops replayed as one unit (a CUDA graph; on the CPU, a plain call).
class CapturedGraph {
 public:
  virtual ~CapturedGraph() = default;
  virtual void launch() = 0;
};

// A gate in front of a captured decode step (CUDA). The step's first kernel does its own work
// (key mask, token, embedding: all from the finished step before), then holds the step until the
// host opens the gate: the kernels after it wait for it. So a loop that syncs after every step can
// enqueue the next step (its graph launched, its first kernels resident and loading weights) while
// it still waits for the step before, and opens the gate once it has seen that step finish: the
// step then starts without waiting for the host's launch. Each open() lets one gated step through;
// open the gate again only after the step it let through has finished (mark and wait_for_mark).
class StepGate {
 public:
  virtual ~StepGate() = default;
  // Lets the next gated step through. Throws eaq::Error while the last opening is unused.
  virtual void open() = 0;
  // Marks the end of the work enqueued so far and returns the mark's number (0, 1, 2, ... over
  // the gate's life).
  virtual std::int64_t mark() = 0;
  // Waits until the work before mark `index` has finished; only the last two marks may be waited
  // for.
  virtual void wait_for_mark(std::int64_t index) = 0;
  // The word the gated kernel polls (the backend's own: CUDA, host memory mapped for the device).
  virtual void* device_word() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;  // "cpu", "cuda:0 NVIDIA H100 80GB HBM3"
  virtual Precision precision() const = 0;
  virtual DType activation_dtype() const = 0;
  virtual bool is_cuda() const { return false; }
  // The device's PCI bus id ("00000000:19:00.0"), to find the same GPU in NVML; empty on the CPU.
  virtual std::string pci_bus_id() const { return {}; }
  // A short description of the attention kernel(s) this backend runs, for reports.
  virtual std::string attention_kernel() const = 0;

  // --- memory -----------------------------------------------------------------------------------
  virtual DeviceTensor allocate(DType dtype, Shape shape) = 0;
  virtual void release(DeviceTensor& tensor) = 0;
  // Copies to the device converting to `dtype` (float <-> float, integer <-> integer).
  virtual DeviceTensor upload(const HostTensor& host, DType dtype) = 0;
  // Copies to the host (synchronizes); float dtypes come back as F32.
  virtual HostTensor download(const DeviceTensor& device) = 0;
  virtual void copy(const DeviceTensor& src, DeviceTensor& dst) = 0;  // same dtype and size
  virtual void synchronize() = 0;
  virtual MemoryStats memory_stats() const = 0;

  // --- weights ----------------------------------------------------------------------------------
  // `weight` is [out, in] and `bias` [out] (or null), any float dtype.
  virtual std::unique_ptr<LinearWeights> prepare_linear(const HostTensor& weight,
                                                        const HostTensor* bias,
                                                        const LinearOptions& options) = 0;

  // --- ops --------------------------------------------------------------------------------------
  // out[t] = word[ids[t]] + position[position_ids[t]] (if given) + type[type_ids[t]] (if given).
  // ids, position_ids, type_ids: I32 [T]; tables: [rows, hidden]; out: [T, hidden].
  virtual void embed(const DeviceTensor& ids, const DeviceTensor& word_table,
                     const DeviceTensor* position_ids, const DeviceTensor* position_table,
                     const DeviceTensor* type_ids, const DeviceTensor* type_table,
                     DeviceTensor& out) = 0;
  // out = LayerNorm(x + residual) * gamma + beta over the last dimension; residual may be null.
  // out may alias x or residual.
  virtual void layer_norm(const DeviceTensor& x, const DeviceTensor* residual,
                          const DeviceTensor& gamma, const DeviceTensor& beta, float eps,
                          DeviceTensor& out) = 0;
  // y[M, out] = act(x[M, in] W^T + b).
  virtual void linear(const DeviceTensor& x, const LinearWeights& weights, Activation activation,
                      DeviceTensor& y) = 0;
  virtual void attention(const AttentionArgs& args) = 0;
  // out = a + b, elementwise; out may alias a or b.
  virtual void add(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out) = 0;
  // out[i] = x[index[i]] (rows); index: I32 [n].
  virtual void gather_rows(const DeviceTensor& x, const DeviceTensor& index, DeviceTensor& out) = 0;
  // Copies a [rows, cols] block with row strides (in elements) between two buffers: KV caches.
  virtual void copy_rows_strided(const void* src, std::int64_t src_row_stride, void* dst,
                                 std::int64_t dst_row_stride, std::int64_t rows, std::int64_t cols,
                                 DType dtype) = 0;

  // --- decoding (causal language models) ---------------------------------------------------------
  // All I32 unless said otherwise. Every op reads its varying state from device memory, so a
  // decode step captured into a graph replays correctly at every position.
  //
  // The state a prompt leaves for decoding, in one op (see PromptState).
  virtual void start_prompt(const PromptState& state) = 0;
  virtual void write_cache(const CacheWrite& args) = 0;
  // key_mask[b, *slot] = 1 for every row b (nothing when *slot >= key_mask.dim(1)); key_mask
  // [B, S], slot [1].
  virtual void mark_cache_slot(const DeviceTensor& slot, DeviceTensor& key_mask) = 0;
  // values[i] += 1 for every element: advances a decode step's slot and position counters.
  virtual void increment(DeviceTensor& values) = 0;
  // DecodeStart's three writes. The default runs mark_cache_slot, write_cache and embed; CUDA
  // runs one kernel.
  virtual void start_decode_step(const DecodeStart& start);
  // out[r] = the column of the largest x[r, :] (the first one on ties, as torch.argmax);
  // x: float [R, C], out: I32 [R].
  virtual void argmax_rows(const DeviceTensor& x, DeviceTensor& out) = 0;
  // nll[r] = logsumexp(logits[r, :]) - logits[r, targets[r]]: the cross-entropy of each row in
  // nats, computed in f32 or wider. logits: float [R, V]; targets: I32 [R]; nll: F32 [R].
  virtual void token_nll(const DeviceTensor& logits, const DeviceTensor& targets,
                         DeviceTensor& nll) = 0;

  // --- fused pairs ------------------------------------------------------------------------------
  // Two ops in one call, so that a backend with quantized Linear layers can quantize the
  // intermediate for the Linear that reads it inside the op that produces it (CUDA int8/fp8: see
  // docs/quantization.md). The defaults run the two ops one after the other.
  //
  // out = LayerNorm(x + residual) exactly as layer_norm, then y = act(out W^T + b) as linear.
  virtual void layer_norm_linear(const DeviceTensor& x, const DeviceTensor* residual,
                                 const DeviceTensor& gamma, const DeviceTensor& beta, float eps,
                                 DeviceTensor& out, const LinearWeights& weights,
                                 Activation activation, DeviceTensor& y);
  // Greedy decoding's head for one row: next_ids[0] = the token layer_norm_linear(x, ..., weights,
  // logits) then argmax_rows(logits, next_ids) would pick (out receives the LayerNorm), found
  // without computing every logit where the backend can (CUDA, f16/bf16: bounded_argmax.cu, the
  // method in argmax_bounds.hpp). Returns false, having done nothing, where it cannot; the caller
  // then runs the two ops. The default cannot.
  // With `pending` (PendingResidual), x is x + *pending. With `counters` (I32), a call that
  // returns true has also run increment(*counters) after the token is written (CUDA: in the head's
  // last kernel, one launch fewer a decode step).
  virtual bool layer_norm_linear_argmax(const DeviceTensor& x, const DeviceTensor& gamma,
                                        const DeviceTensor& beta, float eps, DeviceTensor& out,
                                        const LinearWeights& weights, DeviceTensor& next_ids,
                                        const DeviceTensor* pending = nullptr,
                                        DeviceTensor* counters = nullptr) {
    (void)x, (void)gamma, (void)beta, (void)eps, (void)out, (void)weights, (void)next_ids;
    (void)pending, (void)counters;
    return false;
  }
  // y = x W^T + b + residual: a Linear layer that ends in a residual connection. y may alias
  // residual. `scratch` is [rows, out_features] in the activation dtype for backends that need the
  // product apart (the default: linear into scratch, then add); its contents afterwards are
  // unspecified.
  virtual void linear_residual(const DeviceTensor& x, const LinearWeights& weights,
                               const DeviceTensor& residual, DeviceTensor& scratch,
                               DeviceTensor& y);
  // A decode step's LayerNorm, QKV projection and attention: qkv = LayerNorm(x) W^T + b exactly as
  // layer_norm_linear (normed receives the LayerNorm), then attention(args), whose q, append_k
  // and append_v point into qkv. normed and qkv are scratch: their contents afterwards are
  // unspecified (CUDA at batch 1 keeps them on chip and runs one kernel per layer). The default
  // runs the two ops. With `pending` (only from a backend that left one), x is first finished
  // as PendingResidual says.
  virtual void layer_norm_linear_attention(const DeviceTensor& x, const DeviceTensor& gamma,
                                           const DeviceTensor& beta, float eps,
                                           DeviceTensor& normed, const LinearWeights& weights,
                                           DeviceTensor& qkv, const AttentionArgs& args,
                                           const PendingResidual* pending = nullptr);
  // A pre-LN feed-forward block with its residual, left pending (PendingResidual): afterwards the
  // block's output y = x + act(LayerNorm(x) W1^T + b1) W2^T + b2 (as layer_norm_linear, then
  // linear_residual with residual x, compute it, up to the rounding of the sum) is x + pending.
  // One row; pending must hold a zero sum (the op before zeroed it). Only where
  // can_leave_mlp_pending says so (the default: never); else the caller runs the two ops.
  virtual bool can_leave_mlp_pending(const DeviceTensor& x, const LinearWeights& first,
                                     const LinearWeights& second) const {
    (void)x, (void)first, (void)second;
    return false;
  }
  virtual void layer_norm_mlp_pending(const DeviceTensor& x, const DeviceTensor& gamma,
                                      const DeviceTensor& beta, float eps,
                                      const LinearWeights& first, Activation activation,
                                      const LinearWeights& second, DeviceTensor& pending);
  // A decode step's attention block with its output projection's sum left pending: afterwards the
  // block's output y = x + attention(...) W^T + b (as layer_norm_linear_attention, then
  // linear_residual with residual x, compute it, up to the rounding of the sum) is x + pending.
  // The arguments are layer_norm_linear_attention's; `projection` is the output projection. One
  // row; pending must hold a zero sum (linear_residual_zeroing left it so). Only where
  // can_leave_attention_pending says so (the default: never); the two ops after it are then
  // layer_norm_linear_pending and linear_residual_zeroing. Saves a kernel boundary per layer.
  virtual bool can_leave_attention_pending(const DeviceTensor& x, const LinearWeights& qkv,
                                           const LinearWeights& projection) const {
    (void)x, (void)qkv, (void)projection;
    return false;
  }
  virtual void layer_norm_attention_pending(const DeviceTensor& x, const DeviceTensor& gamma,
                                            const DeviceTensor& beta, float eps,
                                            DeviceTensor& normed, const LinearWeights& weights,
                                            DeviceTensor& qkv, const AttentionArgs& args,
                                            const LinearWeights& projection, DeviceTensor& pending);
  // layer_norm_linear(x + pending, nullptr, ...), where `finished` receives x + pending rounded
  // to the activation dtype (as finish_pending). finished must not alias x, out or y.
  virtual void layer_norm_linear_pending(const DeviceTensor& x, const DeviceTensor& pending,
                                         DeviceTensor& finished, const DeviceTensor& gamma,
                                         const DeviceTensor& beta, float eps, DeviceTensor& out,
                                         const LinearWeights& weights, Activation activation,
                                         DeviceTensor& y);
  // linear_residual, and `zero` (a pending sum the op before read) left holding a zero sum.
  virtual void linear_residual_zeroing(const DeviceTensor& x, const LinearWeights& weights,
                                       const DeviceTensor& residual, DeviceTensor& scratch,
                                       DeviceTensor& y, DeviceTensor& zero);
  // out = x + pending (PendingResidual), rounded to the activation dtype.
  virtual void finish_pending(const DeviceTensor& x, const DeviceTensor& pending,
                              DeviceTensor& out);
  // The shape of a pending residual for rows of `hidden` values.
  static Shape pending_residual_shape(std::int64_t hidden) { return {hidden + 1}; }
  // A feed-forward block: mid = act(x W1^T + b1), then y = mid W2^T + b2. `mid` is scratch of
  // [rows, first.out_features] in the activation dtype; its contents afterwards are unspecified
  // (a backend may keep the intermediate in quantized form only).
  virtual void feed_forward(const DeviceTensor& x, const LinearWeights& first,
                            Activation activation, DeviceTensor& mid, const LinearWeights& second,
                            DeviceTensor& y);

  // --- whole steps ------------------------------------------------------------------------------
  // Runs a decode step in one call when the backend has a kernel for it (CUDA: one launch at batch
  // 1, see decode_step.cu) and returns true; returns false, having done nothing, otherwise, and
  // the caller runs the ops. The CUDA backend runs it only with EAQ_FUSED_DECODE=1 in the
  // environment (a measured variant, slower than the ops so far: docs/results.md).
  virtual bool decoder_step(const DecoderStep& step) {
    (void)step;
    return false;
  }

  // --- graphs -----------------------------------------------------------------------------------
  // Records what `body` launches so launch() replays it. The CPU backend returns a graph that
  // simply calls `body` again.
  virtual std::unique_ptr<CapturedGraph> capture(const std::function<void()>& body) = 0;
  // A gate for captured decode steps (DecodeStart::gate, DecoderStep::gate), or null where the
  // backend has none (the CPU runs each op as it is called, so there is nothing to enqueue ahead).
  virtual std::unique_ptr<StepGate> make_step_gate() { return nullptr; }
};

}  // namespace eaq
