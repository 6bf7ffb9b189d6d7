// What the kernels' launchers ask of the current CUDA device (host code; answers are cached).
#pragma once

namespace eaq::cuda {

// Streaming multiprocessors of the current device (of the first device asked about).
int multiprocessor_count();
// Whether the current device supports programmatic dependent launch (compute capability 9.0+),
// and EAQ_DEPENDENT_LAUNCH=0 does not turn it off (see dependent_launch.cuh).
bool dependent_launch_supported();
// Whether the float precisions' one-row kernels of a decode step (the GEMVs, the QKV + attention
// kernel, the one-kernel feed-forward block, the bounded LM head) let the next kernel launch
// before they wait for the previous one, not after (wait_then_allow_dependents in
// dependent_launch.cuh). On unless EAQ_EARLY_LAUNCH=0: on an H200 it shortened the fp16 step from
// 212 to 203 us. The 8-bit precisions' kernels (quantized_gemv.cu, qkv_attention.cu with 8-bit
// weights) keep the old order: there it made int8 3% and fp8 7% slower (docs/results.md, the
// seventeenth session). Read at every call, so tests compare both.
bool early_dependent_launch();
// Whether the current device runs thread-block clusters (compute capability 9.0+).
bool thread_block_clusters_supported();
// Whether the current device launches cooperative kernels (all blocks resident at once).
bool cooperative_launch_supported();

}  // namespace eaq::cuda
