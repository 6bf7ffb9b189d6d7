// Programmatic dependent launch (Hopper, compute capability 9.0): a kernel launched with
// launch_dependent() may start while the kernel before it in the stream is still running. It
// must call wait_for_previous_kernel() before it reads anything that kernel wrote or writes
// anything that kernel reads; what comes before (loading weights) overlaps the previous kernel's
// tail and the launch latency. A decode step is ~65 small dependent kernels, so this matters.
// Kernels call allow_dependent_launch() to let the next one start early. On older GPUs the
// launch attribute is left off and both calls compile to nothing; EAQ_DEPENDENT_LAUNCH=0 in the
// environment leaves it off everywhere (to measure what it buys).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device_query.hpp"

namespace eaq::cuda {

__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// wait_for_previous_kernel() with the next kernel's launch allowed after the wait (the usual
// order) or, with `early`, before it: then the next kernel may start while this one still waits,
// so it has two kernels' runs to load its weights in, not one. Early is safe only where what the
// next kernel reads before its own wait was written before this one's predecessor started; in a
// decode step that holds because start_decode_step_kernel, the step's first, always allows its
// successor after its wait (the slot, key mask and older cache rows that qkv_attention.cu and
// attention.cu read early are final by then), and every other read before a wait is of weights.
__device__ __forceinline__ void wait_then_allow_dependents(bool early) {
  if (early) allow_dependent_launch();
  wait_for_previous_kernel();
  if (!early) allow_dependent_launch();
}

// kernel<<<grid, block, shared, stream>>>(args...) in thread-block clusters of `cluster_x` blocks
// along x (Hopper; 0: no clusters), allowed to overlap the previous kernel when the device
// supports it.
template <class... KernelArgs, class... Args>
void launch_dependent_clusters(void (*kernel)(KernelArgs...), dim3 grid, dim3 block,
                               unsigned cluster_x, std::size_t shared, cudaStream_t stream,
                               Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  cudaLaunchAttribute attributes[2] = {};
  unsigned count = 0;
  if (cluster_x > 0) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count].val.clusterDim.x = cluster_x;
    attributes[count].val.clusterDim.y = 1;
    attributes[count].val.clusterDim.z = 1;
    ++count;
  }
  if (dependent_launch_supported()) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count].val.programmaticStreamSerializationAllowed = 1;
    ++count;
  }
  config.attrs = attributes;
  config.numAttrs = count;
  EAQ_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<KernelArgs>(args)...));
}

// The same without clusters.
template <class... KernelArgs, class... Args>
void launch_dependent(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, std::size_t shared,
                      cudaStream_t stream, Args&&... args) {
  launch_dependent_clusters(kernel, grid, block, 0, shared, stream, std::forward<Args>(args)...);
}

}  // namespace eaq::cuda
