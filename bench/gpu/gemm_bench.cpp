// GEMM micro-benchmark of the quantized Linear paths against f16, on the GPU (CUDA events,
// medians over many repetitions):
//
//   eaq_gemm_bench [--samples N] [--min-sample-us U] [--only
//                  peer|distilbert|gemv|prefill|attention]
//
// (--only gemv / prefill / attention: a decode step's GEMVs, a prompt's GEMMs, and attention, see
// bench_gemv, bench_prefill_gemm and bench_decode_attention below.)
// Shapes: the peer baseline's M=16384, K=768, N=3072 (../shared/DESIGN.md: PyTorch on an H100
// reached fp16 658 TFLOP/s, int8 _int_mm 488 TOP/s, fp8 _scaled_mm 989 TFLOP/s) and DistilBERT's
// four Linear layers at batch 1, 32 and 128 x seq 128. Variants, each as the CUDA backend runs it
// (src/backend/cuda/quantized_linear.cpp):
//   f16 gemm          cuBLASLt f16 x f16 -> f16, f32 accumulate, no epilogue
//   f16 linear        the same with the bias epilogue (the fp16 precision's Linear)
//   int8 gemm         cuBLASLt i8 x i8 -> i32 alone
//   int8 linear       per-token quantization kernel + i8 GEMM + dequantization kernel (bias) -> f16
//   int8 gemm+deq     i8 GEMM + dequantization kernel (input already quantized, as when fused
//                     into LayerNorm or the previous GEMM's epilogue)
//   int8 eaq gemm     eaq's mma.sync int8 GEMM with the dequantization (bias) in its epilogue
//                     (input already quantized)
//   int8 eaq linear   per-token quantization kernel + eaq's int8 GEMM (the default int8 path)
//   int8-wo linear    weight dequantization kernel + f16 GEMM with bias
//   fp8 gemm tensor   cuBLASLt e4m3 x e4m3 -> f16 with per-tensor scales (what _scaled_mm timed)
//   fp8 gemm          cuBLASLt e4m3 x e4m3 -> f16 with outer-vector (per-token x per-channel)
//                     scales and the bias epilogue
//   fp8 linear        per-token quantization kernel + the fp8 GEMM above
// Throughput is 2*M*N*K / time (TFLOP/s; TOP/s for int8). Weights of the smaller shapes stay in
// the 50 MB L2 between repetitions, as they do not in a whole model: small-M numbers are upper
// bounds. A sanity check compares each variant's output with f16's before timing.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/lt_matmul.hpp"
#include "backend/cuda/quant_kernels.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "quant/weight_quant.hpp"

namespace {

using namespace eaq;
using cuda::LtMatmul;
using cuda::LtMatmulSpec;

constexpr std::size_t kWorkspaceBytes = 32u << 20;

struct GemmShape {
  std::string name;
  std::int64_t m, k, n;
};

struct Options {
  int samples = 30;
  double min_sample_us = 300.0;
  std::string only;
};

void* device_alloc(std::size_t bytes) {
  void* p = nullptr;
  EAQ_CUDA_CHECK(cudaMalloc(&p, std::max<std::size_t>(bytes, 16)));
  return p;
}

void* device_copy(const void* host, std::size_t bytes) {
  void* p = device_alloc(bytes);
  EAQ_CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  return p;
}

std::vector<std::uint16_t> to_f16(const std::vector<float>& v) {
  std::vector<std::uint16_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = f32_to_f16_bits(v[i]);
  return out;
}

std::vector<float> download_f16(const void* device, std::size_t count) {
  std::vector<std::uint16_t> bits(count);
  EAQ_CUDA_CHECK(cudaMemcpy(bits.data(), device, count * 2, cudaMemcpyDeviceToHost));
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = f16_bits_to_f32(bits[i]);
  return out;
}

double max_relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0, largest = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
    largest = std::max(largest, static_cast<double>(std::fabs(b[i])));
  }
  return largest > 0 ? worst / largest : worst;
}

// Median time of one call of `body`, in microseconds.
double time_us(const std::function<void()>& body, cudaStream_t stream, const Options& options) {
  cudaEvent_t start, stop;
  EAQ_CUDA_CHECK(cudaEventCreate(&start));
  EAQ_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 10; ++i) body();  // warm-up
  // Calls per sample so that a sample spans at least min_sample_us.
  EAQ_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < 10; ++i) body();
  EAQ_CUDA_CHECK(cudaEventRecord(stop, stream));
  EAQ_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  EAQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  const double estimate_us = std::max(1e-3, ms * 1000.0 / 10.0);
  const int reps = std::max(1, static_cast<int>(std::ceil(options.min_sample_us / estimate_us)));
  std::vector<double> samples;
  for (int s = 0; s < options.samples; ++s) {
    EAQ_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < reps; ++i) body();
    EAQ_CUDA_CHECK(cudaEventRecord(stop, stream));
    EAQ_CUDA_CHECK(cudaEventSynchronize(stop));
    EAQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    samples.push_back(ms * 1000.0 / reps);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

struct Result {
  std::string variant;
  double us = 0.0;
  double error = 0.0;  // vs f16 linear
  std::string note;
};

void bench_shape(const GemmShape& s, cublasLtHandle_t lt, cudaStream_t stream, void* workspace,
                 const Options& options) {
  const std::int64_t m = s.m, k = s.k, n = s.n;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-0.05f, 0.05f);
  std::vector<float> x(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(n * k)),
      b(static_cast<std::size_t>(n));
  for (float& v : x) v = normal(rng);
  for (float& v : w) v = uniform(rng);
  for (float& v : b) v = uniform(rng);
  const HostTensor weight = HostTensor::from_f32({n, k}, w);

  // f16 operands.
  const auto x16 = to_f16(x), w16 = to_f16(w), b16 = to_f16(b);
  void* dx = device_copy(x16.data(), x16.size() * 2);
  void* dw = device_copy(w16.data(), w16.size() * 2);
  void* db16 = device_copy(b16.data(), b16.size() * 2);
  void* db32 = device_copy(b.data(), b.size() * 4);
  void* dy = device_alloc(static_cast<std::size_t>(m * n) * 2);
  // Quantized weights (K and N are multiples of 16 for every shape here: no padding).
  const quant::QuantizedRows w8 = quant::quantize_weights_int8(weight, "w");
  const quant::QuantizedRows wf8 = quant::quantize_weights_e4m3(weight, "w");
  void* dw8 = device_copy(w8.values.raw(), w8.values.nbytes());
  void* dsw8 = device_copy(w8.scales.data(), w8.scales.size() * 4);
  void* dwf8 = device_copy(wf8.values.raw(), wf8.values.nbytes());
  void* dswf8 = device_copy(wf8.scales.data(), wf8.scales.size() * 4);
  void* dq = device_alloc(static_cast<std::size_t>(m * k));
  void* dsx = device_alloc(static_cast<std::size_t>(m) * 4);
  void* dacc = device_alloc(static_cast<std::size_t>(m * n) * 4);
  void* dwdeq = device_alloc(static_cast<std::size_t>(n * k) * 2);
  float* done = static_cast<float*>(device_copy(std::vector<float>{1.0f}.data(), 4));

  LtMatmulSpec f16;
  f16.weight_type = f16.input_type = f16.output_type = f16.bias_type = CUDA_R_16F;
  f16.m = m;
  f16.n = n;
  f16.k = k;
  LtMatmulSpec f16_bias = f16;
  f16_bias.epilogue = CUBLASLT_EPILOGUE_BIAS;
  LtMatmulSpec i8 = f16;
  i8.weight_type = i8.input_type = CUDA_R_8I;
  i8.output_type = CUDA_R_32I;
  i8.compute = CUBLAS_COMPUTE_32I;
  i8.scale_type = CUDA_R_32I;
  LtMatmulSpec f8_tensor = f16;
  f8_tensor.weight_type = f8_tensor.input_type = CUDA_R_8F_E4M3;
  f8_tensor.a_scale = done;
  f8_tensor.b_scale = done;
  LtMatmulSpec f8 = f8_tensor;
  f8.epilogue = CUBLASLT_EPILOGUE_BIAS;
  f8.a_scale = static_cast<const float*>(dswf8);
  f8.b_scale = static_cast<const float*>(dsx);
  f8.outer_vector_scales = true;

  const LtMatmul gemm_f16(lt, f16, kWorkspaceBytes, "f16");
  const LtMatmul gemm_f16_bias(lt, f16_bias, kWorkspaceBytes, "f16 bias");
  const LtMatmul gemm_i8(lt, i8, kWorkspaceBytes, "int8");
  const LtMatmul gemm_f8_tensor(lt, f8_tensor, kWorkspaceBytes, "fp8 per-tensor");
  std::unique_ptr<LtMatmul> gemm_f8;
  std::string f8_note;
  try {
    gemm_f8 = std::make_unique<LtMatmul>(lt, f8, kWorkspaceBytes, "fp8 outer-vector");
  } catch (const Error& e) {
    f8_note = e.what();
  }

  const float one = 1.0f, zero = 0.0f;
  const std::int32_t ione = 1, izero = 0;
  cuda::QuantizeTarget q8;
  q8.values = dq;
  q8.ld = k;
  q8.scales = static_cast<float*>(dsx);
  cuda::QuantizeTarget qf8 = q8;
  qf8.format = cuda::QuantFormat::E4M3;
  cuda::DequantizeArgs dequant;
  dequant.acc = dacc;
  dequant.ld_acc = n;
  dequant.row_scales = static_cast<const float*>(dsx);
  dequant.col_scales = static_cast<const float*>(dsw8);
  dequant.bias = static_cast<const float*>(db32);
  dequant.rows = m;
  dequant.cols = n;
  dequant.y = dy;

  const auto f16_gemm = [&] { gemm_f16.run(dw, dx, dy, nullptr, &one, &zero, workspace, stream); };
  const auto f16_linear = [&] {
    gemm_f16_bias.run(dw, dx, dy, db16, &one, &zero, workspace, stream);
  };
  const auto int8_quantize = [&] { cuda::launch_quantize_rows(DType::F16, dx, m, k, q8, stream); };
  const auto int8_gemm = [&] {
    gemm_i8.run(dw8, dq, dacc, nullptr, &ione, &izero, workspace, stream);
  };
  const auto int8_dequant = [&] { cuda::launch_dequantize(DType::F16, dequant, stream); };
  const auto int8_gemm_deq = [&] {
    int8_gemm();
    int8_dequant();
  };
  const auto int8_linear = [&] {
    int8_quantize();
    int8_gemm();
    int8_dequant();
  };
  cuda::Int8GemmArgs own;
  own.x = static_cast<const std::int8_t*>(dq);
  own.w = static_cast<const std::int8_t*>(dw8);
  own.m = m;
  own.n = n;
  own.k = k;
  own.row_scales = static_cast<const float*>(dsx);
  own.col_scales = static_cast<const float*>(dsw8);
  own.bias = static_cast<const float*>(db32);
  own.y = dy;
  own.ldy = own.n_out = n;
  const auto int8_eaq_gemm = [&] { cuda::launch_int8_gemm(DType::F16, own, stream); };
  const auto int8_eaq_linear = [&] {
    int8_quantize();
    int8_eaq_gemm();
  };
  const auto wo_linear = [&] {
    cuda::launch_dequantize_weights(DType::F16, static_cast<const std::int8_t*>(dw8),
                                    static_cast<const float*>(dsw8), dwdeq, n, k, stream);
    gemm_f16_bias.run(dwdeq, dx, dy, db16, &one, &zero, workspace, stream);
  };
  const auto fp8_quantize = [&] { cuda::launch_quantize_rows(DType::F16, dx, m, k, qf8, stream); };
  const float tiny = 1e-5f;  // keeps the unit-scaled fp8 products inside f16's range
  const auto fp8_gemm_tensor = [&] {
    gemm_f8_tensor.run(dwf8, dq, dy, nullptr, &tiny, &zero, workspace, stream);
  };
  const auto fp8_gemm = [&] { gemm_f8->run(dwf8, dq, dy, db16, &one, &zero, workspace, stream); };
  const auto fp8_linear = [&] {
    fp8_quantize();
    fp8_gemm();
  };

  // Sanity: every full variant against f16.
  f16_linear();
  EAQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<float> reference = download_f16(dy, static_cast<std::size_t>(m * n));
  const auto check = [&](const std::function<void()>& body) {
    EAQ_CUDA_CHECK(cudaMemsetAsync(dy, 0, static_cast<std::size_t>(m * n) * 2, stream));
    body();
    EAQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    return max_relative_error(download_f16(dy, static_cast<std::size_t>(m * n)), reference);
  };

  std::vector<Result> results;
  results.push_back({"f16 gemm", time_us(f16_gemm, stream, options), 0.0, ""});
  results.push_back({"f16 linear", time_us(f16_linear, stream, options), 0.0, ""});
  const double int8_error = check(int8_linear);
  results.push_back({"int8 gemm", time_us(int8_gemm, stream, options), int8_error, "i32 out"});
  results.push_back({"int8 gemm+deq", time_us(int8_gemm_deq, stream, options), int8_error, ""});
  results.push_back({"int8 linear", time_us(int8_linear, stream, options), int8_error, ""});
  const double own_error = check(int8_eaq_linear);
  results.push_back(
      {"int8 eaq gemm", time_us(int8_eaq_gemm, stream, options), own_error, "dequant epilogue"});
  results.push_back({"int8 eaq linear", time_us(int8_eaq_linear, stream, options), own_error, ""});
  results.push_back({"int8 quantize", time_us(int8_quantize, stream, options), 0.0, "kernel only"});
  results.push_back({"int8 dequant", time_us(int8_dequant, stream, options), 0.0, "kernel only"});
  results.push_back({"int8-wo linear", time_us(wo_linear, stream, options), check(wo_linear), ""});
  fp8_quantize();
  results.push_back(
      {"fp8 gemm tensor", time_us(fp8_gemm_tensor, stream, options), NAN, "per-tensor scales = 1"});
  if (gemm_f8) {
    const double fp8_error = check(fp8_linear);
    results.push_back({"fp8 gemm", time_us(fp8_gemm, stream, options), fp8_error, "outer-vector"});
    results.push_back({"fp8 linear", time_us(fp8_linear, stream, options), fp8_error, ""});
  } else {
    results.push_back({"fp8 gemm", NAN, NAN, "refused: " + f8_note});
  }

  const double flops =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const double f16_us = results[1].us;
  for (const Result& r : results) {
    const bool throughput = r.variant.find("quantize") == std::string::npos &&
                            r.variant.find("dequant") == std::string::npos;
    std::printf("%-22s %6lld %5lld %5lld  %-16s %10.2f  %8s  %6.2fx  %9s  %s\n", s.name.c_str(),
                static_cast<long long>(m), static_cast<long long>(k), static_cast<long long>(n),
                r.variant.c_str(), r.us,
                throughput ? fmt::format("{:.1f}", flops / (r.us * 1e-6) / 1e12).c_str() : "-",
                f16_us / r.us, std::isnan(r.error) ? "-" : fmt::format("{:.1e}", r.error).c_str(),
                r.note.c_str());
  }
  std::fflush(stdout);
  for (void* p : {dx, dw, db16, db32, dy, dw8, dsw8, dwf8, dswf8, dq, dsx, dacc, dwdeq,
                  static_cast<void*>(done)}) {
    cudaFree(p);
  }
}

}  // namespace

// --- decode GEMVs (--only gemv) ------------------------------------------------------------------
// GPT-2 124M's decode-step Linear layers at one row, f16: eaq's GEMV, the same with the LayerNorm
// prologue, and cuBLASLt (bias epilogue). Each call reads one of several copies of W, together
// larger than L2, as a decode step reads every layer's weights once. Timed as a captured graph of
// back-to-back calls (what a decode step's graph replays), so host launch cost is not counted.

double graph_time_us(const std::function<void(int)>& call, int calls_per_graph, cudaStream_t stream,
                     const Options& options) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  call(0);  // first calls outside capture (cuBLASLt tunes its algorithm here)
  EAQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  EAQ_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls_per_graph; ++i) call(i);
  EAQ_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  EAQ_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const double us =
      time_us([&] { EAQ_CUDA_CHECK(cudaGraphLaunch(exec, stream)); }, stream, options);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return us / calls_per_graph;
}

void bench_gemv(cublasLtHandle_t lt, cudaStream_t stream, void* workspace, const Options& options) {
  struct Shape {
    const char* name;
    std::int64_t n, k;
  };
  const Shape shapes[] = {{"c_attn", 2304, 768},
                          {"attn c_proj", 768, 768},
                          {"c_fc", 3072, 768},
                          {"mlp c_proj", 768, 3072},
                          {"lm_head", 50257, 768}};
  std::printf("%-12s %6s %5s  %-18s %10s %8s %9s\n", "layer", "N", "K", "variant", "median us",
              "GB/s", "rel.err");
  for (const Shape& s : shapes) {
    const std::size_t w_bytes = static_cast<std::size_t>(s.n * s.k) * 2;
    const int copies = static_cast<int>(std::max<std::size_t>(1, (256u << 20) / w_bytes + 1));
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> uniform(-0.05f, 0.05f);
    std::vector<float> w(static_cast<std::size_t>(s.n * s.k)), x(static_cast<std::size_t>(s.k)),
        b(static_cast<std::size_t>(s.n)), gamma(static_cast<std::size_t>(s.k), 1.0f),
        beta(static_cast<std::size_t>(s.k), 0.0f);
    for (float& v : w) v = uniform(rng);
    for (float& v : x) v = 20.0f * uniform(rng);
    for (float& v : b) v = uniform(rng);
    const auto w16 = to_f16(w), x16 = to_f16(x), b16 = to_f16(b);
    std::vector<void*> dw;
    for (int c = 0; c < copies; ++c) dw.push_back(device_copy(w16.data(), w_bytes));
    void* dx = device_copy(x16.data(), x16.size() * 2);
    void* db = device_copy(b16.data(), b16.size() * 2);
    void* dgamma = device_copy(gamma.data(), gamma.size() * 4);
    void* dbeta = device_copy(beta.data(), beta.size() * 4);
    void* dnormed = device_alloc(x16.size() * 2);
    void* dy = device_alloc(static_cast<std::size_t>(s.n) * 2);

    LtMatmulSpec spec;
    spec.weight_type = spec.input_type = spec.output_type = spec.bias_type = CUDA_R_16F;
    spec.m = 1;
    spec.n = s.n;
    spec.k = s.k;
    spec.epilogue = CUBLASLT_EPILOGUE_BIAS;
    const LtMatmul lt_gemm(lt, spec, kWorkspaceBytes, s.name);
    const float alpha = 1.0f, zero = 0.0f;
    const auto gemv = [&](int i, bool layer_norm) {
      cuda::GemvArgs g;
      g.x = dx;
      g.w = dw[static_cast<std::size_t>(i % copies)];
      g.bias = db;
      g.y = dy;
      g.m = 1;
      g.n = s.n;
      g.k = s.k;
      if (layer_norm) {
        g.ln_gamma = static_cast<const float*>(dgamma);
        g.ln_beta = static_cast<const float*>(dbeta);
        g.ln_eps = 1e-5f;
        g.ln_out = dnormed;
      }
      cuda::launch_gemv(DType::F16, g, stream);
    };
    const auto cublas = [&](int i) {
      lt_gemm.run(dw[static_cast<std::size_t>(i % copies)], dx, dy, db, &alpha, &zero, workspace,
                  stream);
    };
    const int calls = std::max(copies, 16);
    // Correctness first: eaq's GEMV against cuBLASLt on the same copy.
    cublas(0);
    const std::vector<float> want = download_f16(dy, static_cast<std::size_t>(s.n));
    gemv(0, false);
    const double error = max_relative_error(download_f16(dy, static_cast<std::size_t>(s.n)), want);
    const struct {
      const char* name;
      std::function<void(int)> call;
    } variants[] = {{"eaq gemv", [&](int i) { gemv(i, false); }},
                    {"eaq layer_norm+gemv", [&](int i) { gemv(i, true); }},
                    {"cublasLt f16 bias", cublas}};
    for (const auto& v : variants) {
      const double us = graph_time_us(v.call, calls, stream, options);
      std::printf("%-12s %6lld %5lld  %-18s %10.2f %8.0f %9.1e\n", s.name,
                  static_cast<long long>(s.n), static_cast<long long>(s.k), v.name, us,
                  static_cast<double>(w_bytes) / us / 1e3, error);
    }
    for (void* p : dw) cudaFree(p);
    for (void* p : {dx, db, dgamma, dbeta, dnormed, dy}) cudaFree(p);
  }
}

// --- prefill GEMMs (--only prefill) -------------------------------------------------------------
// GPT-2 124M's Linear layers on 32 rows (a batch-32 decode step) and on a prompt's rows (128
// tokens at batch 1 and 2, 512 at batch 4), f16,
// each with the epilogue Gpt2Model runs: bias (c_attn), bias + tanh GELU (c_fc), bias + residual
// into the residual stream (the two projections). eaq's split-K GEMM against cuBLASLt (the
// residual as its C operand, beta 1, as the CUDA backend runs it), each timed on a captured graph
// of back-to-back calls over copies of W larger than L2 together (a prefill reads every layer's
// weights once); cuBLASLt first times its candidate algorithms on the shape.
void bench_prefill_gemm(cublasLtHandle_t lt, cudaStream_t stream, void* workspace,
                        const Options& options) {
  struct Shape {
    const char* name;
    std::int64_t n, k;
    bool gelu, residual;
  };
  const Shape shapes[] = {{"c_attn", 2304, 768, false, false},
                          {"attn c_proj", 768, 768, false, true},
                          {"c_fc", 3072, 768, true, false},
                          {"mlp c_proj", 768, 3072, false, true}};
  std::printf("%-12s %5s %6s %5s  %-22s %10s %9s %9s\n", "layer", "M", "N", "K", "variant",
              "median us", "TFLOP/s", "rel.err");
  for (const std::int64_t m : {32, 128, 256, 512}) {
    for (const Shape& s : shapes) {
      const std::size_t w_bytes = static_cast<std::size_t>(s.n * s.k) * 2;
      const int copies = static_cast<int>(std::max<std::size_t>(1, (256u << 20) / w_bytes + 1));
      std::mt19937 rng(13);
      std::uniform_real_distribution<float> uniform(-0.05f, 0.05f);
      std::vector<float> w(static_cast<std::size_t>(s.n * s.k)),
          x(static_cast<std::size_t>(m * s.k)), b(static_cast<std::size_t>(s.n)),
          r(static_cast<std::size_t>(m * s.n));
      for (float& v : w) v = uniform(rng);
      for (float& v : x) v = 20.0f * uniform(rng);
      for (float& v : b) v = uniform(rng);
      for (float& v : r) v = 20.0f * uniform(rng);
      const auto w16 = to_f16(w), x16 = to_f16(x), b16 = to_f16(b), r16 = to_f16(r);
      std::vector<void*> dw;
      for (int c = 0; c < copies; ++c) dw.push_back(device_copy(w16.data(), w_bytes));
      void* dx = device_copy(x16.data(), x16.size() * 2);
      void* db = device_copy(b16.data(), b16.size() * 2);
      void* dr = device_copy(r16.data(), r16.size() * 2);
      const std::size_t y_bytes = static_cast<std::size_t>(m * s.n) * 2;
      void* dy = device_alloc(y_bytes);

      LtMatmulSpec spec;
      spec.weight_type = spec.input_type = spec.output_type = spec.bias_type = CUDA_R_16F;
      spec.m = m;
      spec.n = s.n;
      spec.k = s.k;
      spec.epilogue = s.gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
      const LtMatmul lt_gemm(lt, spec, kWorkspaceBytes, s.name);
      lt_gemm.tune_on(dx, dy, db, workspace, stream);
      const float alpha = 1.0f, beta = s.residual ? 1.0f : 0.0f;
      const auto cublas = [&](int i) {
        lt_gemm.run(dw[static_cast<std::size_t>(i % copies)], dx, dy, db, &alpha, &beta, workspace,
                    stream);
      };

      cuda::SplitKGemmArgs args;
      args.x = dx;
      args.bias = db;
      args.y = dy;
      args.residual = s.residual ? dy : nullptr;
      args.m = m;
      args.n = s.n;
      args.k = s.k;
      args.activation = s.gelu ? Activation::GeluTanh : Activation::None;
      const auto split_k = [&](int i) {
        cuda::SplitKGemmArgs a = args;
        a.w = dw[static_cast<std::size_t>(i % copies)];
        cuda::launch_split_k_gemm(DType::F16, a, stream);
      };
      // Correctness first: both from the same residual on copy 0.
      EAQ_CUDA_CHECK(cudaMemcpy(dy, dr, y_bytes, cudaMemcpyDeviceToDevice));
      cublas(0);
      const std::vector<float> want = download_f16(dy, static_cast<std::size_t>(m * s.n));
      EAQ_CUDA_CHECK(cudaMemcpy(dy, dr, y_bytes, cudaMemcpyDeviceToDevice));
      split_k(0);
      EAQ_CUDA_CHECK(cudaStreamSynchronize(stream));
      const double error =
          max_relative_error(download_f16(dy, static_cast<std::size_t>(m * s.n)), want);
      const std::string eaq_name =
          fmt::format("eaq split-K ({} splits)", cuda::split_k_gemm_splits(args));
      const struct {
        std::string name;
        std::function<void(int)> call;
      } variants[] = {{eaq_name, split_k}, {"cublasLt", cublas}};
      const int calls = std::max(copies, 16);
      for (const auto& v : variants) {
        // The residual variants add into y on every call: values grow, timing does not change.
        const double us = graph_time_us(v.call, calls, stream, options);
        std::printf("%-12s %5lld %6lld %5lld  %-22s %10.2f %9.1f %9.1e\n", s.name,
                    static_cast<long long>(m), static_cast<long long>(s.n),
                    static_cast<long long>(s.k), v.name.c_str(), us,
                    2.0 * static_cast<double>(m * s.n * s.k) / us / 1e6, error);
      }
      for (void* p : dw) cudaFree(p);
      for (void* p : {dx, db, dr, dy}) cudaFree(p);
    }
  }
}

// --- decode attention (--only attention) ---------------------------------------------------------
// GPT-2 124M's decode-step attention (12 heads of 64, f16) over a cache of `capacity` positions,
// this step's K/V appended at the last one, as Gpt2Model::decode_step calls it.
void bench_decode_attention(cudaStream_t stream, const Options& options) {
  std::printf("%-28s %6s %9s %10s %8s\n", "decode attention", "batch", "capacity", "median us",
              "GB/s");
  for (const auto& [batch, capacity] :
       {std::pair<std::int64_t, std::int64_t>{1, 192}, {1, 384}, {1, 1024}, {32, 384}}) {
    const std::int64_t heads = 12, head_dim = 64, hidden = heads * head_dim;
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    std::vector<float> cache(static_cast<std::size_t>(batch * capacity * 2 * hidden)),
        qkv(static_cast<std::size_t>(batch * 3 * hidden));
    for (float& v : cache) v = uniform(rng);
    for (float& v : qkv) v = uniform(rng);
    const auto cache16 = to_f16(cache), qkv16 = to_f16(qkv);
    void* dcache = device_copy(cache16.data(), cache16.size() * 2);
    void* dqkv = device_copy(qkv16.data(), qkv16.size() * 2);
    void* dout = device_alloc(static_cast<std::size_t>(batch * hidden) * 2);
    const std::vector<std::int32_t> ones(static_cast<std::size_t>(batch * capacity), 1);
    void* dmask = device_copy(ones.data(), ones.size() * 4);
    const std::int32_t slot = static_cast<std::int32_t>(capacity - 1);
    void* dslot = device_copy(&slot, 4);
    char* cache_bytes = static_cast<char*>(dcache);
    char* qkv_bytes = static_cast<char*>(dqkv);
    AttentionArgs a;
    a.q = qkv_bytes;
    a.k = cache_bytes;
    a.v = cache_bytes + hidden * 2;
    a.out = dout;
    a.q_batch_stride = a.q_row_stride = 3 * hidden;
    a.kv_batch_stride = capacity * 2 * hidden;
    a.kv_row_stride = 2 * hidden;
    a.out_batch_stride = a.out_row_stride = hidden;
    a.key_mask = static_cast<const std::int32_t*>(dmask);
    a.mask_batch_stride = capacity;
    a.batch = batch;
    a.q_len = 1;
    a.kv_len = capacity;
    a.heads = heads;
    a.head_dim = head_dim;
    a.scale = 0.125f;
    a.append_k = qkv_bytes + hidden * 2;
    a.append_v = qkv_bytes + 2 * hidden * 2;
    a.append_batch_stride = 3 * hidden;
    a.append_slot = static_cast<const std::int32_t*>(dslot);
    const cuda::SplitNeed need = cuda::attention_split_need(DType::F16, a);
    cuda::SplitScratch scratch;
    scratch.partial_floats = need.partial_floats;
    scratch.counter_count = need.counters;
    scratch.partials = static_cast<float*>(
        device_alloc(static_cast<std::size_t>(std::max<std::int64_t>(need.partial_floats, 1)) * 4));
    scratch.counters = static_cast<unsigned*>(
        device_alloc(static_cast<std::size_t>(std::max<std::int64_t>(need.counters, 1)) * 4));
    EAQ_CUDA_CHECK(
        cudaMemset(scratch.counters, 0,
                   static_cast<std::size_t>(std::max<std::int64_t>(need.counters, 1)) * 4));
    const double us = graph_time_us(
        [&](int) { cuda::launch_attention(DType::F16, a, scratch, stream); }, 32, stream, options);
    const double bytes = static_cast<double>(batch * capacity * 2 * hidden * 2);
    std::printf("%-28s %6lld %9lld %10.2f %8.0f\n", cuda::attention_kernel_name(DType::F16, a),
                static_cast<long long>(batch), static_cast<long long>(capacity), us,
                bytes / us / 1e3);
    for (void* p : {dcache, dqkv, dout, dmask, dslot, static_cast<void*>(scratch.partials),
                    static_cast<void*>(scratch.counters)}) {
      cudaFree(p);
    }
  }
}

// Self-attention over fused qkv rows of 128 tokens, 12 heads of 64, every kernel that can run it:
// the register kernel (attention_prefill_mma.cu), the prefill kernel (four warps per 16 queries),
// the tensor-core kernel (one warp per 16 queries), the grouped CUDA-core kernel, and the decode
// kernel with one block per (query, head). Causal (GPT-2 prompts) at batch 1 and 8, then without
// a mask (encoder batches) at 32 and 128.
void bench_prefill_attention(cudaStream_t stream, const Options& options) {
  std::printf("%-28s %6s %9s %10s\n", "prefill attention", "batch", "tokens", "median us");
  for (const std::int64_t batch : {1, 8, 32, 128}) {
    const bool causal = batch <= 8;
    const std::int64_t heads = 12, head_dim = 64, hidden = heads * head_dim, seq = 128;
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    std::vector<float> qkv(static_cast<std::size_t>(batch * seq * 3 * hidden));
    for (float& v : qkv) v = uniform(rng);
    const auto qkv16 = to_f16(qkv);
    void* dqkv = device_copy(qkv16.data(), qkv16.size() * 2);
    void* dout = device_alloc(static_cast<std::size_t>(batch * seq * hidden) * 2);
    char* qkv_bytes = static_cast<char*>(dqkv);
    AttentionArgs a;
    a.q = qkv_bytes;
    a.k = qkv_bytes + hidden * 2;
    a.v = qkv_bytes + 2 * hidden * 2;
    a.out = dout;
    a.q_batch_stride = a.kv_batch_stride = seq * 3 * hidden;
    a.q_row_stride = a.kv_row_stride = 3 * hidden;
    a.out_batch_stride = seq * hidden;
    a.out_row_stride = hidden;
    a.batch = batch;
    a.q_len = a.kv_len = seq;
    a.heads = heads;
    a.head_dim = head_dim;
    a.causal = causal;
    a.scale = 0.125f;
    const cuda::SplitScratch none;
    for (const char* kernel : {"mma", "prefill", "wmma", "grouped", "decode"}) {
      if (batch > 8 && std::string(kernel) == "decode") continue;  // minutes, and never chosen
      const double us = graph_time_us(
          [&](int) { cuda::launch_attention_kernel(DType::F16, a, none, kernel, stream); }, 32,
          stream, options);
      const bool chosen = std::string(kernel) == cuda::attention_kernel_name(DType::F16, a);
      std::printf("%-28s %6lld %9lld %10.2f%s\n",
                  (std::string(kernel) + (causal ? " (causal)" : " (no mask)")).c_str(),
                  static_cast<long long>(batch), static_cast<long long>(seq), us,
                  chosen ? "  (chosen)" : "");
    }
    cudaFree(dqkv);
    cudaFree(dout);
  }
}

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--samples" && i + 1 < argc) {
      options.samples = std::stoi(argv[++i]);
    } else if (arg == "--min-sample-us" && i + 1 < argc) {
      options.min_sample_us = std::stod(argv[++i]);
    } else if (arg == "--only" && i + 1 < argc) {
      options.only = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: eaq_gemm_bench [--samples N] [--min-sample-us U] [--only "
                   "peer|distilbert|gemv|prefill|attention]\n");
      return 2;
    }
  }
  try {
    cudaDeviceProp props{};
    EAQ_CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
    std::printf("eaq_gemm_bench on %s (sm_%d%d), cuBLASLt %zu, median of %d samples\n", props.name,
                props.major, props.minor, cublasLtGetVersion(), options.samples);
    std::vector<GemmShape> shapes;
    if (options.only.empty() || options.only == "peer")
      shapes.push_back({"peer M16384", 16384, 768, 3072});
    if (options.only.empty() || options.only == "distilbert") {
      for (int batch : {1, 32, 128}) {
        const std::int64_t m = 128 * batch;
        const std::string b = fmt::format("b{}x128 ", batch);
        shapes.push_back({b + "qkv", m, 768, 2304});
        shapes.push_back({b + "o", m, 768, 768});
        shapes.push_back({b + "ffn_in", m, 768, 3072});
        shapes.push_back({b + "ffn_out", m, 3072, 768});
      }
    }
    cudaStream_t stream;
    EAQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cublasLtHandle_t lt;
    EAQ_CUBLAS_CHECK(cublasLtCreate(&lt));
    void* workspace = device_alloc(kWorkspaceBytes);
    if (!shapes.empty()) {
      std::printf("%-22s %6s %5s %5s  %-16s %10s  %8s  %7s  %9s  %s\n", "shape", "M", "K", "N",
                  "variant", "median us", "T(FL)OP/s", "vs f16", "rel.err", "note");
    }
    for (const GemmShape& s : shapes) bench_shape(s, lt, stream, workspace, options);
    if (options.only.empty() || options.only == "gemv") bench_gemv(lt, stream, workspace, options);
    if (options.only.empty() || options.only == "prefill")
      bench_prefill_gemm(lt, stream, workspace, options);
    if (options.only.empty() || options.only == "attention") {
      bench_decode_attention(stream, options);
      bench_prefill_attention(stream, options);
    }
    cudaFree(workspace);
    cublasLtDestroy(lt);
    cudaStreamDestroy(stream);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eaq_gemm_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
