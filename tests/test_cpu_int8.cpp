// The CPU backend's int8 precisions: the exact integer GEMM, quantized Linear layers against the
// host quantization math, and whole models against CPU fp32 (golden tiny models, the bundled
// sentiment model on the bundled dataset).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/cpu_int8_gemm.hpp"
#include "core/error.hpp"
#include "golden.hpp"
#include "io/dataset.hpp"
#include "io/safetensors.hpp"
#include "model/encoder.hpp"
#include "quant/activation_quant.hpp"
#include "quant/calibrate.hpp"
#include "quant/weight_quant.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

TEST(CpuInt8Gemm, ExactIntegerAccumulation) {
  std::mt19937 rng(1);
  for (const auto& [m, n, k] :
       {std::tuple{7, 5, 33}, std::tuple{4, 9, 1024}, std::tuple{1, 1, 1}}) {
    std::vector<std::int8_t> x(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(n * k));
    for (auto& v : x) v = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
    for (auto& v : w) v = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
    x[0] = w[0] = -127;  // extremes
    std::vector<std::int32_t> acc(static_cast<std::size_t>(m * n));
    cpu::gemm_i8_i32(x.data(), w.data(), acc.data(), m, n, k);
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) {
        std::int64_t expected = 0;
        for (int c = 0; c < k; ++c) expected += x[i * k + c] * w[j * k + c];
        EXPECT_EQ(acc[i * n + j], expected) << m << "x" << n << "x" << k << " at " << i << "," << j;
      }
    }
  }
}

struct LinearCase {
  HostTensor x = test::random_f32({6, 40}, 7, 2.0f);
  HostTensor w = test::random_f32({24, 40}, 8, 0.3f);
  HostTensor b = test::random_f32({24}, 9, 0.5f);

  HostTensor run(Precision precision, float static_scale, std::string* kernel) const {
    auto backend = make_cpu_backend(precision);
    LinearOptions options;
    options.name = "layers.0.ffn_in";
    options.quantize = true;
    options.static_input_scale = static_scale;
    auto linear = backend->prepare_linear(w, &b, options);
    if (kernel) *kernel = linear->kernel;
    DeviceTensor dx = backend->upload(x, DType::F32);
    DeviceTensor dy = backend->allocate(DType::F32, {6, 24});
    backend->linear(dx, *linear, Activation::Gelu, dy);
    HostTensor y = backend->download(dy);
    backend->release(dx);
    backend->release(dy);
    return y;
  }
};

float gelu(float v) {
  return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
}

TEST(CpuInt8Linear, DynamicMatchesTheQuantizationMath) {
  const LinearCase c;
  std::string kernel;
  const HostTensor y = c.run(Precision::Int8, 0.0f, &kernel);
  EXPECT_EQ(kernel, "cpu i8xi8->i32 (per-token dynamic input x per-channel weights)");
  const quant::QuantizedRows qx = quant::quantize_activations_int8(c.x);
  const quant::QuantizedRows qw = quant::quantize_weights_int8(c.w, "w");
  double worst_vs_f32 = 0.0, largest = 0.0;
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 24; ++j) {
      std::int32_t acc = 0;
      double exact = c.b.data<float>()[j];
      for (int k = 0; k < 40; ++k) {
        acc +=
            qx.values.data<std::int8_t>()[i * 40 + k] * qw.values.data<std::int8_t>()[j * 40 + k];
        exact += static_cast<double>(c.x.data<float>()[i * 40 + k]) * c.w.data<float>()[j * 40 + k];
      }
      const float expected =
          gelu(static_cast<float>(acc) * (qx.scales[i] * qw.scales[j]) + c.b.data<float>()[j]);
      EXPECT_FLOAT_EQ(y.data<float>()[i * 24 + j], expected) << i << "," << j;
      worst_vs_f32 =
          std::max(worst_vs_f32, static_cast<double>(std::fabs(y.data<float>()[i * 24 + j] -
                                                               gelu(static_cast<float>(exact)))));
      largest = std::max(largest, std::fabs(exact));
    }
  }
  EXPECT_LE(worst_vs_f32 / largest, 0.02) << "int8 Linear vs exact f32";
}

TEST(CpuInt8Linear, StaticUsesTheCalibratedScale) {
  const LinearCase c;
  const float scale = 2.0f / 127.0f;  // x lies in [-2, 2]
  std::string kernel;
  const HostTensor y = c.run(Precision::Int8Static, scale, &kernel);
  EXPECT_NE(kernel.find("static per-tensor"), std::string::npos) << kernel;
  std::vector<std::int8_t> qx(240);
  quant::quantize_int8_static(c.x.data<float>(), 240, scale, qx.data());
  const quant::QuantizedRows qw = quant::quantize_weights_int8(c.w, "w");
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 24; ++j) {
      std::int32_t acc = 0;
      for (int k = 0; k < 40; ++k)
        acc += qx[i * 40 + k] * qw.values.data<std::int8_t>()[j * 40 + k];
      EXPECT_FLOAT_EQ(
          y.data<float>()[i * 24 + j],
          gelu(static_cast<float>(acc) * (scale * qw.scales[j]) + c.b.data<float>()[j]));
    }
  }
  try {
    c.run(Precision::Int8Static, 0.0f, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer layers.0.ffn_in has no calibrated input scale"),
              std::string::npos)
        << e.what();
  }
}

TEST(CpuInt8Linear, WeightOnlyIsAnF32GemmOnDequantizedWeights) {
  const LinearCase c;
  std::string kernel;
  const HostTensor y = c.run(Precision::Int8WeightOnly, 0.0f, &kernel);
  EXPECT_NE(kernel.find("int8-wo"), std::string::npos) << kernel;
  const quant::QuantizedRows qw = quant::quantize_weights_int8(c.w, "w");
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 24; ++j) {
      double sum = c.b.data<float>()[j];
      for (int k = 0; k < 40; ++k) {
        sum += static_cast<double>(c.x.data<float>()[i * 40 + k]) *
               (qw.values.data<std::int8_t>()[j * 40 + k] * qw.scales[j]);
      }
      EXPECT_NEAR(y.data<float>()[i * 24 + j], gelu(static_cast<float>(sum)), 1e-4);
    }
  }
}

TEST(CpuInt8Backend, RefusesFp8AndOtherGpuPrecisions) {
  for (Precision p : {Precision::Fp8, Precision::Fp16, Precision::Bf16}) {
    EXPECT_FALSE(cpu_supports(p)) << precision_name(p);
    EXPECT_THROW(make_cpu_backend(p), Error);
  }
  for (Precision p : {Precision::Int8, Precision::Int8Static, Precision::Int8WeightOnly}) {
    EXPECT_TRUE(cpu_supports(p)) << precision_name(p);
  }
}

// Logits of `model` on [N, L] ids/mask. Examples run in batches of similar length, each cropped
// to its longest real sequence (padding does not change an example's logits), to keep CPU time
// down.
HostTensor logits_of(EncoderModel& model, Backend& backend, const HostTensor& ids,
                     const HostTensor& mask, std::int64_t batch_size) {
  const std::int64_t n = ids.dim(0), width = ids.dim(1);
  const std::int64_t labels = model.config().num_labels;
  HostTensor out = HostTensor::empty(DType::F32, {n, labels});
  const std::vector<std::int64_t> all_ids = ids.to_i64(), all_mask = mask.to_i64();
  std::vector<std::int64_t> lengths(static_cast<std::size_t>(n), 1),
      order(static_cast<std::size_t>(n));
  for (std::int64_t r = 0; r < n; ++r) {
    order[static_cast<std::size_t>(r)] = r;
    for (std::int64_t c = 0; c < width; ++c) {
      if (all_mask[static_cast<std::size_t>(r * width + c)])
        lengths[static_cast<std::size_t>(r)] = c + 1;
    }
  }
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return lengths[static_cast<std::size_t>(a)] < lengths[static_cast<std::size_t>(b)];
  });
  for (std::int64_t begin = 0; begin < n; begin += batch_size) {
    const std::int64_t count = std::min(batch_size, n - begin);
    std::int64_t length = 1;
    for (std::int64_t i = begin; i < begin + count; ++i) {
      length =
          std::max(length, lengths[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])]);
    }
    std::vector<std::int32_t> bi, bm;
    for (std::int64_t i = begin; i < begin + count; ++i) {
      const std::int64_t r = order[static_cast<std::size_t>(i)];
      for (std::int64_t c = 0; c < length; ++c) {
        bi.push_back(static_cast<std::int32_t>(all_ids[static_cast<std::size_t>(r * width + c)]));
        bm.push_back(static_cast<std::int32_t>(all_mask[static_cast<std::size_t>(r * width + c)]));
      }
    }
    EncoderBatch batch;
    batch.input_ids = backend.upload(HostTensor::from_i32({count, length}, bi), DType::I32);
    batch.attention_mask = backend.upload(HostTensor::from_i32({count, length}, bm), DType::I32);
    const HostTensor logits = backend.download(model.forward(batch).logits);
    for (std::int64_t i = 0; i < count; ++i) {
      const std::int64_t r = order[static_cast<std::size_t>(begin + i)];
      std::copy(logits.data<float>() + i * labels, logits.data<float>() + (i + 1) * labels,
                out.mutable_data<float>() + r * labels);
    }
    backend.release(batch.input_ids);
    backend.release(batch.attention_mask);
  }
  return out;
}

std::int64_t argmax_row(const HostTensor& logits, std::int64_t row) {
  const std::int64_t labels = logits.dim(1);
  const float* r = logits.data<float>() + row * labels;
  return std::max_element(r, r + labels) - r;
}

double agreement(const HostTensor& a, const HostTensor& b) {
  std::int64_t same = 0;
  for (std::int64_t i = 0; i < a.dim(0); ++i) same += argmax_row(a, i) == argmax_row(b, i);
  return static_cast<double>(same) / static_cast<double>(a.dim(0));
}

class CpuInt8Golden : public ::testing::TestWithParam<std::string> {};

// Tiny random models are a hard case for quantization (hidden 32: few values per scale), so the
// bounds are loose; they still catch a wrong scale, layout or layer (errors of order 1).
TEST_P(CpuInt8Golden, LogitsCloseToFp32) {
  const std::filesystem::path dir = test::golden_dir() / GetParam();
  const SafetensorsFile reference = SafetensorsFile::open((dir / "reference.safetensors").string());
  if (!reference.contains("logits")) GTEST_SKIP() << "no logits in this fixture";
  const HostTensor& ids = reference.tensor("input_ids");
  const HostTensor& mask = reference.tensor("attention_mask");
  auto fp32 = make_cpu_backend(Precision::Fp32);
  auto fp32_model = EncoderModel::load(dir, *fp32);
  const HostTensor expected = logits_of(*fp32_model, *fp32, ids, mask, 64);

  quant::CalibrationOptions options;
  options.batches = 0;
  options.batch_size = 8;
  options.method = quant::CalibrationMethod::Max;
  const quant::Calibration calibration = quant::calibrate(dir, {&ids, &mask, nullptr}, options);
  for (Precision p : {Precision::Int8, Precision::Int8Static, Precision::Int8WeightOnly}) {
    auto backend = make_cpu_backend(p);
    auto model = EncoderModel::load(dir, *backend, calibration.plan());
    for (const LinearReport& layer : model->linear_layers()) {
      const bool head =
          layer.name == "classifier" || layer.name == "pre_classifier" || layer.name == "pooler";
      EXPECT_EQ(layer.kernel == "cpu-f32", head) << layer.name << ": " << layer.kernel;
    }
    const HostTensor logits = logits_of(*model, *backend, ids, mask, 64);
    const double error = test::max_relative_error(logits, expected);
    std::printf("[ quant     ] cpu %-12s %-32s logits rel. error %.2e, argmax agreement %.2f\n",
                std::string(precision_name(p)).c_str(), GetParam().c_str(), error,
                agreement(logits, expected));
    EXPECT_LE(error, p == Precision::Int8WeightOnly ? 0.05 : 0.15) << precision_name(p);
  }
}

INSTANTIATE_TEST_SUITE_P(HuggingFace, CpuInt8Golden,
                         ::testing::ValuesIn(test::golden_fixtures_with_prefix({"distilbert",
                                                                                "bert"})));

// The bundled trained model on the bundled held-out data: int8 precisions agree with fp32 on
// (almost) every example and stay within a point of its accuracy.
TEST(CpuInt8Bundled, SentimentModelAgreesWithFp32) {
  const std::filesystem::path model_dir =
      std::filesystem::path(test::source_dir()) / "models" / "sentiment-distilbert";
  const std::filesystem::path data_dir = std::filesystem::path(test::source_dir()) / "datasets";
  const Dataset eval = Dataset::load(data_dir / "sentiment-standard", 30522);
  // Calibration on the bundled calibration set (yelp sentences: never the imdb test sentences).
  const Dataset calibration_data = Dataset::load(data_dir / "sentiment-calibration", 30522);

  auto fp32 = make_cpu_backend(Precision::Fp32);
  auto fp32_model = EncoderModel::load(model_dir, *fp32);
  const HostTensor expected =
      logits_of(*fp32_model, *fp32, eval.input_ids(), eval.attention_mask(), 50);

  quant::CalibrationOptions options;
  options.batches = 4;
  options.batch_size = 32;
  options.dataset = "sentiment-calibration (first 128)";
  const quant::Calibration calibration = quant::calibrate(
      model_dir, {&calibration_data.input_ids(), &calibration_data.attention_mask(), nullptr},
      options);

  const HostTensor& labels = *eval.labels();
  const auto accuracy = [&](const HostTensor& logits) {
    std::int64_t right = 0;
    for (std::int64_t i = 0; i < logits.dim(0); ++i)
      right += argmax_row(logits, i) == labels.data<std::int64_t>()[i];
    return 100.0 * static_cast<double>(right) / static_cast<double>(logits.dim(0));
  };
  const double fp32_accuracy = accuracy(expected);
  for (Precision p : {Precision::Int8, Precision::Int8Static, Precision::Int8WeightOnly}) {
    auto backend = make_cpu_backend(p);
    auto model = EncoderModel::load(model_dir, *backend, calibration.plan());
    const HostTensor logits =
        logits_of(*model, *backend, eval.input_ids(), eval.attention_mask(), 50);
    const double agree = agreement(logits, expected);
    std::printf(
        "[ quant     ] cpu %-12s sentiment-distilbert on %lld examples: argmax agreement "
        "%.3f, accuracy %.1f (fp32 %.1f), logits rel. error %.2e\n",
        std::string(precision_name(p)).c_str(), static_cast<long long>(eval.size()), agree,
        accuracy(logits), fp32_accuracy, test::max_relative_error(logits, expected));
    EXPECT_GE(agree, 0.99) << precision_name(p);
    EXPECT_LE(std::fabs(accuracy(logits) - fp32_accuracy), 1.0) << precision_name(p);
  }
}

}  // namespace
}  // namespace eaq
