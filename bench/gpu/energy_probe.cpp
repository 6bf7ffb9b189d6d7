// Where a GPU's energy goes: synthetic kernels, each run for a few seconds between two reads of
// the NVML energy counter, with the idle power measured before and after. It answers what the
// GPT-2 decode step's energy per token is made of:
//
//   - reading N bytes from HBM (the weights), on all multiprocessors or on fewer;
//   - a GEMV's arithmetic on the bytes read, on the CUDA cores or on the tensor cores;
//   - reading the same bytes from L2 instead of HBM, and with an L2 persisting window over part of
//     them (what stays in L2 from one pass to the next);
//   - reading them by bulk copies (TMA) into shared memory instead of by loads into registers;
//   - multiprocessors that are busy without memory traffic (a clock spin, an FMA loop) or resident
//     and asleep (as blocks waiting in griddepcontrol.wait are);
//   - kernel launches themselves, and one pass over the weights split into ~50 kernels as a
//     decode step splits it.
//
//   eaq_energy_probe [--seconds S] [--only NAME,NAME,...]
//
// Each line: time per pass (median of CUDA-event batches), the bandwidth it implies, the average
// board power over the window, the energy per pass, and the energy per pass above the idle power
// (the mean of the idle readings before and after). "SMs" counts the distinct multiprocessors the
// kernel's blocks ran on (read from %smid; "-" for the empty kernels, which record nothing).
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "core/error.hpp"
#include "energy_probe_kernels.hpp"
#include "measure/energy_window.hpp"
#include "measure/idle_baseline.hpp"
#include "measure/nvml.hpp"
#include "measure/stats.hpp"

namespace {

using namespace eaq;

struct Probe {
  std::string name;
  std::string what;
  double bytes_per_pass = 0;  // HBM or L2 bytes read per pass, 0 when none
  std::function<void(cudaStream_t)> pass;
};

struct ProbeResult {
  double us_per_pass = 0;
  double passes = 0;
  double window_s = 0;
  double joules = -1;  // < 0: unavailable
  std::uint32_t sm_clock_mhz = 0;
  std::size_t sms = 0;
};

ProbeResult run_probe(const Probe& probe, cudaStream_t stream, const measure::GpuMeter& meter,
                      double seconds, unsigned* sm_of_block) {
  ProbeResult r;
  EAQ_CUDA_CHECK(cudaMemset(sm_of_block, 0xff, probe::kMaxBlocks * sizeof(unsigned)));
  // Warm-up and the batch size that makes one CUDA-event sample ~20 ms.
  cudaEvent_t start, stop;
  EAQ_CUDA_CHECK(cudaEventCreate(&start));
  EAQ_CUDA_CHECK(cudaEventCreate(&stop));
  int batch = 1;
  for (;;) {
    EAQ_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < batch; ++i) probe.pass(stream);
    EAQ_CUDA_CHECK(cudaEventRecord(stop, stream));
    EAQ_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    EAQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (ms > 20 || batch >= (1 << 20)) break;
    batch *= 2;
  }
  EAQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  const measure::EnergyMark begin = measure::mark_energy(meter);
  std::vector<double> us;
  std::uint32_t clock = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
    EAQ_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < batch; ++i) probe.pass(stream);
    EAQ_CUDA_CHECK(cudaEventRecord(stop, stream));
    if (us.size() == 4) clock = meter.sm_clock_mhz().optional().value_or(0);
    EAQ_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    EAQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    us.push_back(ms * 1e3 / batch);
    r.passes += batch;
  }
  EAQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  const measure::EnergyMark end = measure::mark_energy(meter);
  r.window_s = end.t_s - begin.t_s;
  r.us_per_pass = measure::median(us);
  r.sm_clock_mhz = clock;
  const measure::CounterDelta delta = measure::energy_between(begin, end);
  if (delta.joules) r.joules = *delta.joules;
  std::vector<unsigned> sm(probe::kMaxBlocks);
  EAQ_CUDA_CHECK(
      cudaMemcpy(sm.data(), sm_of_block, sm.size() * sizeof(unsigned), cudaMemcpyDeviceToHost));
  r.sms = std::set<unsigned>(sm.begin(), sm.end()).size() -
          (std::count(sm.begin(), sm.end(), ~0u) ? 1 : 0);
  EAQ_CUDA_CHECK(cudaEventDestroy(start));
  EAQ_CUDA_CHECK(cudaEventDestroy(stop));
  return r;
}

// An L2 access-policy window over the start of `data`: as many of its lines as the persisting
// set-aside holds stay in L2 from one pass to the next, the rest is streamed.
void set_l2_window(cudaStream_t stream, const cudaDeviceProp& prop, void* data, std::size_t bytes) {
  const std::size_t set_aside = std::size_t(prop.persistingL2CacheMaxSize);
  EAQ_CUDA_CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, set_aside));
  cudaStreamAttrValue value{};
  value.accessPolicyWindow.base_ptr = data;
  value.accessPolicyWindow.num_bytes = std::min(bytes, std::size_t(prop.accessPolicyMaxWindowSize));
  value.accessPolicyWindow.hitRatio =
      std::min(1.0f, 0.9f * float(set_aside) / float(value.accessPolicyWindow.num_bytes));
  value.accessPolicyWindow.hitProp = cudaAccessPropertyPersisting;
  value.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
  EAQ_CUDA_CHECK(cudaStreamSetAttribute(stream, cudaStreamAttributeAccessPolicyWindow, &value));
  fmt::print("L2 window: {:.1f} MiB, hit ratio {:.3f}, set-aside {:.1f} MiB\n",
             value.accessPolicyWindow.num_bytes / 1048576.0, value.accessPolicyWindow.hitRatio,
             set_aside / 1048576.0);
}

void clear_l2_window(cudaStream_t stream) {
  cudaStreamAttrValue value{};
  value.accessPolicyWindow.num_bytes = 0;
  EAQ_CUDA_CHECK(cudaStreamSetAttribute(stream, cudaStreamAttributeAccessPolicyWindow, &value));
  EAQ_CUDA_CHECK(cudaCtxResetPersistingL2Cache());
  EAQ_CUDA_CHECK(cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, 0));
}

double idle_power(const measure::GpuMeter& meter) {
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // let the clocks come down
  const measure::IdleBaseline idle = measure::measure_idle_baseline(meter, std::chrono::seconds(2));
  return idle.idle_power_w.optional().value_or(-1);
}

int run(int argc, char** argv) {
  double seconds = 3;
  std::set<std::string> only;  // probe names; empty: every probe
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--seconds" && i + 1 < argc) {
      const std::string value = argv[++i];
      char* end = nullptr;
      seconds = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(seconds > 0)) {
        throw Error(fmt::format("--seconds: expected a positive number, got '{}'", value));
      }
    } else if (arg == "--only" && i + 1 < argc) {
      const std::string list = argv[++i];
      for (std::size_t at = 0; at <= list.size();) {
        const std::size_t comma = std::min(list.find(',', at), list.size());
        only.insert(list.substr(at, comma - at));
        at = comma + 1;
      }
    } else {
      throw Error(fmt::format(
          "eaq_energy_probe: unknown argument '{}' (expected --seconds S, --only NAME,NAME,...)",
          arg));
    }
  }
  int device = 0;
  EAQ_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  EAQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char bus_id[32] = {};
  EAQ_CUDA_CHECK(cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), device));
  const auto meter = measure::open_nvml_meter_by_pci_bus_id(bus_id);
  if (!meter->available()) throw Error("NVML unavailable: " + meter->unavailable_reason());
  const int sms = prop.multiProcessorCount;

  // GPT-2 124M's weights in fp16 (~250 MB) and in 8 bits; 24 MB stays in the 50 MB L2.
  const std::size_t weights_bytes = 248u << 20, half_bytes = weights_bytes / 2,
                    resident_bytes = 24u << 20;
  void* data = nullptr;
  unsigned* sink = nullptr;
  unsigned* sm_of_block = nullptr;
  EAQ_CUDA_CHECK(cudaMalloc(&data, weights_bytes));
  EAQ_CUDA_CHECK(cudaMalloc(&sink, 64));
  EAQ_CUDA_CHECK(cudaMalloc(&sm_of_block, probe::kMaxBlocks * sizeof(unsigned)));
  probe::launch_fill_random(data, weights_bytes, sms * 8, nullptr);
  EAQ_CUDA_CHECK(cudaGetLastError());
  EAQ_CUDA_CHECK(cudaDeviceSynchronize());
  cudaStream_t stream;
  EAQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  const probe::Grid four_per_sm{sms * 4, 256, 0};
  // One block of 1024 threads per multiprocessor when the grid is smaller than the GPU: the
  // dynamic shared memory (> half of an SM's) keeps two blocks off one SM.
  const int one_per_sm = int(prop.sharedMemPerMultiprocessor / 2 + 1024);
  EAQ_CUDA_CHECK(probe::allow_shared_bytes(one_per_sm));
  EAQ_CUDA_CHECK(probe::allow_bulk_stages());
  auto read_on = [&](int blocks, std::size_t bytes) {
    return [=](cudaStream_t s) {
      probe::launch_read_stream(data, bytes, {blocks, 1024, one_per_sm}, sink, sm_of_block, s);
    };
  };
  auto read_all = [&](std::size_t bytes) {
    return [=](cudaStream_t s) {
      probe::launch_read_stream(data, bytes, four_per_sm, sink, sm_of_block, s);
    };
  };
  // One pass of L2-allocating loads: the same pass with and without an L2 window.
  const auto read_plain = [&](cudaStream_t s) {
    probe::launch_read_resident(data, weights_bytes, 1, four_per_sm, sink, sm_of_block, s);
  };
  int clock_khz = 0;
  EAQ_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
  const long long spin_cycles = 100LL * clock_khz / 1000;  // ~100 us at the max clock
  auto spin_on = [&](probe::Grid grid) {
    return [=](cudaStream_t s) { probe::launch_spin(spin_cycles, grid, sm_of_block, s); };
  };
  auto* const float_sink = reinterpret_cast<float*>(sink);
  const std::vector<Probe> probes = {
      {"hbm-all", "read 248 MB, all SMs (4 blocks of 256 per SM)", double(weights_bytes),
       read_all(weights_bytes)},
      {"hbm-dot-cuda-cores", "read 248 MB as f16 weights, x . w in f32 FMAs (a GEMV's arithmetic)",
       double(weights_bytes),
       [&](cudaStream_t s) {
         probe::launch_read_dot(data, weights_bytes, false, four_per_sm, sink, sm_of_block, s);
       }},
      {"hbm-dot-tensor-cores",
       "read 248 MB as f16 weights, x . w on mma.sync (x in one column of 8)",
       double(weights_bytes),
       [&](cudaStream_t s) {
         probe::launch_read_dot(data, weights_bytes, true, four_per_sm, sink, sm_of_block, s);
       }},
      {"hbm-plain-loads", "read 248 MB with plain (L2-allocating) loads, all SMs",
       double(weights_bytes), read_plain},
      {"hbm-l2-window",
       "the same with an L2 persisting window over its first 128 MB (hit ratio set-aside/window)",
       double(weights_bytes), read_plain},
      {"hbm-half-bytes", "read 124 MB, all SMs", double(half_bytes), read_all(half_bytes)},
      {"hbm-1024x1", "read 248 MB, one 1024-thread block per SM, all SMs", double(weights_bytes),
       read_on(sms, weights_bytes)},
      {"hbm-half-sms", "read 248 MB, half the SMs", double(weights_bytes),
       read_on(sms / 2, weights_bytes)},
      {"hbm-quarter-sms", "read 248 MB, a quarter of the SMs", double(weights_bytes),
       read_on(sms / 4, weights_bytes)},
      {"hbm-50-kernels", "read 248 MB as 50 kernels of 5 MB (a decode step's shape)",
       double(weights_bytes),
       [&](cudaStream_t s) {
         const std::size_t piece = weights_bytes / 50 / 16 * 16;
         for (int k = 0; k < 50; ++k)
           probe::launch_read_stream(static_cast<const char*>(data) + k * piece, piece, four_per_sm,
                                     sink, sm_of_block, s);
       }},
      {"hbm-bulk", "read 248 MB by bulk copies (TMA) into shared memory, read there, all SMs",
       double(weights_bytes),
       [&](cudaStream_t s) {
         probe::launch_read_bulk(data, weights_bytes, 1, true, sms, sink, sm_of_block, s);
       }},
      {"hbm-bulk-only", "the same, shared memory left unread (the copies alone)",
       double(weights_bytes),
       [&](cudaStream_t s) {
         probe::launch_read_bulk(data, weights_bytes, 1, false, sms, sink, sm_of_block, s);
       }},
      {"l2-bulk", "read 24 MB 10 times (L2) by bulk copies, read there, all SMs",
       10.0 * resident_bytes,
       [&](cudaStream_t s) {
         probe::launch_read_bulk(data, resident_bytes, 10, true, sms, sink, sm_of_block, s);
       }},
      {"l2-all", "read 24 MB 10 times (L2), all SMs", 10.0 * resident_bytes,
       [&](cudaStream_t s) {
         probe::launch_read_resident(data, resident_bytes, 10, four_per_sm, sink, sm_of_block, s);
       }},
      {"spin-all", "clock spin ~100 us, 1024 threads on every SM", 0,
       spin_on({sms, 1024, one_per_sm})},
      {"spin-half", "clock spin ~100 us, 1024 threads on half the SMs", 0,
       spin_on({sms / 2, 1024, one_per_sm})},
      {"spin-warp", "clock spin ~100 us, one warp on every SM", 0, spin_on({sms, 32, one_per_sm})},
      {"fma-all", "FMA loop, 1024 threads on every SM", 0,
       [&](cudaStream_t s) {
         probe::launch_fma_loop(2000, {sms, 1024, 0}, float_sink, sm_of_block, s);
       }},
      {"sleep-all", "resident and asleep ~100 us, 1024 threads on every SM", 0,
       [&](cudaStream_t s) {
         probe::launch_sleep_resident(100000, {sms, 1024, 0}, sm_of_block, s);
       }},
      {"empty-launch", "an empty kernel, one block (launch cost)", 0,
       [&](cudaStream_t s) {
         probe::launch_empty({1, 32, 0}, s);
       }},
      {"empty-launch-full", "an empty kernel, 4 blocks of 256 per SM", 0,
       [&](cudaStream_t s) { probe::launch_empty(four_per_sm, s); }},
  };

  // --only names probes that exist: a misspelt one is an error, not an empty table.
  std::string known;
  for (const Probe& probe : probes) known += (known.empty() ? "" : ", ") + probe.name;
  for (const std::string& name : only) {
    const auto named = [&](const Probe& probe) { return probe.name == name; };
    if (std::none_of(probes.begin(), probes.end(), named)) {
      throw Error(fmt::format("--only: no probe named '{}' (probes: {})", name, known));
    }
  }
  fmt::print("GPU: {} ({} SMs, L2 {} MB), probe window {} s each\n", prop.name, sms,
             prop.l2CacheSize >> 20, seconds);
  const double idle_before = idle_power(*meter);
  fmt::print("idle power before: {:.1f} W\n\n", idle_before);
  fmt::print(
      "| probe | what | us per pass | GB/s | SMs | SM MHz | board W | mJ per pass | mJ above idle "
      "| pJ/byte above idle |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|\n");
  struct Row {
    const Probe* probe;
    ProbeResult r;
  };
  std::vector<Row> rows;
  for (const Probe& probe : probes) {
    if (!only.empty() && only.count(probe.name) == 0) continue;
    EAQ_CUDA_CHECK(cudaGetLastError());
    const bool window = probe.name == "hbm-l2-window";
    if (window) set_l2_window(stream, prop, data, weights_bytes);
    rows.push_back({&probe, run_probe(probe, stream, *meter, seconds, sm_of_block)});
    if (window) clear_l2_window(stream);
    EAQ_CUDA_CHECK(cudaGetLastError());
  }
  const double idle_after = idle_power(*meter);
  const double idle = (idle_before + idle_after) / 2;
  for (const Row& row : rows) {
    const ProbeResult& r = row.r;
    const double bytes = row.probe->bytes_per_pass;
    std::string energy = "unavailable (the energy counter gave no delta) | - | - | -";
    if (r.joules >= 0) {
      const double mj_dynamic = (r.joules - idle * r.window_s) * 1e3 / r.passes;
      energy = fmt::format("{:.0f} | {:.4f} | {:.4f} | {}", r.joules / r.window_s,
                           r.joules * 1e3 / r.passes, mj_dynamic,
                           bytes > 0 ? fmt::format("{:.1f}", mj_dynamic * 1e9 / bytes) : "-");
    }
    fmt::print("| {} | {} | {:.2f} | {} | {} | {} | {} |\n", row.probe->name, row.probe->what,
               r.us_per_pass, bytes > 0 ? fmt::format("{:.0f}", bytes / r.us_per_pass / 1e3) : "-",
               r.sms > 0 ? std::to_string(r.sms) : "-", r.sm_clock_mhz, energy);
  }
  fmt::print("\nidle power after: {:.1f} W (the table subtracts the mean, {:.1f} W)\n", idle_after,
             idle);
  EAQ_CUDA_CHECK(cudaFree(data));
  EAQ_CUDA_CHECK(cudaFree(sink));
  EAQ_CUDA_CHECK(cudaFree(sm_of_block));
  EAQ_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eaq_energy_probe: %s\n", e.what());
    return 1;
  }
}
