// A CUDA injection library that records every kernel's GPU start and end (graph nodes included)
// with CUPTI's activity API and writes them as CSV when the process exits: a timeline for GPUs
// machines without Nsight Systems. Used by bench/gpu/run.sh's trace-gpt2 stage:
//
//   CUDA_INJECTION64_PATH=libeaq_kernel_trace.so EAQ_KERNEL_TRACE=trace.csv eaq measure ...
//   python3 bench/gpu/graph_timeline.py trace.csv
//
// Columns: start_ns,end_ns,correlation_id,graph_id,graph_node_id,grid_x,block_x,name. Kernels of
// one graph launch share the launch call's correlation id.
#include <cupti.h>
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace {

constexpr std::size_t kBufferBytes = 8u << 20;
std::FILE* g_out = nullptr;
std::mutex g_mutex;

void CUPTIAPI buffer_requested(std::uint8_t** buffer, std::size_t* size, std::size_t* max_records) {
  *buffer = static_cast<std::uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = kBufferBytes;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, std::uint32_t, std::uint8_t* buffer, std::size_t,
                               std::size_t valid_bytes) {
  CUpti_Activity* record = nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  while (cuptiActivityGetNextRecord(buffer, valid_bytes, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || g_out == nullptr) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    int demangled_ok = -1;
    char* demangled =
        k->name ? abi::__cxa_demangle(k->name, nullptr, nullptr, &demangled_ok) : nullptr;
    const char* name = demangled_ok == 0 ? demangled : (k->name ? k->name : "?");
    // Quotes are doubled for CSV.
    std::fprintf(g_out, "%llu,%llu,%u,%u,%llu,%d,%d,\"", static_cast<unsigned long long>(k->start),
                 static_cast<unsigned long long>(k->end), k->correlationId, k->graphId,
                 static_cast<unsigned long long>(k->graphNodeId), k->gridX, k->blockX);
    for (const char* c = name; *c; ++c) {
      if (*c == '"') std::fputc('"', g_out);
      std::fputc(*c, g_out);
    }
    std::fputs("\"\n", g_out);
    std::free(demangled);
  }
  std::free(buffer);
}

void flush_at_exit() {
  cuptiActivityFlushAll(1);
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_out != nullptr) std::fclose(g_out);
  g_out = nullptr;
}

}  // namespace

// Called by the CUDA driver at initialization when CUDA_INJECTION64_PATH names this library.
extern "C" int InitializeInjection(void) {
  const char* path = std::getenv("EAQ_KERNEL_TRACE");
  g_out = std::fopen(path != nullptr ? path : "kernel_trace.csv", "w");
  if (g_out == nullptr) {
    std::fprintf(stderr, "kernel_trace: cannot write %s\n", path ? path : "kernel_trace.csv");
    return 0;
  }
  std::fputs("start_ns,end_ns,correlation_id,graph_id,graph_node_id,grid_x,block_x,name\n", g_out);
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "kernel_trace: CUPTI refused the kernel activity\n");
    return 0;
  }
  std::atexit(flush_at_exit);
  return 1;
}
