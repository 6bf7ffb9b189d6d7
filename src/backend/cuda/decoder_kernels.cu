// Decoding kernels: positions from masks, KV-cache writes at a device-held slot, step counters,
// greedy argmax and per-token cross-entropy. References: cpu/cpu_decoder_kernels.cpp.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "backend/cuda/argmax_device.cuh"
#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/decoder_kernels.hpp"
#include "backend/cuda/dependent_launch.cuh"

namespace eaq::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t count, int threads) {
  return static_cast<unsigned>((count + threads - 1) / threads);
}

// One warp per row: a ballot per 32 columns gives each column the count of real tokens before it
// (a thread per row walking the row took ~7 us for 128 tokens). The same pass writes the row's
// key mask and tokens; this one kernel replaces the five copies and writes a prefill used to
// start with.
__global__ void start_prompt_kernel(PromptState s) {
  const std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const unsigned lane = threadIdx.x % 32;
  if (b >= s.batch) return;  // (the whole warp)
  std::int32_t ones = 0;
  for (std::int64_t i0 = 0; i0 < s.len; i0 += 32) {
    const std::int64_t i = i0 + lane;
    const std::int32_t m = i < s.len ? s.mask[b * s.len + i] : 0;
    const unsigned real_lanes = __ballot_sync(0xffffffffu, m != 0);
    const std::int32_t before = ones + __popc(real_lanes & ((1u << lane) - 1u));
    if (i < s.len) {
      s.position_ids[b * s.len + i] = m != 0 ? before : 1;
      s.tokens[b * s.capacity + i] = s.ids[b * s.len + i];
    }
    ones += __popc(real_lanes);
  }
  for (std::int64_t j = lane; j < s.capacity; j += 32) {
    s.key_mask[b * s.capacity + j] = j < s.len ? s.mask[b * s.len + j] : 0;
  }
  if (lane == 0) {
    s.counters[1 + b] = ones;
    if (b == 0) s.counters[0] = static_cast<std::int32_t>(s.len);
  }
}

// grid (rows, batch): one block copies one row.
template <class E>
__global__ void write_cache_kernel(CacheWrite a) {
  const std::int64_t i = blockIdx.x, b = blockIdx.y;
  const std::int64_t slot = (a.start_slot ? *a.start_slot : 0) + i;
  if (slot < 0 || slot >= a.capacity) return;
  const E* src = static_cast<const E*>(a.src) + b * a.src_batch_stride + i * a.src_row_stride;
  E* dst = static_cast<E*>(a.cache) + b * a.cache_batch_stride + slot * a.cache_row_stride;
  for (std::int64_t c = threadIdx.x; c < a.cols; c += blockDim.x) dst[c] = src[c];
}

__global__ void mark_cache_slot_kernel(const std::int32_t* slot, std::int32_t* key_mask,
                                       std::int64_t batch, std::int64_t capacity) {
  const std::int64_t b = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  const std::int64_t s = *slot;
  if (b < batch && s >= 0 && s < capacity) key_mask[b * capacity + s] = 1;
}

__global__ void increment_kernel(std::int32_t* values, std::int64_t count) {
  wait_for_previous_kernel();  // the step's kernels read the counters
  allow_dependent_launch();
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i < count) values[i] += 1;
}

// Waits until the host opens the gate (writes a nonzero word), then closes it again for the next
// step. The word is host memory, so each read crosses PCIe: one thread polls.
__device__ void pass_step_gate(int* gate) {
  int open = 0;
  do {
    asm volatile("ld.relaxed.sys.global.b32 %0, [%1];" : "=r"(open) : "l"(gate) : "memory");
  } while (open == 0);
  asm volatile("st.relaxed.sys.global.b32 [%0], %1;" ::"l"(gate), "r"(0) : "memory");
}

__global__ void step_gate_kernel(int* gate) {
  wait_for_previous_kernel();
  allow_dependent_launch();
  if (threadIdx.x == 0) pass_step_gate(gate);
}

// mark_cache_slot_kernel, write_cache_kernel (one I32 a row) and embed_kernel (word + position,
// the same sum) for row blockIdx.x: three launches in one, and this one may start early.
template <class T>
__global__ void start_decode_step_kernel(DecodeStartArgs a) {
  wait_for_previous_kernel();  // the ids and counters come from the step before
  allow_dependent_launch();
  const std::int64_t b = blockIdx.x;
  const std::int32_t id = a.ids[b];
  if (threadIdx.x == 0) {
    const std::int64_t s = *a.slot;
    if (s >= 0 && s < a.capacity) {
      a.key_mask[b * a.capacity + s] = 1;
      a.tokens[b * a.capacity + s] = id;
    }
  }
  const T* w = static_cast<const T*>(a.word_table) + static_cast<std::int64_t>(id) * a.width;
  const T* p =
      static_cast<const T*>(a.position_table) + static_cast<std::int64_t>(a.positions[b]) * a.width;
  T* out = static_cast<T*>(a.hidden) + b * a.width;
  for (std::int64_t c = threadIdx.x; c < a.width; c += blockDim.x) {
    float v = to_f32(w[c]);
    v += to_f32(p[c]);
    out[c] = from_f32<T>(v);
  }
  // Everything above reads the finished step before, so it may run before the gate opens; only
  // the kernels after this one wait for it.
  if (a.gate != nullptr && blockIdx.x == 0 && threadIdx.x == 0) pass_step_gate(a.gate);
}

// grid (chunks, rows): block c finds the best of columns [c * chunk, (c + 1) * chunk) of its row.
// With one chunk it writes the answer; with several (at most one per thread), it leaves (value,
// index) in `partials` and the last block of the row to arrive picks among them (and puts the
// counter back to zero).
template <class T>
__global__ void argmax_rows_kernel(const T* x, std::int32_t* out, std::int64_t cols,
                                   std::int64_t chunk, float* partials, unsigned* counters) {
  __shared__ bool last;
  wait_for_previous_kernel();  // the logits come from the kernel before
  allow_dependent_launch();
  const std::int64_t row = blockIdx.y;
  const T* row_x = x + row * cols;
  const std::int64_t begin = blockIdx.x * chunk;
  const std::int64_t end = begin + chunk < cols ? begin + chunk : cols;
  float value = -INFINITY;
  int index = static_cast<int>(cols);  // loses every comparison until a real column is seen
  for (std::int64_t c = begin + threadIdx.x; c < end; c += blockDim.x) {
    keep_better(value, index, to_f32(row_x[c]), static_cast<int>(c));
  }
  block_keep_best(value, index);
  if (gridDim.x > 1) {
    float* row_partials = partials + 2 * row * gridDim.x;
    if (threadIdx.x == 0) {
      row_partials[2 * blockIdx.x] = value;
      row_partials[2 * blockIdx.x + 1] = __int_as_float(index);
      __threadfence();  // the partial is visible before the arrival is counted
      last = atomicAdd(&counters[row], 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    value = -INFINITY;
    index = static_cast<int>(cols);
    if (threadIdx.x < gridDim.x) {
      value = __ldcg(row_partials + 2 * threadIdx.x);
      index = __float_as_int(__ldcg(row_partials + 2 * threadIdx.x + 1));
    }
    block_keep_best(value, index);
    if (threadIdx.x == 0) counters[row] = 0;
  }
  // A row of NaN or -inf only: column 0, as the CPU reference.
  if (threadIdx.x == 0) out[row] = index < cols ? index : 0;
}

constexpr std::int64_t kArgmaxChunk = 1024;  // columns per block (at least) when a row is split
constexpr int kArgmaxThreads = 256;          // and at most this many blocks per row

std::int64_t argmax_chunk(std::int64_t cols) {
  const std::int64_t even = (cols + kArgmaxThreads - 1) / kArgmaxThreads;
  return even > kArgmaxChunk ? even : kArgmaxChunk;
}

__device__ float block_reduce_max(float v, float* scratch) {
  v = warp_max(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float result = -INFINITY;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) result = fmaxf(result, scratch[w]);
  return result;
}

__device__ float block_reduce_sum(float v, float* scratch) {
  v = warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float result = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) result += scratch[w];
  return result;
}

// One block per row: logsumexp in f32 with the max subtracted, minus the target's logit.
template <class T>
__global__ void token_nll_kernel(const T* logits, const std::int32_t* targets, float* nll,
                                 std::int64_t vocab) {
  __shared__ float scratch[32];
  const T* row = logits + blockIdx.x * vocab;
  float local_max = -INFINITY;
  for (std::int64_t c = threadIdx.x; c < vocab; c += blockDim.x)
    local_max = fmaxf(local_max, to_f32(row[c]));
  const float row_max = block_reduce_max(local_max, scratch);
  float local_sum = 0.0f;
  for (std::int64_t c = threadIdx.x; c < vocab; c += blockDim.x)
    local_sum += expf(to_f32(row[c]) - row_max);
  const float sum = block_reduce_sum(local_sum, scratch);
  if (threadIdx.x == 0) {
    const std::int32_t target = targets[blockIdx.x];
    nll[blockIdx.x] =
        target >= 0 && target < vocab ? row_max + logf(sum) - to_f32(row[target]) : NAN;
  }
}

}  // namespace

void launch_start_prompt(const PromptState& state, cudaStream_t stream) {
  if (state.batch == 0) return;
  start_prompt_kernel<<<blocks_for(state.batch, 4), 128, 0, stream>>>(state);
}

void launch_write_cache(const CacheWrite& args, cudaStream_t stream) {
  if (args.batch == 0 || args.rows == 0 || args.cols == 0) return;
  const dim3 grid(static_cast<unsigned>(args.rows), static_cast<unsigned>(args.batch));
  const int threads = args.cols >= 256 ? 256 : 64;
  switch (dtype_size(args.dtype)) {
    case 1:
      write_cache_kernel<std::uint8_t><<<grid, threads, 0, stream>>>(args);
      break;
    case 2:
      write_cache_kernel<std::uint16_t><<<grid, threads, 0, stream>>>(args);
      break;
    case 4:
      write_cache_kernel<std::uint32_t><<<grid, threads, 0, stream>>>(args);
      break;
    case 8:
      write_cache_kernel<std::uint64_t><<<grid, threads, 0, stream>>>(args);
      break;
    default:
      break;
  }
}

void launch_mark_cache_slot(const std::int32_t* slot, std::int32_t* key_mask, std::int64_t batch,
                            std::int64_t capacity, cudaStream_t stream) {
  if (batch == 0) return;
  mark_cache_slot_kernel<<<blocks_for(batch, 128), 128, 0, stream>>>(slot, key_mask, batch,
                                                                     capacity);
}

void launch_increment(std::int32_t* values, std::int64_t count, bool dependent,
                      cudaStream_t stream) {
  if (count == 0) return;
  if (dependent) {
    launch_dependent(increment_kernel, dim3(blocks_for(count, 128)), dim3(128), 0, stream, values,
                     count);
  } else {
    increment_kernel<<<blocks_for(count, 128), 128, 0, stream>>>(values, count);
  }
}

void launch_start_decode_step(DType act, const DecodeStartArgs& args, cudaStream_t stream) {
  if (args.batch == 0) return;
  const int threads = args.width >= 256 ? 256 : 128;  // as launch_embed
  EAQ_DISPATCH_FLOAT(
      act, launch_dependent(start_decode_step_kernel<T>, dim3(static_cast<unsigned>(args.batch)),
                            dim3(threads), 0, stream, args));
}

void launch_step_gate(int* gate, cudaStream_t stream) {
  launch_dependent(step_gate_kernel, dim3(1), dim3(32), 0, stream, gate);
}

SplitNeed argmax_split_need(std::int64_t rows, std::int64_t cols) {
  const std::int64_t chunks = (cols + argmax_chunk(cols) - 1) / argmax_chunk(cols);
  if (chunks <= 1) return {};
  return {2 * rows * chunks, rows};
}

void launch_argmax_rows(DType act, const void* x, std::int32_t* out, std::int64_t rows,
                        std::int64_t cols, const SplitScratch& scratch, cudaStream_t stream) {
  if (rows == 0) return;
  const SplitNeed need = argmax_split_need(rows, cols);
  const bool split = need.counters > 0 && need.partial_floats <= scratch.partial_floats &&
                     need.counters <= scratch.counter_count;
  const std::int64_t chunk = split ? argmax_chunk(cols) : std::max<std::int64_t>(cols, 1);
  const dim3 grid(static_cast<unsigned>(std::max<std::int64_t>((cols + chunk - 1) / chunk, 1)),
                  static_cast<unsigned>(rows));
  // Unsplit, a block reads a whole vocabulary row (50k logits): 1024 threads then.
  const int threads = split ? kArgmaxThreads : 1024;
  EAQ_DISPATCH_FLOAT(act, launch_dependent(argmax_rows_kernel<T>, grid, dim3(threads), 0, stream,
                                           static_cast<const T*>(x), out, cols, chunk,
                                           scratch.partials, scratch.counters));
}

void launch_token_nll(DType act, const void* logits, const std::int32_t* targets, float* nll,
                      std::int64_t rows, std::int64_t vocab, cudaStream_t stream) {
  if (rows == 0) return;
  EAQ_DISPATCH_FLOAT(act, token_nll_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
                              static_cast<const T*>(logits), targets, nll, vocab));
}

}  // namespace eaq::cuda
