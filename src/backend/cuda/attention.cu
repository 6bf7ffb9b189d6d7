// Scaled dot-product attention; reference: cpu_kernels.cpp attention_f32.
//
// Two kernels:
// - simple: one block per (query, head, batch), CUDA cores, any dtype and head size. Used for
//   f32 activations, decode steps (few queries) and odd head sizes.
// - tensor core: one block per (16 x warps queries, head, batch). S = Q K^T with WMMA into shared
//   memory, an exact softmax per row, then O = P V with WMMA. Sequences here are short (<= 1024),
//   so the whole score tile fits in shared memory and no online rescaling is needed.
#include <mma.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "backend/cuda/cuda_types.cuh"
#include "backend/cuda/kernels.hpp"

namespace eaq::cuda {
namespace {

// ------------------------------------------------------------------------------------------------
// Simple kernel.

template <class T>
__global__ void attention_simple_kernel(AttentionArgs a) {
  extern __shared__ float shared[];
  float* q = shared;                    // [head_dim]
  float* scores = shared + a.head_dim;  // [kv_len]
  __shared__ float reduce[32];

  const std::int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const T* qi =
      static_cast<const T*>(a.q) + b * a.q_batch_stride + i * a.q_row_stride + h * a.head_dim;
  const T* kb = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * a.head_dim;
  const T* vb = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * a.head_dim;
  T* oi = static_cast<T*>(a.out) + b * a.out_batch_stride + i * a.out_row_stride + h * a.head_dim;

  for (std::int64_t d = threadIdx.x; d < a.head_dim; d += blockDim.x) q[d] = to_f32(qi[d]);
  __syncthreads();

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  float local_max = -FLT_MAX;
  for (std::int64_t j = threadIdx.x; j < a.kv_len; j += blockDim.x) {
    const bool masked = (a.key_mask && a.key_mask[b * a.mask_batch_stride + j] == 0) ||
                        (a.causal && j > a.q_position_offset + i);
    float s = -INFINITY;
    if (!masked) {
      const T* kj = kb + j * a.kv_row_stride;
      float dot = 0.0f;
      for (std::int64_t d = 0; d < a.head_dim; ++d) dot += q[d] * to_f32(kj[d]);
      s = dot * a.scale;
      local_max = fmaxf(local_max, s);
    }
    scores[j] = s;
  }
  // Block-wide max.
  local_max = warp_max(local_max);
  if (lane == 0) reduce[warp] = local_max;
  __syncthreads();
  float row_max = -FLT_MAX;
  for (int w = 0; w < warps; ++w) row_max = fmaxf(row_max, reduce[w]);
  __syncthreads();

  float local_sum = 0.0f;
  for (std::int64_t j = threadIdx.x; j < a.kv_len; j += blockDim.x) {
    const float p = scores[j] == -INFINITY ? 0.0f : __expf(scores[j] - row_max);
    scores[j] = p;
    local_sum += p;
  }
  local_sum = warp_sum(local_sum);
  if (lane == 0) reduce[warp] = local_sum;
  __syncthreads();
  float denom = 0.0f;
  for (int w = 0; w < warps; ++w) denom += reduce[w];
  // Every key masked (a fully padded row): zeros rather than NaN, as the CPU reference.
  const float inv = denom > 0.0f ? 1.0f / denom : 0.0f;

  for (std::int64_t d = threadIdx.x; d < a.head_dim; d += blockDim.x) {
    float acc = 0.0f;
    for (std::int64_t j = 0; j < a.kv_len; ++j) {
      const float p = scores[j];
      if (p != 0.0f) acc += p * to_f32(vb[j * a.kv_row_stride + d]);
    }
    oi[d] = from_f32<T>(acc * inv);
  }
}

// ------------------------------------------------------------------------------------------------
// Tensor-core kernel.

namespace wmma = nvcuda::wmma;

constexpr int kKeyBlock = 64;  // keys (and values) staged in shared memory at a time

struct TileSizes {
  int query_tile;  // queries per block: 16 per warp
  int kv_padded;   // kv_len rounded up to kKeyBlock
  std::size_t shared_bytes;
};

template <class T>
std::size_t tile_shared_bytes(int query_tile, int kv_padded, int head_dim) {
  const std::size_t q = static_cast<std::size_t>(query_tile) * head_dim * sizeof(T);
  const std::size_t kv = static_cast<std::size_t>(kKeyBlock) * head_dim * sizeof(T);
  // Scores as f32 (later reused to stage the f32 output tile), probabilities as T.
  const std::size_t s =
      static_cast<std::size_t>(query_tile) * std::max(kv_padded, head_dim) * sizeof(float);
  const std::size_t p = static_cast<std::size_t>(query_tile) * kv_padded * sizeof(T);
  return q + kv + s + p;
}

constexpr std::size_t kSharedBudget = 200 * 1024;  // H100/A100 allow up to 227 KB per block

template <class T>
TileSizes choose_tiles(const AttentionArgs& a) {
  const int kv_padded = static_cast<int>((a.kv_len + kKeyBlock - 1) / kKeyBlock * kKeyBlock);
  for (int query_tile : {64, 32, 16}) {
    if (query_tile > 16 && a.q_len <= query_tile / 2) continue;  // mostly idle warps
    const std::size_t bytes =
        tile_shared_bytes<T>(query_tile, kv_padded, static_cast<int>(a.head_dim));
    if (bytes <= kSharedBudget) return {query_tile, kv_padded, bytes};
  }
  return {0, kv_padded, 0};
}

// Copies rows x head_dim elements (16-byte aligned rows) from global to shared memory, zero
// filling rows at or past `valid_rows`.
template <class T, int kHeadDim>
__device__ void load_tile(T* dst, const T* src, std::int64_t src_row_stride, int rows,
                          std::int64_t valid_rows) {
  constexpr int kVecPerRow = kHeadDim * static_cast<int>(sizeof(T)) / 16;
  for (int idx = threadIdx.x; idx < rows * kVecPerRow; idx += blockDim.x) {
    const int r = idx / kVecPerRow, c = idx % kVecPerRow;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (r < valid_rows) value = reinterpret_cast<const uint4*>(src + r * src_row_stride)[c];
    reinterpret_cast<uint4*>(dst + r * kHeadDim)[c] = value;
  }
}

template <class T, int kHeadDim>
__global__ void attention_tensor_core_kernel(AttentionArgs a, int query_tile, int kv_padded) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* q_tile = reinterpret_cast<T*>(smem);       // [query_tile][kHeadDim]
  T* kv_tile = q_tile + query_tile * kHeadDim;  // [kKeyBlock][kHeadDim]
  float* scores = reinterpret_cast<float*>(kv_tile + kKeyBlock * kHeadDim);  // [query_tile][ld_s]
  const int ld_s = std::max(kv_padded, kHeadDim);
  T* probs = reinterpret_cast<T*>(scores + query_tile * ld_s);  // [query_tile][kv_padded]

  const std::int64_t i0 = static_cast<std::int64_t>(blockIdx.x) * query_tile;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* q_base =
      static_cast<const T*>(a.q) + b * a.q_batch_stride + i0 * a.q_row_stride + h * kHeadDim;
  const T* k_base = static_cast<const T*>(a.k) + b * a.kv_batch_stride + h * kHeadDim;
  const T* v_base = static_cast<const T*>(a.v) + b * a.kv_batch_stride + h * kHeadDim;

  load_tile<T, kHeadDim>(q_tile, q_base, a.q_row_stride, query_tile, a.q_len - i0);

  // S = Q K^T, one key block at a time; each warp owns 16 query rows.
  for (int k0 = 0; k0 < kv_padded; k0 += kKeyBlock) {
    __syncthreads();  // the previous block's K is no longer read
    load_tile<T, kHeadDim>(kv_tile, k_base + k0 * a.kv_row_stride, a.kv_row_stride, kKeyBlock,
                           a.kv_len - k0);
    __syncthreads();
    for (int n = 0; n < kKeyBlock / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < kHeadDim / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kb;
        wmma::load_matrix_sync(qa, q_tile + warp * 16 * kHeadDim + kk * 16, kHeadDim);
        // K stored [key][d] row-major is K^T in column-major order.
        wmma::load_matrix_sync(kb, kv_tile + n * 16 * kHeadDim + kk * 16, kHeadDim);
        wmma::mma_sync(acc, qa, kb, acc);
      }
      wmma::store_matrix_sync(scores + warp * 16 * ld_s + k0 + n * 16, acc, ld_s,
                              wmma::mem_row_major);
    }
  }
  __syncwarp();

  // Exact softmax of each of this warp's rows; probabilities normalized before P V.
  for (int r = 0; r < 16; ++r) {
    const int row = warp * 16 + r;
    const std::int64_t i = i0 + row;
    float* s_row = scores + row * ld_s;
    T* p_row = probs + row * kv_padded;
    float row_max = -FLT_MAX;
    for (int j = lane; j < kv_padded; j += 32) {
      const bool masked = j >= a.kv_len || i >= a.q_len ||
                          (a.key_mask && a.key_mask[b * a.mask_batch_stride + j] == 0) ||
                          (a.causal && j > a.q_position_offset + i);
      const float s = masked ? -INFINITY : s_row[j] * a.scale;
      s_row[j] = s;
      row_max = fmaxf(row_max, s);
    }
    row_max = warp_max(row_max);
    float sum = 0.0f;
    for (int j = lane; j < kv_padded; j += 32) {
      const float p = s_row[j] == -INFINITY ? 0.0f : __expf(s_row[j] - row_max);
      s_row[j] = p;
      sum += p;
    }
    sum = warp_sum(sum);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int j = lane; j < kv_padded; j += 32) p_row[j] = from_f32<T>(s_row[j] * inv);
  }

  // O = P V, accumulated in registers across value blocks.
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> out_acc[kHeadDim / 16];
#pragma unroll
  for (int d = 0; d < kHeadDim / 16; ++d) wmma::fill_fragment(out_acc[d], 0.0f);
  for (int k0 = 0; k0 < kv_padded; k0 += kKeyBlock) {
    __syncthreads();
    load_tile<T, kHeadDim>(kv_tile, v_base + k0 * a.kv_row_stride, a.kv_row_stride, kKeyBlock,
                           a.kv_len - k0);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kKeyBlock / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa;
      wmma::load_matrix_sync(pa, probs + warp * 16 * kv_padded + k0 + kk * 16, kv_padded);
#pragma unroll
      for (int d = 0; d < kHeadDim / 16; ++d) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vb;
        wmma::load_matrix_sync(vb, kv_tile + kk * 16 * kHeadDim + d * 16, kHeadDim);
        wmma::mma_sync(out_acc[d], pa, vb, out_acc[d]);
      }
    }
  }

  // Stage the f32 output through this warp's rows of the score buffer, then convert and store.
  float* staged = scores + warp * 16 * ld_s;
#pragma unroll
  for (int d = 0; d < kHeadDim / 16; ++d) {
    wmma::store_matrix_sync(staged + d * 16, out_acc[d], ld_s, wmma::mem_row_major);
  }
  __syncwarp();
  T* out_base = static_cast<T*>(a.out) + b * a.out_batch_stride + h * kHeadDim;
  for (int idx = lane; idx < 16 * kHeadDim; idx += 32) {
    const int r = idx / kHeadDim, c = idx % kHeadDim;
    const std::int64_t i = i0 + warp * 16 + r;
    if (i < a.q_len) out_base[i * a.out_row_stride + c] = from_f32<T>(staged[r * ld_s + c]);
  }
}

template <class T, int kHeadDim>
void launch_tensor_core(const AttentionArgs& a, cudaStream_t stream) {
  const TileSizes tiles = choose_tiles<T>(a);
  // Raise the shared-memory limit once per instantiation (host-only, safe outside and inside
  // graph capture).
  static const cudaError_t configured = cudaFuncSetAttribute(
      attention_tensor_core_kernel<T, kHeadDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(kSharedBudget));
  (void)configured;
  const dim3 grid(static_cast<unsigned>((a.q_len + tiles.query_tile - 1) / tiles.query_tile),
                  static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
  attention_tensor_core_kernel<T, kHeadDim>
      <<<grid, tiles.query_tile * 2, tiles.shared_bytes, stream>>>(a, tiles.query_tile,
                                                                   tiles.kv_padded);
}

bool aligned16(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

}  // namespace

bool attention_tensor_core_eligible(DType act, const AttentionArgs& a) {
  if (act != DType::F16 && act != DType::BF16) return false;
  if (a.head_dim != 32 && a.head_dim != 64 && a.head_dim != 128) return false;
  if (a.q_len < 16) return false;  // decode steps: the simple kernel wastes less
  const std::int64_t elem = 2;
  const bool strides_ok = (a.q_row_stride * elem) % 16 == 0 && (a.kv_row_stride * elem) % 16 == 0 &&
                          (a.q_batch_stride * elem) % 16 == 0 &&
                          (a.kv_batch_stride * elem) % 16 == 0;
  if (!strides_ok || !aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v)) return false;
  return choose_tiles<__half>(a).query_tile > 0;
}

void launch_attention_simple(DType act, const AttentionArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.q_len == 0) return;
  const dim3 grid(static_cast<unsigned>(a.q_len), static_cast<unsigned>(a.heads),
                  static_cast<unsigned>(a.batch));
  const std::size_t shared = static_cast<std::size_t>(a.head_dim + a.kv_len) * sizeof(float);
  EAQ_DISPATCH_FLOAT(act, attention_simple_kernel<T><<<grid, 128, shared, stream>>>(a));
}

void launch_attention(DType act, const AttentionArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.q_len == 0) return;
  if (!attention_tensor_core_eligible(act, a)) {
    launch_attention_simple(act, a, stream);
    return;
  }
  const auto dispatch = [&](auto tag) {
    using T = decltype(tag);
    switch (a.head_dim) {
      case 32:
        launch_tensor_core<T, 32>(a, stream);
        break;
      case 64:
        launch_tensor_core<T, 64>(a, stream);
        break;
      case 128:
        launch_tensor_core<T, 128>(a, stream);
        break;
      default:
        break;
    }
  };
  if (act == DType::F16)
    dispatch(__half{});
  else
    dispatch(__nv_bfloat16{});
}

}  // namespace eaq::cuda
