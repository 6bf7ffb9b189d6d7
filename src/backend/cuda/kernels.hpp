// Launchers of eaq's own CUDA kernels, callable from host C++ (the .cu files define them).
// Every launcher enqueues on `stream` and never synchronizes. Float tensors are `act` typed:
// F32, F16 or BF16.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.hpp"

namespace eaq::cuda {

// out[t] = word[ids[t]] + pos[pos_ids[t]] + type[type_ids[t]] (pos/type optional), f32 math.
void launch_embed(DType act, const std::int32_t* ids, const void* word,
                  const std::int32_t* position_ids, const void* position_table,
                  const std::int32_t* type_ids, const void* type_table, void* out,
                  std::int64_t tokens, std::int64_t hidden, cudaStream_t stream);

// out = LayerNorm(x + residual) * gamma + beta, one warp per row, f32 math. out may alias.
void launch_layer_norm(DType act, const void* x, const void* residual, const float* gamma,
                       const float* beta, float eps, void* out, std::int64_t rows,
                       std::int64_t cols, cudaStream_t stream);

// Device scratch for kernels that split one row's work over several blocks, the last block to
// finish combining the partial results: f32 partials and one arrival counter per row. The
// counters must be zero before the first launch; every launch leaves them at zero.
struct SplitScratch {
  float* partials = nullptr;
  std::int64_t partial_floats = 0;
  unsigned* counters = nullptr;
  std::int64_t counter_count = 0;
};
// What a launch would like to have; with less, it splits less (down to not at all).
struct SplitNeed {
  std::int64_t partial_floats = 0;
  std::int64_t counters = 0;
};

// Scaled dot-product attention (see AttentionArgs). Picks, for F16/BF16 with head_dim 32/64/128
// and q_len >= 16, the prefill kernel when there are few 16-query tiles and the tensor-core
// kernel otherwise, the grouped CUDA-core kernel for other prefills
// (f32 included), and the decode kernel for decode steps, which splits a long cache over several
// blocks per (query, head) when there are too few of those to fill the GPU.
void launch_attention(DType act, const AttentionArgs& args, const SplitScratch& scratch,
                      cudaStream_t stream);
SplitNeed attention_split_need(DType act, const AttentionArgs& args);
// The same with the kernel named (one attention_kernel_name() can return and the arguments suit),
// for benchmarks that compare kernels on one shape.
void launch_attention_kernel(DType act, const AttentionArgs& args, const SplitScratch& scratch,
                             const char* kernel, cudaStream_t stream);
// "mma", "prefill", "wmma", "grouped", "decode" or "simple": what launch_attention() runs for
// these arguments.
const char* attention_kernel_name(DType act, const AttentionArgs& args);
// The simple kernel alone, for tests that compare the two.
void launch_attention_simple(DType act, const AttentionArgs& args, cudaStream_t stream);
bool attention_tensor_core_eligible(DType act, const AttentionArgs& args);
// Whether the prefill kernel can run these arguments (it is chosen only for few query tiles).
bool attention_prefill_eligible(DType act, const AttentionArgs& args);
// The register (mma.sync) prefill kernel for head_dim 64 (attention_prefill_mma.cu): whether it
// can run these arguments (EAQ_PREFILL_MMA=0: never, to measure what it buys), and its launch.
// Chosen for every prompt or encoder batch it can run ("mma").
bool attention_prefill_mma_eligible(DType act, const AttentionArgs& args);
void launch_attention_prefill_mma(DType act, const AttentionArgs& args, cudaStream_t stream);

// y = act(y) in place (for activations cuBLASLt has no epilogue for: erf GELU, tanh).
void launch_activation(DType act, void* y, std::int64_t count, Activation activation,
                       cudaStream_t stream);
// y[r, c] = act(y[r, c] + bias[c]) in place; bias has dtype `bias_dtype`.
void launch_bias_activation(DType act, void* y, const void* bias, DType bias_dtype,
                            std::int64_t rows, std::int64_t cols, Activation activation,
                            cudaStream_t stream);
void launch_add(DType act, const void* a, const void* b, void* out, std::int64_t count,
                cudaStream_t stream);
// out[i] = x[index[i]] for rows of `row_bytes` bytes.
void launch_gather_rows(const void* x, const std::int32_t* index, void* out, std::int64_t rows,
                        std::int64_t row_bytes, cudaStream_t stream);
// y[m, n] = act(x[m, :] . w[n, :] + bias[n]) + residual[m, n] for m <= kMaxGemvRows rows (decode
// steps, small heads), one warp per output feature; x, w, y, bias and residual share the float
// dtype `act` (bias and residual may be null; residual may alias y). With ln_gamma set, x is first
// replaced by LayerNorm(x + ln_residual) * ln_gamma + ln_beta (f32 math, rounded to `act` as the
// LayerNorm kernel stores it), and the normalized rows are also written to ln_out (if not null;
// it must not alias x, ln_residual or y). Needs k a multiple of one 16-byte vector, k <= 12288
// and 16-byte aligned x and w.
struct GemvArgs {
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  void* y = nullptr;
  const float* ln_gamma = nullptr;
  const float* ln_beta = nullptr;
  float ln_eps = 0.0f;
  const void* ln_residual = nullptr;
  void* ln_out = nullptr;
  // One row with a LayerNorm: x is first x + ln_pending (pending_residual.cuh, k + 1 values), and
  // ln_finished receives that row in the activation dtype (block 0 writes it).
  const long long* ln_pending = nullptr;
  void* ln_finished = nullptr;
  // One row: zero_count values of `zero` are zeroed after the wait (a pending sum the kernel
  // before read, left zero for the one that next adds into it).
  long long* zero = nullptr;
  std::int64_t zero_count = 0;
  std::int64_t m = 0, n = 0, k = 0;
  Activation activation = Activation::None;
  // Let the next kernel launch before the wait for the previous one, not after
  // (wait_then_allow_dependents in dependent_launch.cuh).
  bool early_dependents = false;
};
constexpr std::int64_t kMaxGemvRows = 8;
bool gemv_eligible(DType act, std::int64_t m, std::int64_t k, const void* x, const void* w);
// Whether launch_gemv takes ln_pending, ln_finished and zero for these arguments: one row that
// gemv.cu's split-row kernel runs (not with EAQ_SPLIT_ROW_GEMV=0).
bool gemv_takes_pending(DType act, const GemvArgs& args);
void launch_gemv(DType act, const GemvArgs& args, cudaStream_t stream);

// y[m, n] = act(x[m, :] . w[n, :] + bias[n]) + residual[m, n] on tensor cores, for the tens to few
// hundred rows of a prefill or a batch-32 decode step: 64 x 64 tiles, and on Hopper K split over
// the blocks of a thread-block cluster (up to max_splits) until the grid covers the GPU. An opt-in
// alternative to cuBLASLt (EAQ_SPLIT_K_GEMM=1), slower on GPT-2's shapes so far (docs/results.md).
// F16/BF16 only; x [m, k], w [n, k]
// (rows past n are not read), y and residual [m, n] (row stride n; residual may alias y), bias
// [n] or null, all in dtype `act`. Needs k a multiple of 8 and 16-byte aligned x and w.
struct SplitKGemmArgs {
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  void* y = nullptr;
  std::int64_t m = 0, n = 0, k = 0;
  Activation activation = Activation::None;
  int max_splits = 8;
};
bool split_k_gemm_eligible(DType act, std::int64_t k, const void* x, const void* w);
// How many blocks share each tile's K (1: no split).
int split_k_gemm_splits(const SplitKGemmArgs& args);
void launch_split_k_gemm(DType act, const SplitKGemmArgs& args, cudaStream_t stream);

// A batch-1 decode step's LayerNorm, QKV projection and attention in one kernel (Hopper
// thread-block clusters, qkv_attention.cu): normed = LayerNorm(x) and qkv = normed W^T + bias as
// launch_gemv computes them, this step's k and v stored in the cache at *slot, then out = the
// attention of q over the cache's rows whose key_mask is 1 (the slot's row read from the new k
// and v). x [hidden], W [3 hidden, hidden] (q, k, v rows), bias [3 hidden] or null, cache
// [capacity, 2 hidden] (K in columns [0, hidden), V in [hidden, 2 hidden)), key_mask [capacity],
// out [hidden], all but the masks and LayerNorm parameters (f32) in dtype `act` (F16 or BF16).
// Heads of 64; hidden <= 768. The cache rows other than the slot, the mask and the slot must not
// come from the kernel just before (they load while it finishes).
//
// With 8-bit weights (the quantized precisions), W is I8 or E4M3 with per-row scales w_scales and
// q, k and v are what launch_quantized_gemv computes (the same bits): normed is quantized per
// token (or with static_inverse / static_scale) for Int8 and E4M3, not for Int8WeightOnly, and
// bias is F32 unless bias_act.
enum class WeightKind { Float, Int8, E4M3, Int8WeightOnly };
struct QkvAttentionArgs {
  const void* x = nullptr;
  const float* ln_gamma = nullptr;
  const float* ln_beta = nullptr;
  float ln_eps = 0.0f;
  const void* w = nullptr;
  const void* bias = nullptr;
  void* cache = nullptr;
  const std::int32_t* key_mask = nullptr;
  const std::int32_t* slot = nullptr;
  void* out = nullptr;
  std::int64_t hidden = 0, heads = 0, capacity = 0;
  float scale = 1.0f;
  WeightKind weights = WeightKind::Float;
  const float* w_scales = nullptr;
  bool bias_act = true;
  float static_inverse = 0.0f;
  float static_scale = 0.0f;
  // A pending residual (pending_residual.cuh): with `pending`, x is x + pending. `x_out` (when not
  // null) receives that x as T, and `pending_zero` (when not null, E + 1 values) is zeroed for the
  // MLP kernel after it.
  const long long* pending = nullptr;
  void* x_out = nullptr;
  long long* pending_zero = nullptr;
  // The attention projection folded in (float weights only, not with `pending`): with
  // `proj_pending`, each head's share of out W_p^T (plus b_p, once) is added into it (E + 1
  // values, holding a zero sum before), so that the row after the attention block is x +
  // proj_pending. proj_w [E, E] and proj_bias [E] (may be null) in T. `out` is still written.
  const void* proj_w = nullptr;
  const void* proj_bias = nullptr;
  long long* proj_pending = nullptr;
  bool early_dependents = false;  // as GemvArgs::early_dependents
  // Optional (EAQ_QKV_TIMELINE=1): the clock cycles of each phase of head 0's block 0 (thread 0),
  // summed over launches; kQkvTimelineSlots entries, the last counting launches (see
  // qkv_timeline_phase_name).
  unsigned long long* timeline = nullptr;
};
constexpr int kQkvTimelineSlots = 9;
const char* qkv_timeline_phase_name(int slot);
bool qkv_attention_eligible(DType act, const QkvAttentionArgs& args);
void launch_qkv_attention(DType act, const QkvAttentionArgs& args, cudaStream_t stream);

// Greedy decoding's LM head at batch 1 without every logit (bounded_argmax.cu, the method in
// src/backend/argmax_bounds.hpp): ln_out = LayerNorm(x) as launch_gemv's LayerNorm form stores
// it, then *out = argmax_i (ln_out . w_i) over the logits that launch_gemv would write (rounded to
// `act`, the first index on ties, NaN never), reading the int8 copy q of every row and the f16
// row only of the candidates. Two kernels; `state` is bounded_argmax_state_bytes() of device
// memory, zeroed once before the first launch (each launch leaves it zeroed). x, w, ln_out [k] /
// [n, k] in `act` (F16 or BF16), q [n, k] I8, scale_radius [n] (scale, radius) pairs, upper [n]
// scratch. Needs k a multiple of 8, k <= 768, 16-byte aligned x, w, ln_out, gamma and beta.
struct BoundedArgmaxArgs {
  const void* x = nullptr;
  const float* ln_gamma = nullptr;
  const float* ln_beta = nullptr;
  float ln_eps = 0.0f;
  void* ln_out = nullptr;
  const void* w = nullptr;
  const signed char* q = nullptr;
  const float2* scale_radius = nullptr;
  const float* quant_norm = nullptr;  // [n]; null: the int8 x f32 pass only
  float slack = 0.0f;
  float* upper = nullptr;
  void* state = nullptr;
  std::int32_t* out = nullptr;
  std::int64_t n = 0, k = 0;
  const long long* pending = nullptr;  // when not null, x is x + pending (pending_residual.cuh)
  bool early_dependents = false;       // both kernels; as GemvArgs::early_dependents
  // I32 values the select kernel's last block adds one to once the token is written (a decode
  // step's counters: the step's last op, folded in), or null.
  std::int32_t* increment = nullptr;
  std::int64_t increment_count = 0;
};
std::size_t bounded_argmax_state_bytes();
// Whether the kernels take this head and these pointers (x, w, ln_out, ln_gamma, ln_beta, n, k).
bool bounded_argmax_eligible(DType act, const BoundedArgmaxArgs& args);
void launch_bounded_argmax(DType act, const BoundedArgmaxArgs& args, cudaStream_t stream);

// A batch-1 decode step's feed-forward block in one kernel (mlp_pending.cu): h = act(LayerNorm(x)
// w_in^T + b_in) rounded to `act` as launch_gemv's LayerNorm form computes it, then every share of
// h w_out^T + b_out added into `pending` (I64 [hidden + 1], zeroed before; pending_residual.cuh),
// so that the row after the block is x + pending. x [hidden], w_in [inner, hidden], w_out
// [hidden, inner], biases (may be null) in `act` (F16 or BF16). Needs Hopper's clusters, hidden
// a multiple of 64 and at most 768, inner a multiple of 192, 16-byte aligned pointers.
struct MlpPendingArgs {
  const void* x = nullptr;
  const float* ln_gamma = nullptr;
  const float* ln_beta = nullptr;
  float ln_eps = 0.0f;
  const void* w_in = nullptr;
  const void* b_in = nullptr;
  const void* w_out = nullptr;
  const void* b_out = nullptr;
  Activation activation = Activation::None;
  long long* pending = nullptr;
  std::int64_t hidden = 0, inner = 0;
  bool early_dependents = false;  // as GemvArgs::early_dependents
};
// Whether the kernel takes this row and these layers (x, the weights and biases, hidden, inner);
// the launch checks the LayerNorm parameters and the sum (16-byte aligned, not null) itself.
bool mlp_pending_eligible(DType act, const MlpPendingArgs& args);
void launch_mlp_pending(DType act, const MlpPendingArgs& args, cudaStream_t stream);
// out[i] = x[i] + pending[i] rounded to `act` (F16 or BF16) for i < n (NaN where pending[n] != 0).
void launch_finish_pending(DType act, const void* x, const long long* pending, void* out,
                           std::int64_t n, cudaStream_t stream);
// pending[i] += y[i] in fixed point for i < n (pending_add: pending[n] counts what cannot be
// added); y in `act` (F16 or BF16).
void launch_add_to_pending(DType act, const void* y, long long* pending, std::int64_t n,
                           cudaStream_t stream);

// Elementwise conversion between F32, F16 and BF16.
void launch_convert(DType from, const void* src, DType to, void* dst, std::int64_t count,
                    cudaStream_t stream);

}  // namespace eaq::cuda
