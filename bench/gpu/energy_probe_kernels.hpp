// Launchers of eaq_energy_probe's synthetic kernels (energy_probe_kernels.cu). Every kernel's
// block b writes the multiprocessor it ran on to sm_of_block[b] (b < kMaxBlocks).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace eaq::probe {

inline constexpr int kMaxBlocks = 4096;

struct Grid {
  int blocks = 1;
  int threads = 256;
  int shared_bytes = 0;  // dynamic shared memory: more than half an SM's keeps blocks one per SM
};

// Lets the kernels launched with Grid::shared_bytes > 0 (read_stream's 8-load form, spin) take
// up to `bytes` of dynamic shared memory; once, before any launch.
cudaError_t allow_shared_bytes(int bytes);

void launch_fill_random(void* data, std::size_t bytes, int blocks, cudaStream_t stream);
// Reads `bytes` with 16-byte streaming loads (4 in flight per thread; 8 when shared_bytes > 0).
void launch_read_stream(const void* data, std::size_t bytes, Grid grid, unsigned* sink,
                        unsigned* sm_of_block, cudaStream_t stream);
// Reads `bytes` `repeats` times with loads that keep them in L2.
void launch_read_resident(const void* data, std::size_t bytes, int repeats, Grid grid,
                          unsigned* sink, unsigned* sm_of_block, cudaStream_t stream);
// Reads `bytes` as f16 weights and multiplies them by an x in registers, summing in f32 on the CUDA
// cores (convert + FMA) or on the tensor cores (mma.sync): a GEMV's arithmetic at a stream's pace.
void launch_read_dot(const void* data, std::size_t bytes, bool tensor_cores, Grid grid,
                     unsigned* sink, unsigned* sm_of_block, cudaStream_t stream);
// The bulk-copy engine (cp.async.bulk) reads `bytes` `repeats` times into shared memory, one
// block of 256 threads per SM for `blocks` blocks; with `consume` the threads also read each
// stage from shared memory. Hopper only; call allow_bulk_stages() once first.
cudaError_t allow_bulk_stages();
void launch_read_bulk(const void* data, std::size_t bytes, int repeats, bool consume, int blocks,
                      unsigned* sink, unsigned* sm_of_block, cudaStream_t stream);
void launch_spin(long long cycles, Grid grid, unsigned* sm_of_block, cudaStream_t stream);
void launch_fma_loop(int iterations, Grid grid, float* sink, unsigned* sm_of_block,
                     cudaStream_t stream);
void launch_sleep_resident(unsigned long long nanoseconds, Grid grid, unsigned* sm_of_block,
                           cudaStream_t stream);
void launch_empty(Grid grid, cudaStream_t stream);

}  // namespace eaq::probe
